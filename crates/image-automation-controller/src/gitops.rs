//! Git operations of a cycle: a clone cache, checkout, commit and push (`automation.md` §5),
//! timed per repository and operation.
//!
//! This drives the `git` executable, isolated from any user or system configuration. Credentials
//! from the GitRepository's Secret are handed to it per command (an `Authorization` header for
//! HTTP, a key file and a strict known_hosts for SSH), never stored in the clone's configuration.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::git_repository::GitCheckout;
use api::image_update_automation::SOURCE_MANAGER_FAILED_REASON;
use runtime::metrics::{GitOperationLabels, Metrics, RepositoryLabels};
use sha2::{Digest, Sha256};

use crate::source::{Branches, CommitSettings, Failure, Remote, git_failed};

/// Pushes retried after the remote moved (each time on its new tip).
const PUSH_ATTEMPTS: u32 = 5;

/// The directory of kept clones, one per repository URL.
pub struct GitCache {
    root: PathBuf,
    max_size: u64,
    metrics: Arc<Metrics>,
}

impl GitCache {
    /// A cache under `root` (created) holding at most `max_size` bytes of clones.
    pub fn new(root: &Path, max_size: u64, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_owned(),
            max_size,
            metrics,
        })
    }

    /// One clone per (URL, push branch): the writers of different branches of one repository run
    /// concurrently and must not share a work tree.
    fn dir_for(&self, url: &str, push_branch: &str) -> PathBuf {
        let hash = Sha256::digest(format!("{url}\n{push_branch}").as_bytes());
        let name: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
        self.root.join(name)
    }

    /// Removes the least recently used clones beyond the size limit, never `keep`.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut clones: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p != keep && p.is_dir())
            .map(|p| {
                let used = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (used, dir_size(&p), p)
            })
            .collect();
        let mut total: u64 = clones.iter().map(|c| c.1).sum::<u64>() + dir_size(keep);
        clones.sort();
        for (_, size, path) in clones {
            if total <= self.max_size {
                break;
            }
            if std::fs::remove_dir_all(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The URL without userinfo, for labels and messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// How `git` reaches the remote: extra `-c` settings and environment, with the files they need.
struct Access {
    config: Vec<String>,
    env: Vec<(String, String)>,
    _files: Option<tempfile::TempDir>,
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// Validates the credentials Secret as Flux does (§2.3) and prepares the access for `git`.
fn access(remote: &Remote) -> Result<Access, Failure> {
    let invalid = |m: String| {
        Failure::retry(
            SOURCE_MANAGER_FAILED_REASON,
            format!("failed configuring source manager: {m}"),
        )
    };
    let scheme = remote.url.split_once("://").map_or("", |(s, _)| s);
    let data = &remote.auth;
    let mut access = Access {
        config: Vec::new(),
        env: Vec::new(),
        _files: None,
    };
    let files =
        || tempfile::tempdir().map_err(|e| git_failed(format!("creating a credentials dir: {e}")));
    if let Some(proxy) = &remote.proxy {
        access.config.push(format!("http.proxy={proxy}"));
    }
    match scheme {
        "ssh" => {
            let identity = data.get("identity").ok_or_else(|| {
                invalid("invalid 'ssh' auth option: 'identity' is required".into())
            })?;
            let known_hosts = data.get("known_hosts").ok_or_else(|| {
                invalid("invalid 'ssh' auth option: 'known_hosts' is required".into())
            })?;
            if data.contains_key("password") {
                return Err(invalid(
                    "passphrase-protected SSH identities are not supported yet: use a key without a passphrase".into(),
                ));
            }
            let dir = files()?;
            let key = dir.path().join("identity");
            let kh = dir.path().join("known_hosts");
            let write = |p: &Path, d: &[u8]| {
                std::fs::write(p, d)
                    .map_err(|e| git_failed(format!("writing {}: {e}", p.display())))
            };
            let mut id = identity.clone();
            if !id.ends_with(b"\n") {
                id.push(b'\n');
            }
            write(&key, &id)?;
            write(&kh, known_hosts)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| git_failed(format!("protecting the SSH key: {e}")))?;
            }
            access.env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i '{}' -o UserKnownHostsFile='{}' -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes",
                    key.display(),
                    kh.display()
                ),
            ));
            access._files = Some(dir);
        }
        "http" | "https" => {
            let (user, password, bearer) = (
                text(data, "username"),
                text(data, "password"),
                text(data, "bearerToken"),
            );
            if password.is_some() && user.is_none() && bearer.is_none() {
                return Err(invalid(format!(
                    "invalid '{scheme}' auth option: 'password' requires 'username' to be set"
                )));
            }
            if let Some(token) = bearer {
                if user.is_some() || password.is_some() {
                    return Err(invalid(
                        "basic auth and bearer token cannot be set at the same time".into(),
                    ));
                }
                access
                    .config
                    .push(format!("http.extraHeader=Authorization: Bearer {token}"));
            } else if let Some(user) = user {
                let pair = format!("{user}:{}", password.unwrap_or_default());
                access.config.push(format!(
                    "http.extraHeader=Authorization: Basic {}",
                    base64(pair.as_bytes())
                ));
            }
            let ca = data.get("ca.crt").or_else(|| data.get("caFile"));
            let cert = data.get("tls.crt").zip(data.get("tls.key"));
            if ca.is_some() || cert.is_some() {
                let dir = files()?;
                let write = |name: &str, d: &[u8]| -> Result<PathBuf, Failure> {
                    let p = dir.path().join(name);
                    std::fs::write(&p, d)
                        .map_err(|e| git_failed(format!("writing {}: {e}", p.display())))?;
                    Ok(p)
                };
                if let Some(ca) = ca {
                    let p = write("ca.crt", ca)?;
                    access
                        .config
                        .push(format!("http.sslCAInfo={}", p.display()));
                }
                if let Some((crt, key)) = cert {
                    let c = write("tls.crt", crt)?;
                    let k = write("tls.key", key)?;
                    access.config.push(format!("http.sslCert={}", c.display()));
                    access.config.push(format!("http.sslKey={}", k.display()));
                }
                access._files = Some(dir);
            }
        }
        other => {
            return Err(invalid(format!(
                "unsupported URL scheme '{other}' in '{}': use http, https or ssh",
                redact(&remote.url)
            )));
        }
    }
    Ok(access)
}

