//! Writes the CRDs generated from the api crate's types.
//!
//! Usage: `crdgen [BASES_DIR [TESTDATA_DIR]]`, by default `config/crd/bases` and
//! `config/testdata/crd`. The image CRDs go to BASES_DIR; the GitRepository stand-in goes to
//! TESTDATA_DIR so that the default kustomization never installs it.

use std::path::PathBuf;

use anyhow::Context;
use api::crd::{OutputDir, generated_files};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let bases = args.next().map_or_else(
        || PathBuf::from(OutputDir::Bases.default_path()),
        PathBuf::from,
    );
    let testdata = args.next().map_or_else(
        || PathBuf::from(OutputDir::TestData.default_path()),
        PathBuf::from,
    );
    if args.next().is_some() {
        anyhow::bail!("usage: crdgen [BASES_DIR [TESTDATA_DIR]]");
    }
    for file in generated_files()? {
        let dir = match file.dir {
            OutputDir::Bases => &bases,
            OutputDir::TestData => &testdata,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.content)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
