//! The README's flag reference is generated from the controllers' clap definitions (what `--help`
//! prints), so it cannot drift: this test fails when it differs, and rewrites it when run with
//! `FIX_README=1 cargo test -p e2e --test readme`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use clap::{Args, Command};
use runtime::flags::{AutomationFlags, CommonFlags, ReflectorFlags};

const BEGIN: &str =
    "<!-- BEGIN flags: generated from the clap definitions by tests/tests/readme.rs -->\n";
const END: &str = "<!-- END flags -->\n";

fn readme() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// One table row per flag: name, default, help text (the first paragraph), as `--help` shows them.
fn rows(cmd: &Command, skip: &[String]) -> Vec<(String, String)> {
    cmd.get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if skip.iter().any(|s| s == long) {
                return None;
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let default = match defaults.as_slice() {
                [] => "none".to_owned(),
                [d] if d.is_empty() => "`\"\"`".to_owned(),
                ds => format!("`{}`", ds.join(",")),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let flag = format!("`--{long}`");
            Some((format!("| {flag} | {default} |"), help.replace('|', "\\|")))
        })
        .map(|(left, help)| (left, format!(" {help} |")))
        .collect()
}

fn table(title: &str, rows: &[(String, String)]) -> String {
    let mut out = format!("{title}\n\n| flag | default | meaning |\n|---|---|---|\n");
    for (left, right) in rows {
        out.push_str(left);
        out.push_str(right);
        out.push('\n');
    }
    out
}

fn longs(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

fn generated() -> String {
    let common = CommonFlags::augment_args(Command::new("common"));
    let reflector = ReflectorFlags::augment_args(Command::new("image-reflector-controller"));
    let automation = AutomationFlags::augment_args(Command::new("image-automation-controller"));
    let shared = longs(&common);
    let mut out = String::new();
    out.push_str(&table("Both controllers:", &rows(&common, &[])));
    out.push('\n');
    out.push_str(&table(
        "image-reflector-controller only:",
        &rows(&reflector, &shared),
    ));
    out.push('\n');
    out.push_str(&table(
        "image-automation-controller only:",
        &rows(&automation, &shared),
    ));
    out
}

#[test]
fn readme_flag_tables_match_the_clap_definitions() -> Result<()> {
    let path = readme();
    let text = std::fs::read_to_string(&path)?;
    let start = text
        .find(BEGIN)
        .context("README.md lacks the BEGIN flags marker")?
        + BEGIN.len();
    let end = start
        + text[start..]
            .find(END)
            .context("README.md lacks the END flags marker")?;
    let want = generated();
    if text[start..end] == want {
        return Ok(());
    }
    if std::env::var_os("FIX_README").is_some() {
        let fixed = format!("{}{want}{}", &text[..start], &text[end..]);
        std::fs::write(&path, fixed)?;
        return Ok(());
    }
    anyhow::bail!(
        "README.md's flag tables differ from the clap definitions; run \
         `FIX_README=1 cargo test -p e2e --test readme` to regenerate them. Expected:\n{want}"
    )
}

#[test]
fn every_flag_of_both_binaries_is_in_the_readme() -> Result<()> {
    let text = std::fs::read_to_string(readme())?;
    for cmd in [
        ReflectorFlags::augment_args(Command::new("r")),
        AutomationFlags::augment_args(Command::new("a")),
    ] {
        for long in longs(&cmd) {
            ensure!(
                text.contains(&format!("| `--{long}` |")),
                "--{long} is not in the README's flag tables"
            );
        }
    }
    Ok(())
}

/// The README's two commands are the ones CI and a new user run, and both exist in the Makefile.
#[test]
fn readme_commands_are_make_demo_and_make_test() -> Result<()> {
    let text = std::fs::read_to_string(readme())?;
    let makefile = std::fs::read_to_string(readme().with_file_name("Makefile"))?;
    for (command, target) in [("make demo", "demo:"), ("make test", "test:")] {
        ensure!(text.contains(command), "README lacks `{command}`");
        ensure!(
            makefile.lines().any(|l| l == target),
            "the Makefile lacks the {target} target"
        );
    }
    let ci = std::fs::read_to_string(readme().with_file_name(".ci").join("run"))
        .context("reading .ci/run")?;
    ensure!(ci.contains("make test"), ".ci/run does not run make test");
    Ok(())
}
