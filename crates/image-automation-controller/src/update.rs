//! `image-automation-controller update`: apply image policies to a directory without a cluster
//! or Git, with `--dry-run` showing a unified diff instead of writing.

use std::io::Write;
use std::path::PathBuf;

use setters::{ImageRef, Plan, Policies, Report, Setters};
use templates::NamespacedName;

/// Arguments of the `update` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    /// Directory (or single file) whose marked fields are updated.
    #[arg(long, value_name = "DIR")]
    pub path: PathBuf,
    /// Latest image of a policy, repeatable: NS:NAME=IMAGE[:TAG][@DIGEST].
    #[arg(long = "policy", value_name = "NS:NAME=IMAGE:TAG[@DIGEST]", value_parser = parse_policy)]
    pub policies: Vec<(String, ImageRef)>,
    /// Print a unified diff of the changes and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Commit message template (Go text/template, as `spec.git.commit.messageTemplate`); the
    /// rendered message is printed after the diff or the summary.
    #[arg(long, value_name = "FILE")]
    pub message_template: Option<PathBuf>,
    /// A `spec.git.commit.messageTemplateValues` entry, repeatable: KEY=VALUE (`.Values.KEY`).
    #[arg(long = "template-value", value_name = "KEY=VALUE", value_parser = parse_template_value)]
    pub template_values: Vec<(String, String)>,
    /// The ImageUpdateAutomation the message is rendered for (`.AutomationObject`).
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "flux-system/flux-system"
    )]
    pub automation: NamespacedName,
}

/// Parses `KEY=VALUE`.
fn parse_template_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Parses `NS:NAME=IMAGE[:TAG][@DIGEST]`.
fn parse_policy(s: &str) -> Result<(String, ImageRef), String> {
    let (key, image) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NS:NAME=IMAGE:TAG[@DIGEST]"))?;
    let valid_key = key.split_once(':').is_some_and(|(ns, name)| {
        !ns.is_empty()
            && !name.is_empty()
            && !name.contains(':')
            && !key.contains(char::is_whitespace)
    });
    if !valid_key {
        return Err(format!(
            "{key:?}: the policy must be written NAMESPACE:NAME"
        ));
    }
    let image = ImageRef::parse(image).map_err(|e| e.to_string())?;
    Ok((key.to_owned(), image))
}

/// Exit codes: 0 success, 1 some file could not be updated or the path is unreadable.
const FAILED: u8 = 1;

/// Runs the subcommand, rendering `--message-template` when given (see [`run_with_message`]).
pub fn run(args: &UpdateArgs, out: impl Write, mut err: impl Write) -> u8 {
    let Some(path) = &args.message_template else {
        return run_with_message(args, |_| Ok(None), out, err);
    };
    let template = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(
                err,
                "error: reading --message-template {}: {e}",
                path.display()
            );
            return FAILED;
        }
    };
    let values =
        (!args.template_values.is_empty()).then(|| args.template_values.iter().cloned().collect());
    let policies: Policies = args.policies.iter().cloned().collect();
    let render = |report: &Report| {
        let input =
            crate::message::template_input(report, &policies, args.automation.clone(), values);
        templates::render_commit_message(&template, &input, &templates::Limits::default())
            .map(Some)
            .map_err(|e| e.to_string())
    };
    run_with_message(args, render, out, err)
}

/// Runs the subcommand. `commit_message` renders the message for the planned changes before
/// anything is written, so a template error leaves every file untouched; the message is printed
/// after the diff (`--dry-run`) or the summary.
fn run_with_message(
    args: &UpdateArgs,
    commit_message: impl FnOnce(&Report) -> Result<Option<String>, String>,
    mut out: impl Write,
    mut err: impl Write,
) -> u8 {
    match execute(args, commit_message, &mut out, &mut err) {
        Ok(code) => code,
        Err(e) => {
            // Output errors (a closed pipe) leave nothing more useful to do than to fail.
            let _ = writeln!(err, "error: {e}");
            FAILED
        }
    }
}

fn execute(
    args: &UpdateArgs,
    commit_message: impl FnOnce(&Report) -> Result<Option<String>, String>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<u8> {
    let policies: Policies = args.policies.iter().cloned().collect();
    let setters = match Setters::new(&policies) {
        Ok(s) => s,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(FAILED);
        }
    };
    let plan = match setters::plan(&args.path, &setters) {
        Ok(plan) => plan,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(FAILED);
        }
    };
    let message = if plan.report.is_empty() {
        None
    } else {
        match commit_message(&plan.report) {
            Ok(message) => message,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(FAILED);
            }
        }
    };
    let report = if args.dry_run {
        write_diff(&plan, out)?;
        plan.report
    } else {
        let report = plan.apply();
        write_summary(&report, out)?;
        report
    };
    if let Some(message) = message {
        writeln!(out, "\n{message}")?;
    }
    for s in &report.skipped {
        writeln!(err, "skipped: {}: {}", s.path, s.reason)?;
    }
    for u in &report.unknown_markers {
        writeln!(
            err,
            "warning: {}:{}: marker names unknown policy {:?}; ignored",
            u.path, u.line, u.setter
        )?;
    }
    for e in &report.errors {
        writeln!(err, "error: {}: {}", e.path, e.reason)?;
    }
    Ok(if report.errors.is_empty() { 0 } else { FAILED })
}

