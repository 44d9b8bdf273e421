//! One automation cycle (check out, edit one file, commit, push) on a large repository, through this crate or
//! through the git CLI, timed in-process. `hack/bench-git.sh` drives it; see there for the whole benchmark.
//!
//! ```text
//! bench_cycle generate BARE [COMMITS FILES SIZE]   build the repository with `git fast-import` (20000 5000 2048)
//! bench_cycle cycle ENGINE MODE TRANSPORT NAME DIR  one cycle; prints the elapsed milliseconds
//!     ENGINE    ours (the git crate) | cli (the git CLI)
//!     MODE      cold: DIR is emptied first; a --depth 1 clone
//!               warm: DIR holds the previous cycle's clone; fetch the new upstream commit
//!     TRANSPORT daemon (git://) | ssh (ssh://, the test environment's key and known_hosts)
//!     NAME      repository NAME.git in the test environment's Git root
//! bench_cycle upstream NAME DIR                     push one commit to NAME through another clone in DIR
//! ```
//!
//! Both engines do the same work. Cold: shallow clone, edit, commit, push. Warm: fetch, reset the worktree to
//! the new head (untracked files removed), edit, commit, push.
//!
//! `BENCH_PHASES=1` prints the time of each phase of our cycle to stderr; `BENCH_CACHE_MAX_SIZE` sets the
//! cache bound in bytes (default 1 GiB, the controller's `--git-cache-max-size` default).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use git::{
    Cache, Checkout, CheckoutOptions, CheckoutRef, CommitSpec, GitAuth, GitError, PushSpec,
    RemoteSpec,
};
use testenv::git::{git_command, run};
use testenv::{GitTransport, SshKeyType, env};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The file every cycle edits, and the one the upstream writer edits.
const EDITED: &str = "apps/d00/f0000.yaml";
const UPSTREAM_EDITED: &str = "apps/d49/f4999.yaml";
/// Files per directory of the generated tree.
const PER_DIR: usize = 100;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i).map(String::as_str).ok_or_else(|| {
            format!("missing argument {i}; see the usage at the top of bench_cycle.rs").into()
        })
    };
    match arg(0)? {
        "generate" => {
            let num = |i: usize, default: usize| -> Result<usize> {
                args.get(i).map_or(Ok(default), |s| Ok(s.parse()?))
            };
            generate(
                Path::new(arg(1)?),
                num(2, 20_000)?,
                num(3, 5_000)?,
                num(4, 2_048)?,
            )
        }
        "cycle" => {
            let transport = match arg(3)? {
                "daemon" => GitTransport::Daemon,
                "ssh" => GitTransport::Ssh,
                t => return Err(format!("unknown transport '{t}' (daemon|ssh)").into()),
            };
            let cold = match arg(2)? {
                "cold" => true,
                "warm" => false,
                m => return Err(format!("unknown mode '{m}' (cold|warm)").into()),
            };
            let dir = PathBuf::from(arg(5)?);
            if cold && dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            if !cold && !dir.exists() {
                return Err(
                    format!("warm cycle without a previous clone in {}", dir.display()).into(),
                );
            }
            let url = env().git_url(transport, arg(4)?)?;
            // libgit2's one-time initialisation (OpenSSL loads the system CA bundle) is paid once per
            // controller process, not per cycle: keep it out of the measurement.
            git2::Config::new()?;
            let started = Instant::now();
            match arg(1)? {
                "ours" => ours(transport, &url, &dir)?,
                "cli" => cli(transport, &url, &dir, cold)?,
                e => return Err(format!("unknown engine '{e}' (ours|cli)").into()),
            }
            println!("{:.2}", started.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        }
        "upstream" => upstream(arg(1)?, Path::new(arg(2)?)),
        c => Err(format!("unknown command '{c}' (generate|cycle|upstream)").into()),
    }
}

