//! `image-automation-controller run-once` against the real registry and Git server: the guide's
//! manifests run once push the very commit the controllers push (same parent, tree, message and
//! author); a second run changes nothing; `--dry-run` prints the diff and leaves the remote alone;
//! invalid manifests name the file and the field (exit 2); an unreachable registry is transient
//! (exit 3); `--output json`; secrets from `--secrets-dir`; manifests read from the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use e2e::{
    KUBECONFIG_ADMIN, KUBECONFIG_AUTOMATION, KUBECONFIG_REFLECTOR, admin_client, controller_binary,
    create_namespace, eventually, kubectl_with_input, repo_root, testenv_var, unique_name,
};
use runtime::test_support::Process;
use serde_json::Value;
use testenv::registry::RegistryClient;
use testenv::{GitTransport, RegistryVariant, env};

const AUTOMATION: &str = "image-automation-controller";
const GUIDE: &str = "examples/guide/clusters/my-cluster";
const DEPLOYMENT_PATH: &str = "clusters/my-cluster/podinfo-deployment.yaml";
const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// What a `run-once` printed and returned.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_once(args: &[&str]) -> Result<Ran> {
    let out = Command::new(controller_binary(AUTOMATION)?)
        .arg("run-once")
        .args(args)
        .output()
        .context("running run-once")?;
    Ok(Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A guide file adapted as `hack/demo.sh` does: the image at `image`, the namespace `ns`.
fn guide(file: &str, ns: &str, image: &str) -> Result<String> {
    let path = repo_root().join(GUIDE).join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .replace(PODINFO, image)
        .replace("namespace: flux-system", &format!("namespace: {ns}"))
        .replace("\"flux-system:podinfo\"", &format!("\"{ns}:podinfo\"")))
}

/// The guide's three objects plus the GitRepository of `url` and its credentials' secretRef.
fn guide_objects(ns: &str, image: &str, url: &str) -> Result<String> {
    let mut s = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: {ns}\nspec:\n  interval: 1m0s\n  url: {url}\n  ref:\n    branch: main\n  secretRef:\n    name: flux-system\n"
    );
    for f in [
        "podinfo-registry.yaml",
        "podinfo-policy.yaml",
        "flux-system-automation.yaml",
    ] {
        s.push_str("---\n");
        s.push_str(&guide(f, ns, image)?);
    }
    Ok(s)
}

/// Pushes the guide's podinfo tags (and a signature tag, excluded by default) to `variant`.
async fn push_podinfo(variant: RegistryVariant, repo: &str) -> Result<String> {
    let ep = env().registry(variant)?;
    let client = RegistryClient::with_auth(&ep, ep.auth.clone())?;
    client
        .push_tags(
            repo,
            &[
                "5.0.0",
                "5.0.1",
                "5.0.2",
                "5.0.3",
                "5.1.0",
                "6.0.0",
                "5.0.9.sig",
            ],
            8,
        )
        .await?;
    Ok(format!("{}/{repo}", ep.host))
}

/// A bare repository seeded with the guide's Deployment for `ns` and `image`; returns (name, path).
fn seed(
    prefix: &str,
    ns: &str,
    image: &str,
    extra: &[(&str, String)],
) -> Result<(String, PathBuf)> {
    let name = unique_name(prefix)?;
    let deployment = guide("podinfo-deployment.yaml", ns, image)?;
    let mut files: Vec<(&str, &str)> = vec![(DEPLOYMENT_PATH, deployment.as_str())];
    files.extend(extra.iter().map(|(p, t)| (*p, t.as_str())));
    let bare = env().seed_repo(&name, &files)?;
    Ok((name, bare))
}

/// A copy of the bare repository `bare` (same commits) served as `name`.
fn copy_repo(bare: &Path, name: &str) -> Result<PathBuf> {
    let to = bare
        .parent()
        .context("repository without a parent")?
        .join(format!("{name}.git"));
    let status = Command::new("cp").arg("-a").arg(bare).arg(&to).status()?;
    ensure!(status.success(), "copying {}", bare.display());
    Ok(to)
}

fn git(bare: &Path, args: &[&str]) -> Result<String> {
    Ok(testenv::git::git(bare, args)?)
}

fn head(bare: &Path) -> Result<String> {
    Ok(git(bare, &["rev-parse", "refs/heads/main"])?
        .trim()
        .to_owned())
}

