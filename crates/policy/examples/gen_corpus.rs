//! Writes the benchmark's semver corpus, one tag per line: `gen_corpus [COUNT] [SEED]`.

use std::io::{BufWriter, Write};

#[path = "../benches/corpus.rs"]
#[allow(dead_code)]
mod corpus;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for tag in corpus::semver_corpus(n, seed) {
        writeln!(out, "{tag}")?;
    }
    out.flush()
}