/// A cycle through the git crate, as the automation controller runs it.
fn ours(transport: GitTransport, url: &str, cache_dir: &Path) -> Result<()> {
    let mut secret = BTreeMap::new();
    if transport == GitTransport::Ssh {
        let e = env();
        secret.insert(
            "identity".to_string(),
            std::fs::read(e.ssh_key(SshKeyType::Ed25519)?)?,
        );
        secret.insert(
            "known_hosts".to_string(),
            std::fs::read(e.ssh_known_hosts()?)?,
        );
    }
    let remote = RemoteSpec {
        auth: GitAuth::from_secret(url, &secret)?,
        ..RemoteSpec::new(url)
    };
    // The controller's default --git-cache-max-size: a bounded cache checks its size at every checkout.
    let max_size = match std::env::var("BENCH_CACHE_MAX_SIZE") {
        Ok(v) => v.parse()?,
        Err(_) => 1 << 30,
    };
    let cache = Cache::new(cache_dir.to_path_buf(), max_size);
    let phases = Phases::new();
    let mut co = cache.checkout(
        &remote,
        &CheckoutRef::Branch("main".into()),
        &CheckoutOptions::default(),
    )?;
    phases.mark("checkout");
    let spec = CommitSpec {
        author_name: "bench".into(),
        author_email: "bench@example.com".into(),
        message: "bench: edit one file".into(),
        signer: None,
    };
    edit(&co.workdir().join(EDITED))?;
    co.commit(&spec)?.ok_or("the edit made no commit")?;
    phases.mark("edit+commit");
    co.push(
        &PushSpec::default(),
        &mut |co: &mut Checkout| -> Result<(), GitError> {
            edit(&co.workdir().join(EDITED))?;
            co.commit(&spec).map(|_| ())
        },
    )?
    .ok_or("nothing was pushed")?;
    phases.mark("push");
    drop(co);
    phases.mark("unlock");
    Ok(())
}

/// With `BENCH_PHASES=1`, prints the time of each phase of a cycle to stderr (for profiling).
struct Phases {
    enabled: bool,
    last: std::cell::Cell<Instant>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            enabled: std::env::var_os("BENCH_PHASES").is_some_and(|v| v == "1"),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn mark(&self, phase: &str) {
        if self.enabled {
            let now = Instant::now();
            eprintln!(
                "  {phase}: {:.1} ms",
                (now - self.last.get()).as_secs_f64() * 1000.0
            );
            self.last.set(now);
        }
    }
}

/// The same cycle with the git CLI.
fn cli(transport: GitTransport, url: &str, dir: &Path, cold: bool) -> Result<()> {
    let git = |cwd: &Path, args: &[&str]| -> Result<String> {
        let mut cmd = env().git_command_for(transport)?;
        cmd.current_dir(cwd).args(args);
        Ok(run(cmd)?)
    };
    if cold {
        let parent = dir.parent().ok_or("the clone directory has no parent")?;
        std::fs::create_dir_all(parent)?;
        let dest = dir.to_string_lossy();
        git(
            parent,
            &[
                "clone", "-q", "--depth", "1", "--branch", "main", url, &dest,
            ],
        )?;
    } else {
        git(dir, &["fetch", "-q", "origin"])?;
        git(dir, &["reset", "-q", "--hard", "origin/main"])?;
        git(dir, &["clean", "-qfdx"])?;
    }
    edit(&dir.join(EDITED))?;
    git(dir, &["commit", "-qam", "bench: edit one file"])?;
    git(dir, &["push", "-q", "origin", "main"])?;
    Ok(())
}

/// Push one commit to `name` through a separate clone in `dir` (file transport; not timed).
fn upstream(name: &str, dir: &Path) -> Result<()> {
    let url = env().git_url(GitTransport::File, name)?;
    let git = |cwd: &Path, args: &[&str]| -> Result<String> {
        let mut cmd = git_command();
        cmd.current_dir(cwd).args(args);
        Ok(run(cmd)?)
    };
    if dir.exists() {
        git(dir, &["fetch", "-q", "origin"])?;
        git(dir, &["reset", "-q", "--hard", "origin/main"])?;
    } else {
        let parent = dir.parent().ok_or("the clone directory has no parent")?;
        std::fs::create_dir_all(parent)?;
        git(
            parent,
            &["clone", "-q", "--depth", "1", &url, &dir.to_string_lossy()],
        )?;
    }
    edit(&dir.join(UPSTREAM_EDITED))?;
    git(dir, &["commit", "-qam", "upstream: another writer"])?;
    git(dir, &["push", "-q", "origin", "HEAD:main"])?;
    Ok(())
}

