//! Property test: random documents with random formatting and random markers. The output
//! differs from the input only inside the marked scalars' spans, and re-parses (with
//! serde-saphyr, independently of the crate's own verification) to the same tree apart from
//! the marked values, which read back as the intended strings.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: failing loudly is the point

mod common;

use proptest::prelude::*;
use serde_json::Value;

/// A tiny deterministic generator driven by a proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// A marked scalar: where it is in the text and in the tree, and what it must become.
#[derive(Debug)]
struct Marked {
    start: usize,
    end: usize,
    doc: usize,
    path: Vec<Seg>,
    new: Option<String>,
}

const SETTERS: &[(&str, Option<&str>)] = &[
    ("ns:app", Some("app:2.0")),
    ("ns:app:tag", Some("2.0")),
    ("ns:app:name", Some("app")),
    ("ns:app:digest", Some("")),
    ("ns:reg", Some("reg.io/team/app:1.2.3@sha256:0123abcd")),
    ("other:unknown", None),
];

struct Gen {
    rng: Rng,
    out: String,
    nl: &'static str,
    marked: Vec<Marked>,
    doc: usize,
}

impl Gen {
    fn scalar_text(&mut self, value: &str) -> String {
        let plain_ok = !value.is_empty()
            && !value.contains(['\'', '#', '"'])
            && !value.starts_with(['-', ' ', '~']);
        match self.rng.below(3) {
            0 if plain_ok => value.to_owned(),
            1 => format!("'{}'", value.replace('\'', "''")),
            _ => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    fn trailing(&mut self) -> &'static str {
        if self.rng.chance(15) { "  " } else { "" }
    }

    fn blank_or_comment(&mut self, indent: usize) {
        if self.rng.chance(15) {
            self.out.push_str(self.nl);
        }
        if self.rng.chance(10) {
            let t = self.trailing();
            self.out
                .push_str(&format!("{}# note{t}{}", " ".repeat(indent), self.nl));
        }
    }

    /// Emits a scalar value (possibly marked) right after `key: ` or `- `.
    fn value_scalar(&mut self, path: &[Seg], allow_head: bool) {
        if self.rng.chance(35) {
            let (setter, new) = SETTERS[self.rng.below(SETTERS.len())];
            let old = self
                .rng
                .pick(&["app:1.0", "v1", "1.0", "old value", "it's"])
                .to_owned();
            let text = self.scalar_text(&old);
            let start = self.out.len();
            self.out.push_str(&text);
            let end = self.out.len();
            let gap = " ".repeat(1 + self.rng.below(3));
            let t = self.trailing();
            self.out.push_str(&format!(
                "{gap}# {{\"$imagepolicy\": \"{setter}\"}}{t}{}",
                self.nl
            ));
            let new = new.filter(|n| *n != old).map(str::to_owned);
            self.marked.push(Marked {
                start,
                end,
                doc: self.doc,
                path: path.to_vec(),
                new,
            });
            let _ = allow_head;
        } else {
            let v = self
                .rng
                .pick(&[
                    "hello",
                    "hello world",
                    "1",
                    "true",
                    "yes",
                    "3.14",
                    "a'b",
                    "x:y",
                    "",
                    "café",
                ])
                .to_owned();
            let text = self.scalar_text(&v);
            let comment = if self.rng.chance(20) {
                " # just a comment"
            } else {
                ""
            };
            self.out.push_str(&format!("{text}{comment}{}", self.nl));
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize, path: &[Seg]) {
        let n = 1 + self.rng.below(4);
        for i in 0..n {
            self.blank_or_comment(indent);
            let key = format!("k{i}");
            let mut p = path.to_vec();
            p.push(Seg::Key(key.clone()));
            let pad = " ".repeat(indent);
            match if depth >= 3 { 0 } else { self.rng.below(6) } {
                0..=1 => {
                    self.out
                        .push_str(&format!("{pad}{key}:{}", " ".repeat(1 + self.rng.below(2))));
                    self.value_scalar(&p, false);
                }
                2 => {
                    self.out.push_str(&format!("{pad}{key}:{}", self.nl));
                    let step = 2 + self.rng.below(3);
                    self.mapping(indent + step, depth + 1, &p);
                }
                3 => {
                    self.out.push_str(&format!("{pad}{key}:{}", self.nl));
                    let wide = if self.rng.chance(50) { 2 } else { 0 };
                    self.sequence(indent + wide, depth + 1, &p);
                }
                4 => {
                    let t = self.trailing();
                    let flow =
                        self.rng
                            .pick(&["[a, 'b', \"c\"]", "{x: 1, y: [2, 3]}", "[]", "{a: b}"]);
                    self.out
                        .push_str(&format!("{pad}{key}: {flow}{t}{}", self.nl));
                }
                _ => {
                    let ind = " ".repeat(indent + 2);
                    let t = self.trailing();
                    let head = self.rng.pick(&["|", ">", "|-", ">+"]);
                    self.out.push_str(&format!(
                        "{pad}{key}: {head}{}{ind}line one{t}{}{}{ind}line two{}",
                        self.nl, self.nl, self.nl, self.nl
                    ));
                }
            }
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize, path: &[Seg]) {
        let n = 1 + self.rng.below(3);
        let pad = " ".repeat(indent);
        for i in 0..n {
            let mut p = path.to_vec();
            p.push(Seg::Idx(i));
            self.blank_or_comment(indent);
            if depth < 3 && self.rng.chance(30) {
                // A mapping item: first pair on the dash line.
                let gap = " ".repeat(1 + self.rng.below(2));
                self.out.push_str(&format!("{pad}-{gap}"));
                let inner = indent + 1 + gap.len();
                let mut first = p.clone();
                first.push(Seg::Key("name".into()));
                self.out.push_str("name: ");
                self.value_scalar(&first, false);
                let mut q = p.clone();
                q.push(Seg::Key("image".into()));
                self.out.push_str(&format!("{}image: ", " ".repeat(inner)));
                self.value_scalar(&q, false);
            } else if self.rng.chance(15) {
                // A head-comment marker on the line above the item.
                let (setter, new) = SETTERS[self.rng.below(SETTERS.len())];
                // A comment line right above would make a multi-line head comment, which is
                // not a marker (as in Flux); keep them apart.
                if self
                    .out
                    .trim_end_matches([' ', '\r', '\n'])
                    .ends_with("# note")
                {
                    self.out.push_str(self.nl);
                }
                self.out.push_str(&format!(
                    "{pad}# {{\"$imagepolicy\": \"{setter}\"}}{}{pad}- ",
                    self.nl
                ));
                let start = self.out.len();
                self.out.push_str("app:1.0");
                let end = self.out.len();
                self.out.push_str(self.nl);
                let new = new.filter(|n| *n != "app:1.0").map(str::to_owned);
                self.marked.push(Marked {
                    start,
                    end,
                    doc: self.doc,
                    path: p,
                    new,
                });
            } else {
                self.out.push_str(&format!("{pad}- "));
                self.value_scalar(&p, true);
            }
        }
    }

    fn file(seed: u64) -> Gen {
        let mut g = Gen {
            rng: Rng(seed),
            out: String::new(),
            nl: "\n",
            marked: Vec::new(),
            doc: 0,
        };
        if g.rng.chance(20) {
            g.nl = "\r\n";
        }
        let docs = 1 + g.rng.below(3);
        for d in 0..docs {
            g.doc = d;
            if d > 0 || g.rng.chance(30) {
                let c = if g.rng.chance(30) { " # separator" } else { "" };
                g.out.push_str(&format!("---{c}{}", g.nl));
            }
            if g.rng.chance(20) {
                g.sequence(0, 1, &[]);
            } else {
                g.mapping(0, 0, &[]);
            }
        }
        if g.rng.chance(20) {
            // No final line break.
            let nl = g.nl;
            g.out.truncate(g.out.len() - nl.len());
        }
        g
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let g = Gen::file(seed);
    let input = g.out.clone();
    let policies: Vec<(&str, &str)> = vec![
        ("ns:app", "app:2.0"),
        ("ns:reg", "reg.io/team/app:1.2.3@sha256:0123abcd"),
    ];
    let dir = common::tree(&[("f.yaml", &input)]);
    let report = setters::update(dir.path(), &common::setters(&policies)).unwrap();
    prop_assert!(
        report.errors.is_empty(),
        "errors {:?} for\n{input}",
        report.errors
    );
    let output = std::fs::read_to_string(dir.path().join("f.yaml")).unwrap();

    // 1. Only the marked spans changed, and each changed span holds the new value in a quoting
    //    that reads back as it.
    let (inb, outb) = (input.as_bytes(), output.as_bytes());
    let mut pos_in = 0;
    let mut pos_out = 0;
    let changed_spans: Vec<&Marked> = g.marked.iter().filter(|m| m.new.is_some()).collect();
    for (k, m) in changed_spans.iter().enumerate() {
        let same = &inb[pos_in..m.start];
        prop_assert!(
            outb[pos_out..].starts_with(same),
            "outside a marked span\n{}\n{}",
            input,
            output
        );
        pos_out += same.len();
        let new = m.new.as_deref().unwrap_or_default();
        let candidates = [format!("\"{new}\""), format!("'{new}'"), new.to_owned()];
        let next_start = changed_spans.get(k + 1).map_or(inb.len(), |n| n.start);
        let next_keep = &inb[m.end..next_start.min(m.end + 8)];
        let hit = candidates.iter().find(|c| {
            outb[pos_out..].starts_with(c.as_bytes())
                && outb[pos_out + c.len()..].starts_with(next_keep)
        });
        prop_assert!(
            hit.is_some(),
            "span of {:?} not replaced by {new:?} in\n{output}",
            &input[m.start..m.end]
        );
        pos_out += hit.map_or(0, String::len);
        pos_in = m.end;
    }
    prop_assert_eq!(&outb[pos_out..], &inb[pos_in..]);
    let changed = g.marked.iter().filter(|m| m.new.is_some()).count();
    let recorded = report
        .files
        .iter()
        .flat_map(|f| &f.objects)
        .map(|o| o.changes.len())
        .sum::<usize>();
    prop_assert_eq!(recorded, changed, "report {:?} for\n{}", report, input);

    // 2. The re-parsed tree equals the original with the marked values replaced by strings.
    let mut want: Vec<Value> = serde_saphyr::from_multiple(&input).unwrap();
    let got: Vec<Value> = serde_saphyr::from_multiple(&output).unwrap();
    for m in &g.marked {
        if let Some(new) = &m.new {
            *at(&mut want[m.doc], &m.path) = Value::String(new.clone());
        }
    }
    prop_assert_eq!(got, want, "input:\n{}\noutput:\n{}", input, output);
    let unknown = g.marked.iter().filter(|m| m.new.is_none()).count();
    prop_assert!(report.unknown_markers.len() <= unknown);
    Ok(())
}

/// 512 cases by default; `PROPTEST_CASES` runs longer.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn edits_stay_inside_marked_spans(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn the_generator_exercises_markers_of_every_kind() {
    let gens: Vec<Gen> = (0..200).map(Gen::file).collect();
    let changed = gens
        .iter()
        .flat_map(|g| &g.marked)
        .filter(|m| m.new.is_some())
        .count();
    let unknown = gens
        .iter()
        .flat_map(|g| &g.marked)
        .filter(|m| m.new.is_none())
        .count();
    let crlf = gens.iter().filter(|g| g.nl == "\r\n").count();
    let multi = gens.iter().filter(|g| g.doc > 0).count();
    assert!(
        changed > 200 && unknown > 50 && crlf > 10 && multi > 50,
        "{changed} {unknown} {crlf} {multi}"
    );
    for seed in 0..50 {
        check(seed).unwrap();
    }
}

/// Damages a generated file at random places (deleting, duplicating or inserting YAML
/// indicator bytes) to reach parser corners.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(3) {
            0 => {
                bytes.remove(at);
            }
            1 => {
                let b = bytes[at];
                bytes.insert(at, b);
            }
            _ => {
                let b = b":-?[]{}#&*!|>'\"%@ \t\n"[rng.below(20)];
                bytes.insert(at, b);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    /// Damaged input never panics, and a file that parsed before still parses after (the
    /// crate's own verification checks the tree; a damaged marked scalar may legitimately
    /// span several lines, so line counts may change).
    #[test]
    fn damaged_input_never_panics_or_writes_garbage(seed in any::<u64>()) {
        let mut rng = Rng(seed ^ 0x5EED);
        let input = mutate(&Gen::file(seed).out, &mut rng);
        let dir = common::tree(&[("f.yaml", &input)]);
        let setters = common::setters(&[("ns:app", "app:2.0"), ("ns:reg", "reg.io/team/app:1.2.3@sha256:0123abcd")]);
        let plan = setters::plan(dir.path(), &setters).unwrap();
        for f in &plan.files {
            // Any written file must parse wherever the original did.
            let before: Result<Vec<Value>, _> = serde_saphyr::from_multiple(&f.original);
            let after: Result<Vec<Value>, _> = serde_saphyr::from_multiple(&f.updated);
            prop_assert!(before.is_err() || after.is_ok(), "broke a valid file:\n{}\n{}", f.original, f.updated);
        }
    }
}