/// Parent, tree, author, committer and message of `main`'s head (no timestamps).
fn commit_identity(bare: &Path) -> Result<String> {
    git(
        bare,
        &[
            "log",
            "-1",
            "--format=%P%n%T%n%an <%ae>%n%cn <%ce>%n%B",
            "main",
        ],
    )
}

/// A directory with `objects.yaml`, and a secrets directory with `flux-system/{username,password}`.
fn inputs(objects: &str) -> Result<(tempfile::TempDir, tempfile::TempDir)> {
    let manifests = tempfile::tempdir()?;
    std::fs::write(manifests.path().join("objects.yaml"), objects)?;
    let secrets = tempfile::tempdir()?;
    let (user, password) = env().credentials()?;
    let dir = secrets.path().join("flux-system");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("username"), user)?;
    std::fs::write(dir.join("password"), password)?;
    Ok((manifests, secrets))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// One test's guide: podinfo tags pushed to the anonymous registry under a path of the test's
/// own, and a repository seeded with the guide's Deployment.
struct Guide {
    ns: String,
    image: String,
    bare: PathBuf,
    /// The seed commit.
    before: String,
    /// The repository's URL on the basic-auth Git server.
    url: String,
}

impl Guide {
    async fn new(prefix: &str) -> Result<Self> {
        let ns = unique_name(prefix)?;
        let image = push_podinfo(RegistryVariant::Anonymous, &format!("{ns}/podinfo")).await?;
        let (name, bare) = seed(prefix, &ns, &image, &[])?;
        let before = head(&bare)?;
        let url = env().git_url(GitTransport::HttpBasic, &name)?;
        Ok(Self {
            ns,
            image,
            bare,
            before,
            url,
        })
    }
}

