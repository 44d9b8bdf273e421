//! Bad input: unreachable remotes, auth failures, unknown references, wrong host keys, corrupt caches,
//! silent servers. Errors name the URL (credentials stripped) and the reference, never a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use git::{
    Cache, CheckoutOptions, CheckoutRef, GitAuth, GitError, PushSpec, RemoteErrorKind, RemoteSpec,
};
use testenv::{GitTransport, env};

fn cache() -> (tempfile::TempDir, Cache) {
    let d = tempfile::tempdir().unwrap();
    let c = Cache::new(d.path().into(), 0);
    (d, c)
}

#[test]
fn unreachable_remote() {
    let (_d, cache) = cache();
    // Port 1 on loopback: nothing listens.
    let remote = RemoteSpec::new("git://127.0.0.1:1/none.git");
    let e = checkout_main(&cache, &remote).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("git://127.0.0.1:1/none.git"), "{msg}");
    assert!(
        matches!(
            e,
            GitError::Remote {
                kind: RemoteErrorKind::Network,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_password_is_an_auth_error_without_the_password() {
    let (name, _) = seed("badauth");
    let url = env().git_url(GitTransport::HttpBasic, &name).unwrap();
    let (user, _) = env().credentials().unwrap();
    let secret = BTreeMap::from([
        ("username".to_string(), user.into_bytes()),
        ("password".to_string(), b"WRONG-PASSWORD-123".to_vec()),
    ]);
    let remote = RemoteSpec {
        auth: GitAuth::from_secret(&url, &secret).unwrap(),
        ..RemoteSpec::new(url.clone())
    };
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &remote).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("(ref 'main')"), "{msg}");
    assert!(
        !msg.contains("WRONG-PASSWORD-123") && !format!("{e:?}").contains("WRONG-PASSWORD-123")
    );
    assert!(
        matches!(
            e,
            GitError::Remote {
                kind: RemoteErrorKind::Auth,
                ..
            }
        ),
        "{e:?}"
    );

    // Credentials in the URL are stripped from messages too.
    let with_creds = url.replacen("://", "://someone:URL-SECRET-456@", 1);
    let remote = RemoteSpec {
        auth: GitAuth::from_secret(&with_creds, &BTreeMap::new()).unwrap(),
        ..RemoteSpec::new(with_creds)
    };
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(!e.to_string().contains("URL-SECRET-456"), "{e}");
    assert!(!format!("{e:?}").contains("URL-SECRET-456"), "{e:?}");
}

#[test]
fn missing_bearer_token_is_an_auth_error() {
    let (name, _) = seed("nobearer");
    let url = env().git_url(GitTransport::HttpBearer, &name).unwrap();
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &RemoteSpec::new(url)).unwrap_err();
    assert!(
        matches!(
            e,
            GitError::Remote {
                kind: RemoteErrorKind::Auth,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_branch_names_url_and_reference() {
    let (name, _) = seed("nobranch");
    let remote = remote(GitTransport::Daemon, &name);
    let (_d, cache) = cache();
    let e = cache
        .checkout(
            &remote,
            &CheckoutRef::Branch("nope".into()),
            &CheckoutOptions::default(),
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GitError::RefNotFound { .. }), "{e:?}");
    assert!(msg.contains(&remote.url) && msg.contains("'nope'"), "{msg}");
}

#[test]
fn wrong_known_hosts_entry_is_rejected() {
    let (name, _) = seed("badhost");
    let url = env().git_url(GitTransport::Ssh, &name).unwrap();
    let mut secret = secret_for(GitTransport::Ssh);
    // The right host pattern with a key that is not the server's.
    let known = String::from_utf8(secret["known_hosts"].clone()).unwrap();
    let host = known.split_whitespace().next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fields: Vec<&str> = other_pub.split_whitespace().collect();
    secret.insert(
        "known_hosts".into(),
        format!("{host} {} {}\n", fields[0], fields[1]).into_bytes(),
    );
    let remote = RemoteSpec {
        auth: GitAuth::from_secret(&url, &secret).unwrap(),
        ..RemoteSpec::new(url)
    };
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(
        matches!(
            e,
            GitError::Remote {
                kind: RemoteErrorKind::Certificate,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("known_hosts") || e.to_string().contains("host key"),
        "{e}"
    );
}

#[test]
fn https_without_the_ca_is_rejected() {
    let (name, _) = seed("noca");
    let url = env().git_url(GitTransport::Https, &name).unwrap();
    let mut secret = secret_for(GitTransport::Https);
    secret.remove("ca.crt");
    let remote = RemoteSpec {
        auth: GitAuth::from_secret(&url, &secret).unwrap(),
        ..RemoteSpec::new(url)
    };
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(
        matches!(
            e,
            GitError::Remote {
                kind: RemoteErrorKind::Certificate,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn corrupt_cache_is_repaired() {
    let (name, bare) = seed("corrupt");
    let remote = remote(GitTransport::Daemon, &name);
    let (_d, cache) = cache();
    drop(checkout_main(&cache, &remote).unwrap());
    // Wreck the mirror's object store and HEAD.
    let git_dir = cache.mirror_dir(&remote).join("repo/.git");
    std::fs::remove_dir_all(git_dir.join("objects")).unwrap();
    std::fs::write(git_dir.join("HEAD"), "garbage").unwrap();
    let mut co = checkout_main(&cache, &remote).unwrap();
    assert_eq!(co.head(), bare_git(&bare, &["rev-parse", "main"]));
    std::fs::write(co.workdir().join("deploy.yaml"), "image: app:7\n").unwrap();
    co.commit(&commit_spec("after repair")).unwrap().unwrap();
    co.push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    assert_eq!(show(&bare, "main", "deploy.yaml"), "image: app:7");
}

#[test]
fn silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let remote = RemoteSpec {
        timeout: Duration::from_secs(1),
        ..RemoteSpec::new(format!("git://127.0.0.1:{port}/r.git"))
    };
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(matches!(e, GitError::Timeout { .. }), "{e:?}");
}

#[test]
fn unsupported_combinations_are_named() {
    let mut remote = RemoteSpec::new("ssh://git@127.0.0.1:1/r.git");
    remote.proxy = Some(git::ProxyOptions::from_url("http://127.0.0.1:3128").unwrap());
    let (_d, cache) = cache();
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(
        e.to_string()
            .contains("proxy is supported for http and https remotes only"),
        "{e}"
    );
    let mut remote = RemoteSpec::new("https://127.0.0.1:1/r.git");
    remote.proxy = Some(git::ProxyOptions::from_url("socks5://127.0.0.1:1080").unwrap());
    let e = checkout_main(&cache, &remote).unwrap_err();
    assert!(e.to_string().contains("socks5"), "{e}");
}
