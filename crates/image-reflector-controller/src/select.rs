//! `select`: evaluates an ImagePolicy offline, so a policy can be tried before it is committed.

use std::cell::Cell;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use policy::{Choice, Field, FilterSpec, Policy};

/// OCI tags are at most 128 characters; longer lines cannot be tags.
const MAX_TAG_LEN: usize = 128;

/// Arguments of `image-reflector-controller select`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(group(
    clap::ArgGroup::new("policy").required(true).args(["semver", "alphabetical", "numerical"])
))]
pub struct SelectArgs {
    /// SemVer range, as in spec.policy.semver.range (e.g. ">=1.0.0 <2.0.0").
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub semver: Option<String>,
    /// Alphabetical policy, as in spec.policy.alphabetical.order: asc (default) or desc.
    #[arg(long, value_name = "ORDER", num_args = 0..=1, default_missing_value = "asc")]
    pub alphabetical: Option<String>,
    /// Numerical policy, as in spec.policy.numerical.order: asc (default) or desc.
    #[arg(long, value_name = "ORDER", num_args = 0..=1, default_missing_value = "asc")]
    pub numerical: Option<String>,
    /// Regular expression tags must match, as in spec.filterTags.pattern.
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    pub filter_pattern: Option<String>,
    /// Template for the value the policy compares, as in spec.filterTags.extract (e.g. "$1").
    #[arg(long, value_name = "TEMPLATE", allow_hyphen_values = true)]
    pub filter_extract: Option<String>,
    /// Read tags from FILE, one per line, instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub tags_file: Option<PathBuf>,
}

/// Runs `select`: prints the chosen tag to `out` and returns 0, or prints the error to `err` and returns 1.
pub fn run(args: &SelectArgs, input: impl BufRead, mut out: impl Write, mut err: impl Write) -> u8 {
    match select(args, input, &mut err) {
        Ok(tag) => match writeln!(out, "{tag}").and_then(|()| out.flush()) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "error: cannot write the result: {e}");
                1
            }
        },
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            1
        }
    }
}

/// The command-line flag that sets a policy field.
fn flag(field: Field) -> &'static str {
    match field {
        Field::Policy => "--semver, --alphabetical or --numerical",
        Field::SemVerRange => "--semver",
        Field::AlphabeticalOrder => "--alphabetical",
        Field::NumericalOrder => "--numerical",
        Field::FilterPattern => "--filter-pattern",
    }
}

fn select(
    args: &SelectArgs,
    mut input: impl BufRead,
    err: &mut impl Write,
) -> Result<String, String> {
    let choice = Choice::from_spec(
        args.semver.as_deref(),
        args.alphabetical.as_deref(),
        args.numerical.as_deref(),
    );
    let filter =
        (args.filter_pattern.is_some() || args.filter_extract.is_some()).then(|| FilterSpec {
            pattern: args.filter_pattern.as_deref().unwrap_or_default(),
            extract: args.filter_extract.as_deref().unwrap_or_default(),
        });
    let policy = Policy::new(choice, filter)
        .map_err(|e| format!("{} ({}): {e}", flag(e.field()), e.field().path()))?;

    let data = match &args.tags_file {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read --tags-file {}: {e}", path.display()))?,
        None => {
            let mut data = Vec::new();
            input
                .read_to_end(&mut data)
                .map_err(|e| format!("cannot read tags from standard input: {e}"))?;
            data
        }
    };

    let too_long = Cell::new(0usize);
    let not_utf8 = Cell::new(0usize);
    let tag_of = |line| tag_of(line, &too_long);
    let result =
        match std::str::from_utf8(&data) {
            // Fast path: validate the whole input once and split it without copying.
            Ok(text) => policy.select(text.split('\n').filter_map(tag_of)),
            Err(_) => policy.select(data.split(|&b| b == b'\n').filter_map(|line| {
                match std::str::from_utf8(line) {
                    Ok(line) => tag_of(line),
                    Err(_) => {
                        not_utf8.set(not_utf8.get() + 1);
                        None
                    }
                }
            })),
        };
    for (count, why) in [
        (not_utf8.get(), "are not valid UTF-8"),
        (too_long.get(), "are longer than 128 bytes"),
    ] {
        if count > 0 {
            let _ = writeln!(
                err,
                "warning: skipped {count} line(s) that {why} and so cannot be tags"
            );
        }
    }
    result.map(str::to_owned).map_err(|e| e.to_string())
}