/// The guide with the controllers on one copy of a repository and `run-once` on an identical
/// second copy: both push the same change (parent, tree, message, author). Run again, run-once
/// has nothing to do and leaves the remote as it is.
#[tokio::test(flavor = "multi_thread")]
async fn the_guide_run_once_pushes_the_commit_the_controllers_push() -> Result<()> {
    let client = admin_client().await?;
    let ns = create_namespace(&client, "ro-guide").await?;
    let image = push_podinfo(RegistryVariant::Anonymous, &format!("{ns}/podinfo")).await?;
    let (name_a, bare_a) = seed("ro-guide-a", &ns, &image, &[])?;
    let name_b = unique_name("ro-guide-b")?;
    let bare_b = copy_repo(&bare_a, &name_b)?;
    let seed_commit = head(&bare_a)?;
    ensure!(head(&bare_b)? == seed_commit);

    // The controllers, sharded to this test's objects.
    let shard = unique_name("ro")?;
    let storage = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let selector = format!("--watch-label-selector=e2e-shard={shard}");
    let reflector_args = [
        format!("--kubeconfig={}", testenv_var(KUBECONFIG_REFLECTOR)?),
        selector.clone(),
        format!("--storage-path={}", storage.path().display()),
    ];
    let automation_args = [
        format!("--kubeconfig={}", testenv_var(KUBECONFIG_AUTOMATION)?),
        selector,
        format!("--git-cache-path={}", cache.path().display()),
    ];
    let args = |a: &[String]| a.iter().map(String::clone).collect::<Vec<_>>();
    let (ra, aa) = (args(&reflector_args), args(&automation_args));
    let reflector = Process::start(
        &controller_binary("image-reflector-controller")?,
        &ra.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let automation = Process::start(
        &controller_binary(AUTOMATION)?,
        &aa.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let url_a = env().git_url(GitTransport::HttpBasic, &name_a)?;
    let (user, password) = env().credentials()?;
    let labelled = guide_objects(&ns, &image, &url_a)?.replace(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n  labels:\n    e2e-shard: {shard}\n"),
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: flux-system\n  namespace: {ns}\nstringData:\n  username: {user}\n  password: {password}\n---\n"
    );
    kubectl_with_input(
        KUBECONFIG_ADMIN,
        &["apply", "--validate=false", "-f", "-"],
        Some(&format!("{secret}{labelled}")),
    )?;
    eventually("the controllers' commit", || async {
        let h = head(&bare_a)?;
        ensure!(h != seed_commit, "main is still at the seed");
        Ok(h)
    })
    .await
    .with_context(|| format!("{}\n{}", reflector.logs(), automation.logs()))?;

    // run-once on the copy, with the guide's objects as written (v1beta1) and the secrets dir.
    let url_b = env().git_url(GitTransport::HttpBasic, &name_b)?;
    let (manifests, secrets) = inputs(&guide_objects(&ns, &image, &url_b)?)?;
    // A storage directory kept between the two runs, as a CI cache would keep it.
    let kept = tempfile::tempdir()?;
    let argv = [
        "--manifests",
        path_str(manifests.path())?,
        "--secrets-dir",
        path_str(secrets.path())?,
        "--storage-path",
        path_str(kept.path())?,
    ];
    let first = run_once(&argv)?;
    ensure!(first.code == 0, "{first}");
    ensure!(first.stdout.contains("pushed commit '"), "{first}");
    ensure!(
        first.stdout.trim_end().ends_with("changes pushed"),
        "{first}"
    );
    let pushed = head(&bare_b)?;
    ensure!(pushed != seed_commit, "run-once pushed nothing: {first}");

    let (a, b) = (commit_identity(&bare_a)?, commit_identity(&bare_b)?);
    assert_eq!(
        a, b,
        "controllers vs run-once (parent, tree, author, committer, message)"
    );
    assert!(a.starts_with(&seed_commit), "{a}");
    assert!(a.contains(&format!("{image}:5.0.3")), "{a}");
    assert_eq!(
        git(&bare_b, &["show", &format!("main:{DEPLOYMENT_PATH}")])?,
        guide("podinfo-deployment.yaml", &ns, &image)?
            .replace(&format!("{image}:5.0.0 #"), &format!("{image}:5.0.3 #"))
    );

    // Again: nothing to do, the remote is untouched.
    let second = run_once(&argv)?;
    ensure!(second.code == 0, "{second}");
    ensure!(
        second.stdout.contains(": nothing to do (main@sha1:"),
        "{second}"
    );
    ensure!(
        second.stdout.trim_end().ends_with("nothing to do"),
        "{second}"
    );
    assert_eq!(head(&bare_b)?, pushed);
    for dir in ["tags", "git"] {
        ensure!(kept.path().join(dir).is_dir(), "no {dir} in --storage-path");
    }
    Ok(())
}

/// `--dry-run` prints the diff and the message and pushes nothing; with `--output json` the same
/// as a machine result.
#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_diff_and_leaves_the_remote_untouched() -> Result<()> {
    let Guide {
        ns,
        image,
        bare,
        before,
        url,
    } = Guide::new("ro-dry").await?;
    let (manifests, secrets) = inputs(&guide_objects(&ns, &image, &url)?)?;
    let base = [
        "--manifests",
        path_str(manifests.path())?,
        "--secrets-dir",
        path_str(secrets.path())?,
        "--dry-run",
    ];
    let ran = run_once(&base)?;
    ensure!(ran.code == 0, "{ran}");
    for want in [
        &"--- a/podinfo-deployment.yaml\n+++ b/podinfo-deployment.yaml\n".to_owned(),
        &format!("-          image: {image}:5.0.0 # {{\"$imagepolicy\": \"{ns}:podinfo\"}}\n"),
        &format!("+          image: {image}:5.0.3 # {{\"$imagepolicy\": \"{ns}:podinfo\"}}\n"),
        &format!("\n{image}:5.0.3\n"),
        &"dry run: changes found, nothing pushed".to_owned(),
    ] {
        ensure!(ran.stdout.contains(want.as_str()), "no {want:?} in {ran}");
    }
    assert_eq!(head(&bare)?, before, "the dry run moved main");
    assert_eq!(git(&bare, &["branch", "--list"])?.trim(), "* main");

    let mut json_args = base.to_vec();
    json_args.extend(["--output", "json"]);
    let ran = run_once(&json_args)?;
    ensure!(ran.code == 0, "{ran}");
    let v: Value = serde_json::from_str(&ran.stdout).with_context(|| ran.to_string())?;
    assert_eq!(v["result"], "dry-run", "{v:#}");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["dryRun"], true);
    assert_eq!(
        v["repositories"][0]["tagCount"], 6,
        "the .sig tag is excluded: {v:#}"
    );
    assert_eq!(v["policies"][0]["latestImage"], format!("{image}:5.0.3"));
    let auto = &v["automations"][0];
    assert_eq!(auto["result"], "would-push", "{v:#}");
    assert_eq!(auto["branch"], "main");
    assert_eq!(auto["message"], format!("{image}:5.0.3\n"));
    assert_eq!(
        auto["files"][0]["objects"][0]["changes"][0]["newValue"],
        format!("{image}:5.0.3")
    );
    assert!(
        auto["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+          image: "))
    );
    assert_eq!(head(&bare)?, before);
    Ok(())
}