/// A checked-out working tree of the cache, on the push branch.
pub struct Workspace {
    dir: PathBuf,
    access: Access,
    timeout: Duration,
    repository: String,
    metrics: Arc<Metrics>,
    /// `<ref>@sha1:<hex>` of the checked-out commit.
    revision: String,
}

/// Output of a failed git command.
struct GitError(String);

impl Workspace {
    fn git(&self, args: &[&str]) -> Result<String, GitError> {
        self.git_env(args, &[])
    }

    fn git_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .current_dir(&self.dir);
        for c in &self.access.config {
            cmd.arg("-c").arg(c);
        }
        for (k, v) in &self.access.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_with_timeout(cmd, self.timeout)
    }

    fn timed<T>(&self, op: &str, f: impl FnOnce(&Self) -> T) -> T {
        let t = Instant::now();
        let r = f(self);
        self.metrics
            .git_operation_duration
            .get_or_create(&GitOperationLabels {
                repository: self.repository.clone(),
                operation: op.to_owned(),
            })
            .observe(t.elapsed().as_secs_f64());
        r
    }

    /// The working tree.
    pub fn workdir(&self) -> &Path {
        &self.dir
    }

    /// `<ref>@sha1:<hex>` of the checked-out commit.
    pub fn revision(&self) -> String {
        self.revision.clone()
    }

    /// Discards uncommitted changes.
    pub fn reset(&mut self) -> Result<(), Failure> {
        self.git(&["reset", "-q", "--hard", "HEAD"])
            .and_then(|_| self.git(&["clean", "-q", "-ffdx"]))
            .map(|_| ())
            .map_err(|e| git_failed(format!("failed to reset the work tree: {}", e.0)))
    }

    /// Commits every change in the tree; `None` when nothing changed.
    pub fn commit(
        &mut self,
        settings: &CommitSettings,
        message: &str,
    ) -> Result<Option<String>, Failure> {
        if let Some(s) = &settings.signing {
            return Err(Failure::retry(
                SOURCE_MANAGER_FAILED_REASON,
                format!(
                    "commit signing (secret '{}') is not supported by this build yet",
                    s.name
                ),
            ));
        }
        let fail = |e: GitError| git_failed(format!("failed to update source: {}", e.0));
        self.timed("commit", |w| {
            w.git(&["add", "-A"]).map_err(fail)?;
            let status = w.git(&["status", "--porcelain"]).map_err(fail)?;
            if status.trim().is_empty() {
                return Ok(None);
            }
            let env = [
                ("GIT_AUTHOR_NAME", settings.author_name.as_str()),
                ("GIT_AUTHOR_EMAIL", settings.author_email.as_str()),
                ("GIT_COMMITTER_NAME", settings.author_name.as_str()),
                ("GIT_COMMITTER_EMAIL", settings.author_email.as_str()),
            ];
            // The message goes verbatim (no trailing newline added, no comment stripping).
            w.git_env(
                &[
                    "commit",
                    "-q",
                    "--no-verify",
                    "--cleanup=verbatim",
                    "--allow-empty-message",
                    "-m",
                    message,
                ],
                &env,
            )
            .map_err(fail)?;
            let sha = w.git(&["rev-parse", "HEAD"]).map_err(fail)?;
            Ok(Some(sha.trim().to_owned()))
        })
    }

    /// Pushes the push branch (and the refspec). When the remote branch moved, fetches it,
    /// resets onto it, calls `redo` to re-apply the updates and tries again.
    pub fn push(
        &mut self,
        branches: &Branches,
        force: bool,
        started: Instant,
        redo: &mut dyn FnMut(&mut Workspace) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let dst = format!("HEAD:refs/heads/{}", branches.push_branch);
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
        for (k, v) in &branches.push_options {
            args.push(format!(
                "--push-option={k}{}",
                if v.is_empty() {
                    String::new()
                } else {
                    format!("={v}")
                }
            ));
        }
        if force {
            args.push("--force".into());
        }
        args.push("origin".into());
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=PUSH_ATTEMPTS {
            let mut a = args.clone();
            a.push(dst.clone());
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            match self.timed("push", |w| w.git(&refs)) {
                Ok(_) => {
                    self.metrics
                        .push_latency
                        .get_or_create(&RepositoryLabels {
                            repository: self.repository.clone(),
                        })
                        .observe(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) if attempt < PUSH_ATTEMPTS && rejected(&e.0) => {
                    tracing::info!(
                        attempt,
                        "push rejected: the remote branch moved; redoing the updates on its new tip"
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                    let fetched = self.timed("fetch", |w| {
                        w.git(&[
                            "fetch",
                            "-q",
                            "--no-tags",
                            "origin",
                            &format!(
                                "+refs/heads/{b}:refs/remotes/origin/{b}",
                                b = branches.push_branch
                            ),
                        ])
                    });
                    fetched
                        .map_err(|e| git_failed(format!("failed to push to remote: {}", e.0)))?;
                    self.git(&[
                        "reset",
                        "-q",
                        "--hard",
                        &format!("refs/remotes/origin/{}", branches.push_branch),
                    ])
                    .map_err(|e| git_failed(format!("failed to push to remote: {}", e.0)))?;
                    redo(self)?;
                    let head = self.git(&["rev-parse", "HEAD"]).unwrap_or_default();
                    let remote = self
                        .git(&[
                            "rev-parse",
                            &format!("refs/remotes/origin/{}", branches.push_branch),
                        ])
                        .unwrap_or_default();
                    if head == remote {
                        // Nothing left to push after redoing on the new tip.
                        return Ok(());
                    }
                }
                Err(e) => {
                    return Err(git_failed(format!(
                        "failed to update source: failed to push to remote: {}",
                        e.0.trim()
                    )));
                }
            }
        }
        if let Some(refspec) = &branches.refspec {
            let mut a = args.clone();
            a.push(refspec.clone());
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = self.timed("push", |w| w.git(&refs)).map_err(|e| {
                git_failed(format!(
                    "failed to update source: failed to push refspec '{refspec}' to remote: {}",
                    e.0.trim()
                ))
            })?;
            if out.lines().any(|l| l.starts_with('=')) {
                return Err(git_failed(format!(
                    "failed to update source: failed to push refspec '{refspec}' to remote: already up-to-date"
                )));
            }
        }
        Ok(())
    }
}

fn rejected(stderr: &str) -> bool {
    [
        "non-fast-forward",
        "fetch first",
        "[rejected]",
        "stale info",
        "cannot lock ref",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String, GitError> {
    let mut child = cmd
        .spawn()
        .map_err(|e| GitError(format!("running git: {e}")))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(GitError(format!(
                    "timed out after {}",
                    api::format_go_duration(timeout)
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(GitError(format!("waiting for git: {e}"))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let status = status?;
    if status.success() {
        Ok(stdout)
    } else {
        Err(GitError(format!(
            "{}{}",
            stderr.trim_end(),
            stdout.trim_end()
        )))
    }
}

/// Fetches the checkout reference (and the push branch when it differs) into the cached clone of
/// the remote and checks out the push branch (§5.2): on the existing remote push branch when
/// switching branch, else on the checkout commit.
pub fn checkout(
    cache: &GitCache,
    remote: &Remote,
    branches: &Branches,
) -> Result<Workspace, Failure> {
    let access = access(remote)?;
    let dir = cache.dir_for(&remote.url, &branches.push_branch);
    let fresh = !dir.join(".git").exists();
    if fresh {
        std::fs::create_dir_all(&dir).map_err(|e| {
            git_failed(format!(
                "failed to checkout source: creating {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut ws = Workspace {
        dir,
        access,
        timeout: remote.timeout,
        repository: redact(&remote.url),
        metrics: cache.metrics.clone(),
        revision: String::new(),
    };
    let url = redact(&remote.url);
    let fail = |e: GitError| {
        git_failed(format!(
            "failed to checkout source: unable to clone '{url}': {}",
            e.0.trim()
        ))
    };
    if fresh {
        ws.git(&["init", "-q"]).map_err(fail)?;
        ws.git(&["remote", "add", "origin", &remote.url])
            .map_err(fail)?;
    } else {
        ws.git(&["remote", "set-url", "origin", &remote.url])
            .map_err(fail)?;
    }
    let (refspec, local, name): (String, String, String) = match branches.checkout.checkout() {
        GitCheckout::Branch(b) => (
            format!("+refs/heads/{b}:refs/remotes/origin/{b}"),
            format!("refs/remotes/origin/{b}"),
            b.to_owned(),
        ),
        GitCheckout::Tag(t) => (
            format!("+refs/tags/{t}:refs/tags/{t}"),
            format!("refs/tags/{t}^{{commit}}"),
            t.to_owned(),
        ),
        GitCheckout::RefName(n) => (
            format!("+{n}:refs/flux/checkout"),
            "refs/flux/checkout".to_owned(),
            n.to_owned(),
        ),
        GitCheckout::Commit { commit, branch } => (
            match branch {
                Some(b) => format!("+refs/heads/{b}:refs/remotes/origin/{b}"),
                None => "+refs/heads/*:refs/remotes/origin/*".to_owned(),
            },
            format!("{commit}^{{commit}}"),
            branch.unwrap_or("HEAD").to_owned(),
        ),
        GitCheckout::SemVer(s) => {
            return Err(git_failed(format!(
                "failed to checkout source: checkout by semver ('{s}') is not supported yet: use a branch, tag, name or commit"
            )));
        }
    };
    ws.timed("checkout", |w| {
        w.git(&["fetch", "-q", "--no-tags", "origin", &refspec])
    })
    .map_err(fail)?;
    let checkout_commit = ws.git(&["rev-parse", "--verify", &local]).map_err(fail)?;
    let checkout_commit = checkout_commit.trim().to_owned();
    ws.revision = format!("{name}@sha1:{checkout_commit}");
    let mut base = checkout_commit.clone();
    if branches.switch_branch {
        let push = &branches.push_branch;
        // The push branch may not exist yet: then it starts at the checkout commit.
        let fetched = ws.git(&[
            "fetch",
            "-q",
            "--no-tags",
            "origin",
            &format!("+refs/heads/{push}:refs/remotes/origin/{push}"),
        ]);
        if fetched.is_ok() {
            if let Ok(sha) = ws.git(&[
                "rev-parse",
                "--verify",
                &format!("refs/remotes/origin/{push}"),
            ]) {
                base = sha.trim().to_owned();
            }
        } else {
            // A stale tracking ref would otherwise be mistaken for the remote branch.
            let _ = ws.git(&["update-ref", "-d", &format!("refs/remotes/origin/{push}")]);
        }
    }
    ws.git(&["checkout", "-q", "-f", "-B", &branches.push_branch, &base])
        .map_err(fail)?;
    ws.git(&["clean", "-q", "-ffdx"]).map_err(fail)?;
    // The directory's time orders eviction (least recently used first).
    if let Err(e) =
        std::fs::File::open(&ws.dir).and_then(|d| d.set_modified(std::time::SystemTime::now()))
    {
        tracing::debug!(error = %e, "unable to mark the clone as used");
    }
    cache.evict(&ws.dir);
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("https://u:p@h:1/r.git"), "https://h:1/r.git");
        assert_eq!(redact("ssh://git@h/r"), "ssh://h/r");
        assert_eq!(redact("http://h/r"), "http://h/r");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    fn remote(url: &str, pairs: &[(&str, &str)]) -> Remote {
        Remote {
            url: url.into(),
            auth: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            proxy: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn credentials_are_validated_as_flux_does() {
        let msg = |r: Remote| {
            access(&r)
                .err()
                .map(|f| f.message().to_owned())
                .unwrap_or_default()
        };
        assert!(msg(remote("ssh://h/r", &[])).contains("'identity' is required"));
        assert!(
            msg(remote("ssh://h/r", &[("identity", "k")])).contains("'known_hosts' is required")
        );
        assert!(
            msg(remote("https://h/r", &[("password", "p")]))
                .contains("'password' requires 'username'")
        );
        assert!(
            msg(remote(
                "https://h/r",
                &[("username", "u"), ("bearerToken", "t")]
            ))
            .contains("cannot be set at the same time")
        );
        let a = access(&remote(
            "http://h/r",
            &[("username", "u"), ("password", "p")],
        ))
        .unwrap();
        assert_eq!(a.config, ["http.extraHeader=Authorization: Basic dTpw"]);
    }
}