fn write_diff(plan: &Plan, out: &mut impl Write) -> std::io::Result<()> {
    write!(out, "{}", diff(plan))
}

/// The unified diff (`a/PATH`, `b/PATH`, 3 lines of context) of every file the plan changes.
pub fn diff(plan: &Plan) -> String {
    let mut out = String::new();
    for f in &plan.files {
        let diff = similar::TextDiff::from_lines(&f.original, &f.updated);
        let (a, b) = (format!("a/{}", f.path), format!("b/{}", f.path));
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    out
}

fn write_summary(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    if report.is_empty() {
        return writeln!(out, "no changes");
    }
    write_changes(&report.files, out)
}

/// Each changed file, its objects and their changes (`setter: old -> new`), indented.
pub fn write_changes(files: &[setters::FileChanges], out: &mut impl Write) -> std::io::Result<()> {
    for f in files {
        writeln!(out, "{}", f.path)?;
        for o in &f.objects {
            writeln!(out, "  {}", o.object)?;
            for c in &o.changes {
                writeln!(out, "    {}: {} -> {}", c.setter, c.old_value, c.new_value)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = r#"{"$imagepolicy": "ns:app"}"#;

    fn args(path: &std::path::Path, dry_run: bool) -> UpdateArgs {
        UpdateArgs {
            path: path.to_owned(),
            policies: vec![parse_policy("ns:app=app:2.0").unwrap()],
            dry_run,
            message_template: None,
            template_values: Vec::new(),
            automation: "flux-system/flux-system".parse().unwrap(),
        }
    }

    fn run_capture(a: &UpdateArgs) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with_message(
            a,
            |r| Ok(Some(format!("Update {} file(s)", r.files.len()))),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, t) in files {
            std::fs::write(d.path().join(p), t).unwrap();
        }
        d
    }

    #[test]
    fn dry_run_prints_a_unified_diff_then_the_message_and_writes_nothing() {
        let input = format!("kind: Deployment\nmetadata:\n  name: web\nimage: app:1.0 # {M}\n");
        let d = dir_with(&[("deploy.yaml", &input)]);
        let (code, out, err) = run_capture(&args(d.path(), true));
        assert_eq!(code, 0, "{err}");
        let want = format!(
            "--- a/deploy.yaml\n+++ b/deploy.yaml\n@@ -1,4 +1,4 @@\n kind: Deployment\n metadata:\n   name: web\n-image: app:1.0 # {M}\n+image: app:2.0 # {M}\n\nUpdate 1 file(s)\n"
        );
        assert_eq!(out, want);
        assert_eq!(
            std::fs::read_to_string(d.path().join("deploy.yaml")).unwrap(),
            input
        );
    }

    #[test]
    fn without_dry_run_it_rewrites_and_prints_the_summary_then_the_message() {
        let d = dir_with(&[(
            "deploy.yaml",
            &format!("kind: Deployment\nmetadata:\n  name: web\nimage: app:1.0 # {M}\n"),
        )]);
        let (code, out, _) = run_capture(&args(d.path(), false));
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "deploy.yaml\n  Deployment /web\n    ns:app: app:1.0 -> app:2.0\n\nUpdate 1 file(s)\n"
        );
        assert!(
            std::fs::read_to_string(d.path().join("deploy.yaml"))
                .unwrap()
                .contains("app:2.0 #")
        );
        let (code, out, _) = run_capture(&args(d.path(), false));
        assert_eq!((code, out.as_str()), (0, "no changes\n"));
    }

    #[test]
    fn file_errors_exit_non_zero_but_other_files_are_updated() {
        let d = dir_with(&[
            ("a.yaml", &format!("image: [app:1.0 # {M}\n  : : ]]\n")),
            (
                "b.yaml",
                &format!("image: app:1.0 # {M}\nx: y # {{\"$imagepolicy\": \"ns:nope\"}}\n"),
            ),
        ]);
        let (code, out, err) = run_capture(&args(d.path(), false));
        assert_eq!(code, 1);
        assert!(out.starts_with("b.yaml\n"), "{out}");
        assert!(err.contains("error: a.yaml: YAML syntax error"), "{err}");
        assert!(
            err.contains("warning: b.yaml:2: marker names unknown policy \"ns:nope\""),
            "{err}"
        );
    }

    #[test]
    fn a_missing_path_exits_non_zero() {
        let d = tempfile::tempdir().unwrap();
        let (code, _, err) = run_capture(&args(&d.path().join("missing"), false));
        assert_eq!(code, 1);
        assert!(err.starts_with("error: walking path for files:"), "{err}");
    }

    #[test]
    fn policy_arguments_are_validated() {
        let (k, r) =
            parse_policy("flux-system:podinfo=ghcr.io/org/podinfo:6.5.0@sha256:abcd").unwrap();
        assert_eq!(
            (k.as_str(), r.to_string().as_str()),
            (
                "flux-system:podinfo",
                "ghcr.io/org/podinfo:6.5.0@sha256:abcd"
            )
        );
        for bad in [
            "podinfo=app:1",
            "ns:p",
            "ns:p:tag=app:1",
            ":p=app:1",
            "ns:p=app:bad tag",
            "ns:p=app@x",
        ] {
            assert!(parse_policy(bad).is_err(), "{bad}");
        }
    }
}
