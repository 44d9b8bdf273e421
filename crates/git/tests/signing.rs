//! Signed commits verified by the real `git verify-commit`: OpenPGP keys made by gpg (passphrase-protected,
//! with and without a signing subkey) and SSH keys made by ssh-keygen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use git::{Cache, PushSpec, Signer};
use testenv::GitTransport;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Commit an edit signed by `signer` and push it; returns the bare repository and the commit.
fn signed_commit(signer: Signer) -> (std::path::PathBuf, String) {
    let (name, bare) = seed("sign");
    let remote = remote(GitTransport::File, &name);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf(), 0);
    let mut co = checkout_main(&cache, &remote).unwrap();
    std::fs::write(co.workdir().join("deploy.yaml"), "image: app:2.0.0\n").unwrap();
    let mut spec = commit_spec("signed update");
    spec.signer = Some(signer);
    let sha = co.commit(&spec).unwrap().unwrap();
    co.push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    (bare, sha)
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback", "--no-tty"]);
    c
}

/// A passphrase-protected key made by gpg; `subkey` adds a separate signing subkey (ed25519), else an RSA
/// primary key signs.
fn gpg_key(home: &Path, subkey: bool) -> Vec<u8> {
    std::fs::create_dir_all(home).unwrap();
    let mut perms = std::fs::metadata(home).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(home, perms).unwrap();
    let uid = "Flux Signer <signer@example.com>";
    if subkey {
        run(gpg(home).args([
            "--passphrase",
            "s3cret",
            "--quick-gen-key",
            uid,
            "ed25519",
            "cert",
            "never",
        ]));
        let fpr = run(gpg(home).args(["--with-colons", "--list-keys", uid]))
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_string())
            .unwrap();
        run(gpg(home).args([
            "--passphrase",
            "s3cret",
            "--quick-add-key",
            &fpr,
            "ed25519",
            "sign",
            "never",
        ]));
    } else {
        run(gpg(home).args([
            "--passphrase",
            "s3cret",
            "--quick-gen-key",
            uid,
            "rsa3072",
            "sign",
            "never",
        ]));
    }
    run(gpg(home).args([
        "--passphrase",
        "s3cret",
        "--armor",
        "--export-secret-keys",
        uid,
    ]))
    .into_bytes()
}

fn verify_gpg(home: &Path, bare: &Path, sha: &str) {
    let mut c = testenv::git::git_command();
    c.current_dir(bare)
        .env("GNUPGHOME", home)
        .args(["verify-commit", "-v", sha]);
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "git verify-commit failed: {text}");
    assert!(text.contains("Good signature"), "{text}");
}

#[test]
fn openpgp_passphrase_key_with_signing_subkey() {
    let home = tempfile::tempdir().unwrap();
    let armored = gpg_key(home.path(), true);
    let data = BTreeMap::from([
        ("git.asc".to_string(), armored),
        ("passphrase".to_string(), b"s3cret".to_vec()),
    ]);
    let (bare, sha) = signed_commit(Signer::from_secret("sig", "gpg", &data).unwrap());
    verify_gpg(home.path(), &bare, &sha);
}

#[test]
fn openpgp_rsa_primary_key() {
    let home = tempfile::tempdir().unwrap();
    let armored = gpg_key(home.path(), false);
    let data = BTreeMap::from([
        ("git.asc".to_string(), armored),
        ("passphrase".to_string(), b"s3cret".to_vec()),
    ]);
    let (bare, sha) = signed_commit(Signer::from_secret("sig", "", &data).unwrap());
    verify_gpg(home.path(), &bare, &sha);
}

#[test]
fn openpgp_errors_name_the_secret_and_hide_the_passphrase() {
    let home = tempfile::tempdir().unwrap();
    let armored = gpg_key(home.path(), true);
    let no_pass = BTreeMap::from([("git.asc".to_string(), armored.clone())]);
    let e = Signer::from_secret("sig", "gpg", &no_pass)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "can not use passphrase protected signing key without 'passphrase' field present in secret sig"
    );
    let wrong = BTreeMap::from([
        ("git.asc".to_string(), armored),
        ("passphrase".to_string(), b"WRONGPASS".to_vec()),
    ]);
    let e = Signer::from_secret("sig", "gpg", &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("could not decrypt private key of the signing key present in secret sig"),
        "{e}"
    );
    assert!(!e.contains("WRONGPASS"));
    let e = Signer::from_secret("sig", "gpg", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "signing key secret 'sig' does not contain a 'git.asc' key"
    );
    let e = Signer::from_secret("sig", "x509", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "unknown signing key type \"x509\"");
    let bad = BTreeMap::from([("git.asc".to_string(), b"not a key".to_vec())]);
    let e = Signer::from_secret("sig", "gpg", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("could not read signing key from secret 'sig'"),
        "{e}"
    );
}

fn ssh_signing(kind: &str, bits: Option<&str>, passphrase: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let mut c = Command::new("ssh-keygen");
    c.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "signer@example.com",
        "-f",
    ])
    .arg(&key);
    if let Some(b) = bits {
        c.args(["-b", b]);
    }
    run(&mut c);
    let mut data = BTreeMap::from([("identity".to_string(), std::fs::read(&key).unwrap())]);
    if !passphrase.is_empty() {
        data.insert("password".into(), passphrase.as_bytes().to_vec());
    }
    let (bare, sha) = signed_commit(Signer::from_secret("sig", "ssh", &data).unwrap());
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("flux@example.com {pubkey}")).unwrap();
    let mut v = testenv::git::git_command();
    v.current_dir(&bare)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "-v", &sha]);
    let out = v.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "git verify-commit failed: {text}");
    assert!(text.contains("Good \"git\" signature"), "{text}");
}

#[test]
fn ssh_ed25519_with_passphrase() {
    ssh_signing("ed25519", None, "s3cret");
}

#[test]
fn ssh_ecdsa() {
    ssh_signing("ecdsa", Some("256"), "");
}

#[test]
fn ssh_rsa() {
    ssh_signing("rsa", Some("3072"), "");
}

#[test]
fn ssh_signing_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pw", "-f"])
        .arg(&key));
    let data = BTreeMap::from([("identity".to_string(), std::fs::read(&key).unwrap())]);
    let e = Signer::from_secret("sig", "ssh", &data)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "can not use passphrase protected signing key without 'password' field present in secret sig"
    );
    let e = Signer::from_secret("sig", "ssh", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "signing key secret 'sig' does not contain an 'identity' key"
    );
    let small = dir.path().join("small");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
        .arg(&small));
    let data = BTreeMap::from([("identity".to_string(), std::fs::read(&small).unwrap())]);
    let e = Signer::from_secret("sig", "ssh", &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("below the minimum"), "{e}");
}