/// The JSON result of a real push, the manifests read from the repository itself, and registry
/// credentials (`.dockerconfigjson`) from the secrets directory for the htpasswd registry.
#[tokio::test(flavor = "multi_thread")]
async fn manifests_in_the_repository_and_registry_secrets_from_the_directory() -> Result<()> {
    let ns = unique_name("ro-repo")?;
    let image = push_podinfo(RegistryVariant::Basic, &format!("{ns}/podinfo")).await?;
    let name = unique_name("ro-repo")?;
    let url = env().git_url(GitTransport::HttpBasic, &name)?;
    // The guide's layout: the objects live next to the Deployment; the registry needs a secret.
    let objects = guide_objects(&ns, &image, &url)?.replace(
        "  interval: 1m0s\n---\napiVersion: image.toolkit.fluxcd.io/v1beta1\nkind: ImagePolicy",
        "  interval: 1m0s\n  secretRef:\n    name: regcred\n---\napiVersion: image.toolkit.fluxcd.io/v1beta1\nkind: ImagePolicy",
    );
    ensure!(objects.contains("regcred"), "{objects}");
    let (_, bare) = {
        let deployment = guide("podinfo-deployment.yaml", &ns, &image)?;
        let files = [
            (DEPLOYMENT_PATH, deployment.as_str()),
            ("clusters/my-cluster/objects.yaml", objects.as_str()),
        ];
        (name.clone(), env().seed_repo(&name, &files)?)
    };
    let before = head(&bare)?;
    let (_m, secrets) = inputs("")?;
    let (user, password) = env().credentials()?;
    let registry_host = image.split('/').next().context("image host")?;
    let auth = base64_encode(&format!("{user}:{password}"));
    let regcred = secrets.path().join("regcred");
    std::fs::create_dir_all(&regcred)?;
    std::fs::write(
        regcred.join(".dockerconfigjson"),
        format!("{{\"auths\":{{\"{registry_host}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )?;
    let argv = [
        "--manifests-in-repo",
        "clusters/my-cluster",
        "--git-url",
        &url,
        "--git-secret",
        "flux-system",
        "--secrets-dir",
        path_str(secrets.path())?,
        "--output",
        "json",
    ];
    let ran = run_once(&argv)?;
    ensure!(ran.code == 0, "{ran}");
    let v: Value = serde_json::from_str(&ran.stdout).with_context(|| ran.to_string())?;
    let pushed = head(&bare)?;
    ensure!(pushed != before, "nothing pushed: {v:#}");
    assert_eq!(v["result"], "pushed", "{v:#}");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["errors"], serde_json::json!([]));
    let auto = &v["automations"][0];
    assert_eq!(auto["namespace"], ns.as_str());
    assert_eq!(auto["name"], "flux-system");
    assert_eq!(auto["file"], "clusters/my-cluster/objects.yaml");
    assert_eq!(auto["result"], "pushed");
    assert_eq!(auto["commit"], pushed.as_str());
    assert_eq!(auto["revision"], format!("main@sha1:{pushed}"));
    assert_eq!(auto["message"], format!("{image}:5.0.3\n"));
    assert_eq!(auto["files"][0]["path"], "podinfo-deployment.yaml");
    // The Deployment of the repository is not an input object: skipped with a note.
    let notes = v["notes"].to_string();
    ensure!(
        notes.contains("podinfo-deployment.yaml: Deployment (apps/v1) skipped"),
        "{notes}"
    );

    // Without the registry secret the scan is refused: a configuration error.
    std::fs::remove_dir_all(&regcred)?;
    let ran = run_once(&argv)?;
    assert_eq!(ran.code, 2, "{ran}");
    ensure!(ran.stdout.contains("regcred"), "{ran}");
    Ok(())
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Invalid manifests: every error names the file and the field; exit 2; nothing is contacted.
#[test]
fn invalid_manifests_name_the_file_and_the_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = "flux-system";
    let policy = guide("podinfo-policy.yaml", ns, PODINFO)?.replace("5.0.x", "not a range!");
    let repo =
        guide("podinfo-registry.yaml", ns, PODINFO)?.replace(&format!("  image: {PODINFO}\n"), "");
    let auto = guide("flux-system-automation.yaml", ns, PODINFO)?
        .replace("        email: fluxcdbot@users.noreply.github.com\n", "");
    std::fs::write(dir.path().join("policy.yaml"), policy)?;
    std::fs::create_dir(dir.path().join("sub"))?;
    std::fs::write(dir.path().join("sub/registry.yaml"), repo)?;
    std::fs::write(dir.path().join("sub/automation.yaml"), auto)?;
    let d = path_str(dir.path())?;
    let ran = run_once(&["--manifests", d])?;
    assert_eq!(ran.code, 2, "{ran}");
    for want in [
        format!(
            "configuration error: {d}/policy.yaml: ImagePolicy flux-system/podinfo: spec.policy.semver.range: "
        ),
        format!(
            "configuration error: {d}/sub/registry.yaml: ImageRepository podinfo: spec: missing field `image`"
        ),
        format!(
            "configuration error: {d}/sub/automation.yaml: ImageUpdateAutomation flux-system: spec.git.commit.author: missing field `email`"
        ),
    ] {
        ensure!(ran.stderr.contains(&want), "no {want:?} in {ran}");
    }
    ensure!(ran.stdout.trim_end().ends_with("failed"), "{ran}");
    let json = run_once(&["--manifests", d, "--output", "json"])?;
    assert_eq!(json.code, 2);
    let v: Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(v["result"], "failed");
    assert_eq!(v["exitCode"], 2);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(3), "{v:#}");
    assert_eq!(v["errors"][0]["kind"], "config");
    Ok(())
}

