//! Shared helpers of the integration tests: remotes for every transport of the test environment, seeded
//! repositories, and reading a bare repository with the git CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: failing loudly is the point
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git::{
    Cache, Checkout, CheckoutOptions, CheckoutRef, CommitSpec, GitAuth, GitError, RemoteSpec,
};
use testenv::{GitTransport, SshKeyType, env, git::git, unique_name};

/// A fresh seeded repository `(name, bare path)` with `deploy.yaml` and `README`.
pub fn seed(prefix: &str) -> (String, PathBuf) {
    let name = unique_name(prefix);
    let bare = env()
        .seed_repo(
            &name,
            &[("deploy.yaml", "image: app:1.0.0\n"), ("README", "hello\n")],
        )
        .unwrap();
    (name, bare)
}

/// The secret data a GitRepository would reference for `transport`.
pub fn secret_for(transport: GitTransport) -> BTreeMap<String, Vec<u8>> {
    let e = env();
    let mut d = BTreeMap::new();
    let mut put = |k: &str, v: Vec<u8>| {
        d.insert(k.to_string(), v);
    };
    match transport {
        GitTransport::HttpBasic => {
            let (u, p) = e.credentials().unwrap();
            put("username", u.into_bytes());
            put("password", p.into_bytes());
        }
        GitTransport::Https => {
            let (u, p) = e.credentials().unwrap();
            put("username", u.into_bytes());
            put("password", p.into_bytes());
            put("ca.crt", std::fs::read(e.ca_cert().unwrap()).unwrap());
        }
        GitTransport::HttpBearer => put(
            "bearerToken",
            e.git_bearer_token().unwrap().as_bytes().to_vec(),
        ),
        GitTransport::Ssh => {
            put(
                "identity",
                std::fs::read(e.ssh_key(SshKeyType::Ed25519).unwrap()).unwrap(),
            );
            put(
                "known_hosts",
                std::fs::read(e.ssh_known_hosts().unwrap()).unwrap(),
            );
        }
        GitTransport::File | GitTransport::Daemon | GitTransport::Http => {}
    }
    d
}

/// A remote for repository `name` over `transport`, with the secret the test environment needs.
pub fn remote(transport: GitTransport, name: &str) -> RemoteSpec {
    let url = env().git_url(transport, name).unwrap();
    let auth = GitAuth::from_secret(&url, &secret_for(transport)).unwrap();
    RemoteSpec {
        auth,
        ..RemoteSpec::new(url)
    }
}

/// A commit spec with a fixed author.
pub fn commit_spec(message: &str) -> CommitSpec {
    CommitSpec {
        author_name: "Flux Bot".into(),
        author_email: "flux@example.com".into(),
        message: message.into(),
        signer: None,
    }
}

/// `git` in a bare repository.
pub fn bare_git(bare: &Path, args: &[&str]) -> String {
    git(bare, args).unwrap().trim().to_string()
}

/// The content of `path` at `rev` in the bare repository.
pub fn show(bare: &Path, rev: &str, path: &str) -> String {
    bare_git(bare, &["show", &format!("{rev}:{path}")])
}

/// Check out `main` of `remote` with default options.
pub fn checkout_main(cache: &Cache, remote: &RemoteSpec) -> Result<Checkout, GitError> {
    cache.checkout(
        remote,
        &CheckoutRef::Branch("main".into()),
        &CheckoutOptions::default(),
    )
}

/// A redo step that cannot be reached (for pushes that must not race).
pub fn no_redo(_: &mut Checkout) -> Result<(), GitError> {
    panic!("unexpected push retry")
}