/// Replace the `revision:` line of a generated file with a fresh value.
fn edit(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut out = String::with_capacity(text.len() + 32);
    let mut replaced = false;
    for line in text.lines() {
        if !replaced && line.starts_with("  revision:") {
            out.push_str(&format!("  revision: \"edit-{stamp}\"\n"));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        return Err(std::io::Error::other(format!(
            "{} has no revision line",
            path.display()
        )));
    }
    std::fs::write(path, out)
}

/// A small deterministic generator (xorshift64*), so every run builds the same repository.
fn random(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..3 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
    }
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The path of generated file `i`.
fn file_path(i: usize) -> String {
    format!("apps/d{:02}/f{i:04}.yaml", i / PER_DIR)
}

/// Content of file `i` at its `version`-th change: a manifest of about `size` bytes whose data lines are random
/// hex; each change rewrites the revision and one data line, like a small real edit.
fn file_content(i: usize, version: usize, size: usize) -> String {
    let header = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i:04}\n  revision: \"{version}\"\ndata:\n"
    );
    // Each data line is "  kNN: <64 hex>\n": 72 bytes.
    let lines = size.saturating_sub(header.len()).div_ceil(72).max(1);
    let mut s = header;
    for k in 0..lines {
        // Line k last changed at the latest version v <= version with v % lines == k.
        let epoch = if k == 0 {
            version / lines
        } else if version >= k {
            (version - k) / lines + 1
        } else {
            0
        };
        let mut seed = ((i as u64) << 40) ^ ((k as u64) << 20) ^ epoch as u64;
        s.push_str(&format!("  k{k:02}: "));
        for _ in 0..4 {
            seed = random(seed);
            s.push_str(&format!("{seed:016x}"));
        }
        s.push('\n');
    }
    s
}

/// Build the bare repository `bare` (branch `main`): one commit adding `files` files of about `size` bytes,
/// then commits editing one file each, `commits` in all; packed with `git repack -ad`.
fn generate(bare: &Path, commits: usize, files: usize, size: usize) -> Result<()> {
    if commits == 0 || files == 0 {
        return Err("commits and files must be positive".into());
    }
    let tmp = bare.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut init = git_command();
    init.args(["init", "-q", "--bare", "-b", "main"]).arg(&tmp);
    run(init)?;
    let mut child = git_command()
        .current_dir(&tmp)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()?;
    {
        let stdin = child.stdin.take().ok_or("fast-import has no stdin")?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
        let mut versions = vec![0usize; files];
        let data = |w: &mut dyn Write, s: &str| -> std::io::Result<()> {
            write!(w, "data {}\n{s}\n", s.len())
        };
        for c in 0..commits {
            let when = 1_600_000_000 + 60 * c as u64;
            writeln!(w, "commit refs/heads/main")?;
            writeln!(w, "author Bench <bench@example.com> {when} +0000")?;
            writeln!(w, "committer Bench <bench@example.com> {when} +0000")?;
            if c == 0 {
                data(&mut w, &format!("initial: {files} files"))?;
                for (i, v) in versions.iter().enumerate() {
                    writeln!(w, "M 100644 inline {}", file_path(i))?;
                    data(&mut w, &file_content(i, *v, size))?;
                }
            } else {
                // A stride coprime with most file counts spreads edits over every directory.
                let i = (c * 7_919) % files;
                versions[i] += 1;
                data(
                    &mut w,
                    &format!("edit {} to revision {}", file_path(i), versions[i]),
                )?;
                writeln!(w, "M 100644 inline {}", file_path(i))?;
                data(&mut w, &file_content(i, versions[i], size))?;
            }
        }
        w.flush()?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("git fast-import failed: {status}").into());
    }
    let mut repack = git_command();
    repack.current_dir(&tmp).args(["repack", "-adq"]);
    run(repack)?;
    let mut pack_refs = git_command();
    pack_refs.current_dir(&tmp).args(["pack-refs", "--all"]);
    run(pack_refs)?;
    if bare.exists() {
        std::fs::remove_dir_all(bare)?;
    }
    std::fs::rename(&tmp, bare)?;
    Ok(())
}