/// An unreachable registry is a transient failure (exit 3), and nothing is pushed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_is_transient() -> Result<()> {
    let ns = unique_name("ro-down")?;
    // Port 1 on loopback refuses connections at once.
    let image = format!("127.0.0.1:1/{ns}/podinfo");
    let (name, bare) = seed("ro-down", &ns, &image, &[])?;
    let before = head(&bare)?;
    let url = env().git_url(GitTransport::HttpBasic, &name)?;
    let (manifests, secrets) = inputs(&guide_objects(&ns, &image, &url)?)?;
    let ran = run_once(&[
        "--manifests",
        path_str(manifests.path())?,
        "--secrets-dir",
        path_str(secrets.path())?,
    ])?;
    assert_eq!(ran.code, 3, "{ran}");
    ensure!(
        ran.stderr.contains(&format!(
            "transient error: ImageRepository {ns}/podinfo: scan failed: "
        )),
        "{ran}"
    );
    assert_eq!(head(&bare)?, before);
    // An unreachable Git server is transient too.
    let image = push_podinfo(RegistryVariant::Anonymous, &format!("{ns}/podinfo")).await?;
    let objects = guide_objects(&ns, &image, "http://127.0.0.1:1/nowhere.git")?;
    let (manifests, secrets) = inputs(&objects)?;
    let ran = run_once(&[
        "--manifests",
        path_str(manifests.path())?,
        "--secrets-dir",
        path_str(secrets.path())?,
    ])?;
    assert_eq!(ran.code, 3, "{ran}");
    ensure!(ran.stderr.contains("failed to checkout source"), "{ran}");
    Ok(())
}