/// The tag on a line: surrounding white space removed; blank and over-long lines (counted) yield none.
fn tag_of<'a>(line: &'a str, too_long: &Cell<usize>) -> Option<&'a str> {
    let tag = line.trim_ascii();
    if tag.len() > MAX_TAG_LEN {
        too_long.set(too_long.get() + 1);
        return None;
    }
    (!tag.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        args: SelectArgs,
    }

    fn parse(argv: &[&str]) -> Result<SelectArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("select").chain(argv.iter().copied()))
            .map(|c| c.args)
    }

    /// Runs with the given flags and stdin; returns (exit code, stdout, stderr).
    fn exec(argv: &[&str], stdin: &[u8]) -> (u8, String, String) {
        let args = parse(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args, stdin, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn semver_from_stdin_keeps_spelling() {
        let (code, out, err) = exec(
            &["--semver", ">=1.0.0 <2.0.0"],
            b"0.9.0\nv1.4.0\n1.4.0\r\n2.0.0\nlatest\n",
        );
        assert_eq!((code, out.as_str(), err.as_str()), (0, "v1.4.0\n", ""));
    }

    #[test]
    fn tags_file_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags");
        std::fs::write(
            &path,
            "main-abc-1700000000\nmain-def-1700000100\nrelease-1\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let (code, out, _) = exec(
            &[
                "--numerical",
                "--filter-pattern",
                "^main-[a-f0-9]+-(?P<ts>[0-9]+)",
                "--filter-extract",
                "$ts",
                "--tags-file",
                file,
            ],
            b"",
        );
        assert_eq!((code, out.as_str()), (0, "main-def-1700000100\n"));
    }

    #[test]
    fn failures_go_to_stderr_with_exit_1() {
        let (code, out, err) = exec(&["--semver", "^3"], b"1.0.0\n2.0.0\n");
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "error: unable to determine latest version from provided list\n"
        );

        let (code, _, err) = exec(&["--alphabetical"], b"\n\n");
        assert_eq!(
            (code, err.as_str()),
            (1, "error: version list argument cannot be empty\n")
        );

        let (code, _, err) = exec(&["--numerical", "desc"], b"1\nlatest\n");
        assert_eq!(
            (code, err.as_str()),
            (1, "error: failed to parse invalid numeric value 'latest'\n")
        );

        let (code, _, err) = exec(
            &["--semver", "1.0.0", "--tags-file", "/nonexistent/tags"],
            b"",
        );
        assert_eq!(code, 1);
        assert!(
            err.starts_with("error: cannot read --tags-file /nonexistent/tags: "),
            "{err}"
        );
    }

    #[test]
    fn invalid_policy_names_the_field_and_quotes_the_text() {
        let (code, _, err) = exec(&["--semver", "*-*"], b"1.0.0\n");
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "error: --semver (spec.policy.semver.range): invalid policy: improper constraint: \"*-*\"\n"
        );
        let (_, _, err) = exec(&["--numerical", "up"], b"1\n");
        assert_eq!(
            err,
            "error: --numerical (spec.policy.numerical.order): invalid policy: invalid order argument provided: 'UP', must be one of: ASC, DESC\n"
        );
        let (_, _, err) = exec(&["--alphabetical", "--filter-pattern", "[="], b"a\n");
        assert!(
            err.starts_with(
                "error: --filter-pattern (spec.filterTags.pattern): failed to filter tags: invalid regular expression pattern '[=': "
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_lines_are_skipped_with_a_warning() {
        let mut input = b"1.0.0\n\xff\xfe1.9.0\n".to_vec();
        input.extend_from_slice(format!("{}\n", "9".repeat(200)).as_bytes());
        let (code, out, err) = exec(&["--semver", "*"], &input);
        assert_eq!((code, out.as_str()), (0, "1.0.0\n"));
        assert!(
            err.contains("skipped 1 line(s) that are not valid UTF-8"),
            "{err}"
        );
        assert!(
            err.contains("skipped 1 line(s) that are longer than 128 bytes"),
            "{err}"
        );
    }

    #[test]
    fn exactly_one_policy_is_required() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--semver", "1.x", "--numerical", "asc"]).is_err());
        assert_eq!(
            parse(&["--alphabetical"]).unwrap().alphabetical.as_deref(),
            Some("asc")
        );
        assert_eq!(
            parse(&["--semver", "-1"]).unwrap().semver.as_deref(),
            Some("-1")
        );
    }
}
