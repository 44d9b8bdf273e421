//! Git helpers for tests, driving the `git` CLI: seeded bare repositories and commands preconfigured for each
//! transport of the test environment (credentials, CA, SSH key and known_hosts).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, GitTransport, Result, SshKeyType, TestEnv};

/// Author and committer of commits made by these helpers.
pub const AUTHOR: (&str, &str) = ("Testenv", "testenv@example.com");

/// A `git` command isolated from the user's and system configuration, never prompting, with a fixed identity.
pub fn git_command() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", AUTHOR.0)
        .env("GIT_AUTHOR_EMAIL", AUTHOR.1)
        .env("GIT_COMMITTER_NAME", AUTHOR.0)
        .env("GIT_COMMITTER_EMAIL", AUTHOR.1)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

/// Run a prepared `git` command; its stdout on success, an error with its output otherwise.
pub fn run(mut cmd: Command) -> Result<String> {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let out = cmd.output().map_err(|e| Error::Io {
        context: "running git".into(),
        source: e,
    })?;
    if !out.status.success() {
        return Err(Error::Git {
            args: args.join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `git ARGS` in `dir` (isolated as [`git_command`]).
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = git_command();
    cmd.current_dir(dir).args(args);
    run(cmd)
}

/// Create the bare repository `root/NAME.git` (default branch `main`) holding one commit with `files`
/// (`(path, content)`, parent directories created). Returns the repository's path.
pub fn seed_bare_repo(root: &Path, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let bare = root.join(format!("{name}.git"));
    let io = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
    let bare_str = bare.to_string_lossy().into_owned();
    git(root, &["init", "-q", "--bare", "-b", "main", &bare_str])?;
    let work = tempfile::tempdir().map_err(io("creating a work tree".into()))?;
    git(work.path(), &["init", "-q", "-b", "main"])?;
    for (path, content) in files {
        let file = work.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&file, content).map_err(io(format!("writing {}", file.display())))?;
    }
    git(work.path(), &["add", "-A"])?;
    git(
        work.path(),
        &["commit", "-q", "--allow-empty", "-m", "seed"],
    )?;
    git(work.path(), &["push", "-q", &bare_str, "main"])?;
    Ok(bare)
}

impl TestEnv {
    /// Seed the bare repository `NAME` in the served root (see [`seed_bare_repo`]); every transport serves it.
    pub fn seed_repo(&self, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        seed_bare_repo(&self.git_root()?, name, files)
    }

    /// The URL of `name` over `transport`, with the shared credentials embedded for the basic-auth transports.
    pub fn git_clone_url(&self, transport: GitTransport, name: &str) -> Result<String> {
        let url = self.git_url(transport, name)?;
        Ok(match transport {
            GitTransport::HttpBasic | GitTransport::Https => {
                let (user, password) = self.credentials()?;
                match url.split_once("://") {
                    Some((scheme, rest)) => format!("{scheme}://{user}:{password}@{rest}"),
                    None => url,
                }
            }
            _ => url,
        })
    }

    /// A [`git_command`] configured for `transport`: bearer header, CA for HTTPS, SSH key (ed25519) and
    /// known_hosts. Credentials of basic-auth transports go in the URL ([`Self::git_clone_url`]).
    pub fn git_command_for(&self, transport: GitTransport) -> Result<Command> {
        let mut cmd = git_command();
        match transport {
            GitTransport::HttpBearer => {
                let header = format!(
                    "http.extraHeader=Authorization: Bearer {}",
                    self.git_bearer_token()?
                );
                cmd.args(["-c", &header]);
            }
            GitTransport::Https => {
                cmd.env("GIT_SSL_CAINFO", self.ca_cert()?);
            }
            GitTransport::Ssh => {
                cmd.env("GIT_SSH_COMMAND", self.ssh_command(SshKeyType::Ed25519)?);
            }
            GitTransport::File
            | GitTransport::Daemon
            | GitTransport::Http
            | GitTransport::HttpBasic => {}
        }
        Ok(cmd)
    }

    /// An `ssh` command line for `GIT_SSH_COMMAND` using key `kind` and the environment's known_hosts (strict).
    pub fn ssh_command(&self, kind: SshKeyType) -> Result<String> {
        Ok(format!(
            "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes",
            self.ssh_key(kind)?.display(),
            self.ssh_known_hosts()?.display()
        ))
    }
}