/// `--help` documents the exit codes.
#[test]
fn help_documents_the_exit_codes() -> Result<()> {
    let out = Command::new(controller_binary(AUTOMATION)?)
        .args(["run-once", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Exit codes:",
        "  2  configuration error",
        "  3  transient failure",
        "--secrets-dir",
    ] {
        ensure!(help.contains(want), "no {want:?} in\n{help}");
    }
    // The README's section lists every flag (a table row each) and the exit codes.
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let section = readme
        .split("### Standalone mode (run-once)")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .context("no run-once section in the README")?;
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=']).next())
        .filter(|f| *f != "help")
        .collect();
    ensure!(flags.len() >= 10, "{flags:?}");
    for flag in flags {
        ensure!(
            section.contains(&format!("| `--{flag}` |")),
            "README run-once section lacks a row for --{flag}"
        );
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |"] {
        ensure!(section.contains(code), "README lacks exit code row {code}");
    }
    Ok(())
}

/// The commit signing key comes from the secrets directory (`identity`, as the Secret's key), and
/// the pushed commit verifies; without the secret the run is a configuration error.
#[tokio::test(flavor = "multi_thread")]
async fn commits_are_signed_with_the_key_from_the_secrets_dir() -> Result<()> {
    let Guide {
        ns,
        image,
        bare,
        before,
        url,
    } = Guide::new("ro-sign").await?;
    let objects = guide_objects(&ns, &image, &url)?.replace(
        "    commit:\n",
        "    commit:\n      signingKey:\n        secretRef:\n          name: signing\n        type: ssh\n",
    );
    let (manifests, secrets) = inputs(&objects)?;
    let argv = [
        "--manifests",
        path_str(manifests.path())?,
        "--secrets-dir",
        path_str(secrets.path())?,
    ];
    // No such secret yet: the source cannot be resolved.
    let ran = run_once(&argv)?;
    assert_eq!(ran.code, 2, "{ran}");
    ensure!(
        ran.stderr
            .contains("could not find signing key secret 'signing'"),
        "{ran}"
    );
    assert_eq!(head(&bare)?, before);

    let signing = secrets.path().join("signing");
    std::fs::create_dir_all(&signing)?;
    let key = signing.join("identity");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f"])
        .arg(&key)
        .output()?;
    ensure!(out.status.success(), "ssh-keygen: {out:?}");
    // Only the key the Secret would hold.
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    std::fs::remove_file(key.with_extension("pub"))?;
    let ran = run_once(&argv)?;
    ensure!(ran.code == 0, "{ran}");
    let pushed = head(&bare)?;
    ensure!(pushed != before, "{ran}");
    let keys = tempfile::tempdir()?;
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("fluxcdbot@users.noreply.github.com {public}"),
    )?;
    let out = testenv::git::git_command()
        .current_dir(&bare)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "-v", &pushed])
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "git verify-commit failed: {text}");
    Ok(())
}

/// A policy using an ImageRepository of another namespace goes through the reflector's ACL:
/// denied (exit 2) until the policy's Namespace, given as a manifest, has the labels the
/// repository's `accessFrom` asks for; `--no-cross-namespace-refs` refuses it outright.
#[tokio::test(flavor = "multi_thread")]
async fn cross_namespace_policies_follow_the_access_from_acl() -> Result<()> {
    let Guide {
        ns,
        image,
        bare,
        before,
        url,
    } = Guide::new("ro-acl").await?;
    let repo_ns = format!("{ns}-images");
    let objects = |namespace_labels: &str| -> Result<String> {
        let mut s = format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: {ns}\nspec:\n  interval: 1m0s\n  url: {url}\n  ref:\n    branch: main\n  secretRef:\n    name: flux-system\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n{namespace_labels}---\n\
             apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: podinfo\n  namespace: {repo_ns}\nspec:\n  image: {image}\n  interval: 1m0s\n  accessFrom:\n    namespaceSelectors:\n      - matchLabels:\n          images: shared\n---\n\
             apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: podinfo\n  namespace: {ns}\nspec:\n  imageRepositoryRef:\n    name: podinfo\n    namespace: {repo_ns}\n  policy:\n    semver:\n      range: 5.0.x\n---\n"
        );
        s.push_str(&guide("flux-system-automation.yaml", &ns, &image)?);
        Ok(s)
    };
    let run = |objects: String, extra: &'static [&'static str]| -> Result<Ran> {
        let (manifests, secrets) = inputs(&objects)?;
        let mut argv = vec![
            "--manifests".to_owned(),
            path_str(manifests.path())?.to_owned(),
            "--secrets-dir".to_owned(),
            path_str(secrets.path())?.to_owned(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        run_once(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let denied = run(objects("")?, &[])?;
    assert_eq!(denied.code, 2, "{denied}");
    ensure!(
        denied.stderr.contains(&format!(
            "ImagePolicy {ns}/podinfo: AccessDenied: failed to get the referred ImageRepository: access denied: '{repo_ns}/podinfo' can't be accessed due to ACL labels mismatch on namespace '{ns}'"
        )),
        "{denied}"
    );
    let labelled = objects("  labels:\n    images: shared\n")?;
    let blocked = run(labelled.clone(), &["--no-cross-namespace-refs"])?;
    assert_eq!(blocked.code, 2, "{blocked}");
    ensure!(
        blocked
            .stderr
            .contains("cross-namespace references have been blocked"),
        "{blocked}"
    );
    assert_eq!(head(&bare)?, before);
    let allowed = run(labelled, &[])?;
    ensure!(allowed.code == 0, "{allowed}");
    ensure!(
        allowed
            .stdout
            .contains(&format!("ImagePolicy {ns}/podinfo: {image}:5.0.3")),
        "{allowed}"
    );
    ensure!(head(&bare)? != before, "{allowed}");
    Ok(())
}
