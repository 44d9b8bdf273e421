//! Network operations on a remote through libgit2: callbacks for credentials, host-key and CA checks,
//! deadlines, proxy; fetch, ls-remote and push with errors that never carry secrets.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, FetchOptions, PushOptions, RemoteCallbacks,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::auth::{Credential, RemoteSpec};
use crate::error::{GitError, RemoteErrorKind};
use crate::known_hosts::{HostKeyCheck, key_type_of};
use crate::url::{RemoteUrl, strip_password};

/// The URL handed to libgit2: credentials removed (they go through callbacks), scp-like kept.
pub(crate) fn transport_url(spec: &RemoteSpec) -> String {
    strip_password(&spec.url)
}

/// Whether the remote is a local path or `file://` URL.
pub(crate) fn is_local(spec: &RemoteSpec) -> bool {
    RemoteUrl::parse(&spec.url).is_none_or(|u| u.scheme == "file")
}

/// Refuse combinations libgit2 cannot serve, naming them (the README lists the supported subset).
pub(crate) fn check_supported(spec: &RemoteSpec) -> Result<(), GitError> {
    let url = spec.redacted_url();
    let scheme = RemoteUrl::parse(&spec.url).map_or_else(|| "file".to_string(), |u| u.scheme);
    let unsupported = |reason: String| {
        Err(GitError::Unsupported {
            url: url.clone(),
            reason,
        })
    };
    if let Some(proxy) = &spec.proxy {
        if !matches!(scheme.as_str(), "http" | "https") {
            return unsupported(format!(
                "a proxy is supported for http and https remotes only, not for '{scheme}'"
            ));
        }
        if proxy.scheme != "http" && proxy.scheme != "https" {
            return unsupported(format!(
                "proxy scheme '{}' is not supported (HTTP CONNECT proxies only)",
                proxy.scheme
            ));
        }
    }
    if spec.auth.client_cert.is_some() {
        return unsupported(
            "TLS client certificates (tls.crt/tls.key) are not supported by the libgit2 HTTPS transport".into(),
        );
    }
    if spec.auth.ca.is_some() && scheme != "https" {
        // Harmless: source-controller ignores a CA on non-TLS transports too.
        tracing::debug!(url = %url, "CA certificate ignored for a non-https remote");
    }
    if scheme == "ssh" && !spec.ssh.kex_algos.is_empty() {
        return unsupported(
            "--ssh-kex-algos cannot be honoured: libgit2 does not expose libssh2's key-exchange preferences".into(),
        );
    }
    Ok(())
}

/// Per-operation context shared by the callbacks.
pub(crate) struct OpContext<'s> {
    spec: &'s RemoteSpec,
    deadline: Instant,
    timed_out: Cell<bool>,
    cred_attempts: Cell<u32>,
    cert_error: std::rc::Rc<std::cell::RefCell<Option<String>>>,
}

impl<'s> OpContext<'s> {
    /// Start an operation on `spec`, its deadline `spec.timeout` from now. Probes TCP reachability within the
    /// timeout first, since libgit2 itself would wait for the system's connect timeout.
    pub fn start(spec: &'s RemoteSpec, op: &'static str) -> Result<OpContext<'s>, GitError> {
        check_supported(spec)?;
        let ctx = OpContext {
            spec,
            deadline: Instant::now() + spec.timeout,
            timed_out: Cell::new(false),
            cred_attempts: Cell::new(0),
            cert_error: Default::default(),
        };
        if spec.proxy.is_none() {
            ctx.probe(op)?;
        }
        Ok(ctx)
    }

    fn probe(&self, op: &'static str) -> Result<(), GitError> {
        let Some(u) = RemoteUrl::parse(&self.spec.url) else {
            return Ok(());
        };
        if u.scheme == "file" {
            return Ok(());
        }
        let server = (u.host.clone(), u.port_or_default());
        if reached_recently(&server) {
            return Ok(());
        }
        let reached = self.connect(op, &u);
        let mut recent = recently_reached()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.retain(|_, at| at.elapsed() < PROBE_VALID);
        match &reached {
            Ok(()) => recent.insert(server, Instant::now()),
            Err(_) => recent.remove(&server),
        };
        reached
    }

    /// Connect to the remote's server once within the deadline (the connection is closed at once).
    fn connect(&self, op: &'static str, u: &RemoteUrl) -> Result<(), GitError> {
        let url = self.spec.redacted_url();
        let addrs: Vec<_> = match (u.host.as_str(), u.port_or_default()).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(GitError::Remote {
                    op,
                    url,
                    reference: None,
                    message: format!("cannot resolve host '{}': {e}", u.host),
                    kind: RemoteErrorKind::Network,
                });
            }
        };
        let mut last = None;
        for addr in addrs {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GitError::Timeout {
                    op,
                    url,
                    timeout: self.spec.timeout,
                });
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(GitError::Timeout {
                        op,
                        url,
                        timeout: self.spec.timeout,
                    });
                }
                Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        Err(GitError::Remote {
            op,
            url,
            reference: None,
            message: last.unwrap_or_else(|| format!("host '{}' has no address", u.host)),
            kind: RemoteErrorKind::Network,
        })
    }

    fn expired(&self) -> bool {
        if Instant::now() >= self.deadline {
            self.timed_out.set(true);
            true
        } else {
            false
        }
    }

    /// Callbacks for credentials, certificate checks and deadline enforcement.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let spec = self.spec;
        cb.credentials(move |_url, user_from_url, allowed| {
            let n = self.cred_attempts.get() + 1;
            self.cred_attempts.set(n);
            // libgit2 asks again after a rejection; a second offer of the same secret cannot succeed.
            if n > 2 {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Callback,
                    "authentication failed: the server rejected the credentials",
                ));
            }
            match &spec.auth.credential {
                Credential::Basic { username, password }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, password)
                }
                Credential::Ssh {
                    username,
                    identity,
                    passphrase,
                    ..
                } => {
                    let user = user_from_url.unwrap_or(username);
                    if allowed.contains(CredentialType::USERNAME) {
                        return Cred::username(user);
                    }
                    let key = std::str::from_utf8(identity).map_err(|_| {
                        git2::Error::new(
                            git2::ErrorCode::Auth,
                            git2::ErrorClass::Callback,
                            "the 'identity' key is not UTF-8 PEM/OpenSSH text",
                        )
                    })?;
                    Cred::ssh_key_from_memory(user, None, key, passphrase.as_deref())
                }
                _ => Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Callback,
                    "authentication required but no usable credentials were given",
                )),
            }
        });
        let cert_error = self.cert_error.clone();
        cb.certificate_check(move |cert, host| {
            let reject = |msg: String| {
                *cert_error.borrow_mut() = Some(msg.clone());
                Err(git2::Error::new(git2::ErrorCode::Certificate, git2::ErrorClass::Callback, msg))
            };
            if let Some(hostkey) = cert.as_hostkey() {
                let Credential::Ssh { known_hosts, .. } = &spec.auth.credential else {
                    return reject("SSH host key cannot be verified: no known_hosts given".into());
                };
                let Some(key) = hostkey.hostkey() else {
                    return reject("the SSH server did not present a raw host key".into());
                };
                let port = RemoteUrl::parse(&spec.url).map_or(22, |u| u.port_or_default());
                let key_type = key_type_of(key).unwrap_or("unknown");
                if !spec.ssh.hostkey_algos.is_empty() && !hostkey_type_allowed(key_type, &spec.ssh.hostkey_algos) {
                    return reject(format!(
                        "host key type {key_type} is not among the allowed host-key algorithms {:?}",
                        spec.ssh.hostkey_algos
                    ));
                }
                return match known_hosts.check(host, port, key) {
                    HostKeyCheck::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                    HostKeyCheck::Rejected(why) => reject(why),
                };
            }
            if let Some(x509) = cert.as_x509()
                && let Some(ca) = &spec.auth.ca
            {
                return match verify_with_ca(x509.data(), ca, host) {
                    Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                    Err(why) => reject(format!("TLS certificate of {host} rejected: {why}")),
                };
            }
            Ok(CertificateCheckStatus::CertificatePassthrough)
        });
        cb.transfer_progress(move |_| !self.expired());
        cb.sideband_progress(move |_| !self.expired());
        cb
    }

    fn proxy(&self) -> git2::ProxyOptions<'_> {
        let mut p = git2::ProxyOptions::new();
        if let Some(proxy) = &self.spec.proxy {
            p.url(&proxy.url);
        }
        p
    }

    fn headers(&self) -> Vec<String> {
        match &self.spec.auth.credential {
            Credential::Bearer(token) => vec![format!("Authorization: Bearer {token}")],
            _ => Vec::new(),
        }
    }

    /// Fetch options with callbacks, proxy and headers.
    pub fn fetch_options(&self) -> FetchOptions<'_> {
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks());
        fo.proxy_options(self.proxy());
        let headers = self.headers();
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        fo.custom_headers(&refs);
        fo.download_tags(git2::AutotagOption::None);
        fo.update_fetchhead(false);
        fo
    }

    /// Push options with callbacks, proxy, headers and git push options (`key=value` or `key`).
    pub fn push_options<'a>(
        &'a self,
        callbacks: RemoteCallbacks<'a>,
        push_options: &[String],
    ) -> PushOptions<'a> {
        let mut po = PushOptions::new();
        po.remote_callbacks(callbacks);
        po.proxy_options(self.proxy());
        let headers = self.headers();
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        po.custom_headers(&refs);
        let opts: Vec<&str> = push_options.iter().map(String::as_str).collect();
        if !opts.is_empty() {
            po.remote_push_options(&opts);
        }
        po
    }

    /// Translate a libgit2 error of `op` into a [`GitError`] naming the redacted URL and `reference`.
    pub fn error(&self, op: &'static str, reference: Option<&str>, e: &git2::Error) -> GitError {
        let url = self.spec.redacted_url();
        if self.timed_out.get()
            || (Instant::now() >= self.deadline && e.class() == git2::ErrorClass::Net)
        {
            return GitError::Timeout {
                op,
                url,
                timeout: self.spec.timeout,
            };
        }
        let cert = self.cert_error.borrow().clone();
        let kind = if cert.is_some()
            || e.code() == git2::ErrorCode::Certificate
            || e.message().contains("certificate")
        {
            RemoteErrorKind::Certificate
        } else if e.code() == git2::ErrorCode::Auth
            || e.message().contains("authentication")
            || e.message().contains("401")
            || e.message().contains("403")
        {
            RemoteErrorKind::Auth
        } else if matches!(
            e.class(),
            git2::ErrorClass::Net
                | git2::ErrorClass::Ssh
                | git2::ErrorClass::Ssl
                | git2::ErrorClass::Http
        ) {
            RemoteErrorKind::Network
        } else {
            RemoteErrorKind::Other
        };
        let message = cert.unwrap_or_else(|| scrub(e.message(), self.spec));
        GitError::Remote {
            op,
            url,
            reference: reference.map(str::to_string),
            message,
            kind,
        }
    }
}

/// How long a server stays known as reachable after a successful probe. The fetch and the push of one cycle,
/// and the cycles of other automations on the same server meanwhile, then connect once instead of each
/// time: each probe costs an SSH server a new process. A server that went away since fails fast in libgit2
/// (connection refused), and a silent one is caught by the watchdog of [`with_deadline`].
const PROBE_VALID: Duration = Duration::from_secs(10);

/// Servers (host, port) that accepted a probe, and when.
fn recently_reached() -> &'static Mutex<HashMap<(String, u16), Instant>> {
    static RECENT: OnceLock<Mutex<HashMap<(String, u16), Instant>>> = OnceLock::new();
    RECENT.get_or_init(Default::default)
}

/// Whether `server` accepted a probe less than [`PROBE_VALID`] ago.
fn reached_recently(server: &(String, u16)) -> bool {
    recently_reached()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(server)
        .is_some_and(|at| at.elapsed() < PROBE_VALID)
}

/// Whether a host key of `key_type` may be accepted under the `allowed` host-key algorithms.
fn hostkey_type_allowed(key_type: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        a == key_type
            || (key_type == "ssh-rsa" && matches!(a.as_str(), "rsa-sha2-256" | "rsa-sha2-512"))
    })
}

/// Remove anything secret the message might echo (URL userinfo, tokens).
fn scrub(message: &str, spec: &RemoteSpec) -> String {
    let mut m = message.replace(&spec.url, &spec.redacted_url());
    let mut secrets: Vec<String> = Vec::new();
    match &spec.auth.credential {
        Credential::Basic { password, .. } => secrets.push(password.clone()),
        Credential::Bearer(t) => secrets.push(t.clone()),
        Credential::Ssh {
            passphrase: Some(p),
            ..
        } => secrets.push(p.clone()),
        _ => {}
    }
    if let Some(pw) = RemoteUrl::parse(&spec.url).and_then(|u| u.password) {
        secrets.push(pw);
    }
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        m = m.replace(s.as_str(), "***");
    }
    m
}

/// Verify a server certificate (DER) against a PEM CA bundle for `host`: chain to an anchor, validity
/// period, server-auth usage and name.
fn verify_with_ca(leaf: &[u8], ca_pem: &[u8], host: &str) -> Result<(), String> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid CA certificate: {e}"))?;
    if cas.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    let anchors: Vec<_> = cas
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid CA certificate: {e}"))?;
    let leaf = CertificateDer::from(leaf.to_vec());
    let ee =
        webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("invalid certificate: {e}"))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("not signed by the given CA ({e})"))?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| format!("invalid server name '{host}': {e}"))?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|e| format!("certificate is not valid for '{host}' ({e})"))?;
    Ok(())
}

/// Time given to libgit2 past the deadline to abort by itself (its progress callbacks stop transfers at the
/// deadline) before the watchdog gives up on it.
const WATCHDOG_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Run the network operation `f` on a worker thread and wait at most the remote's timeout (plus a short
/// grace) for it. libgit2 cannot be interrupted while it waits on a silent server; the worker is then
/// abandoned (it ends when the operating system drops the connection) and the caller gets a timeout.
pub(crate) fn with_deadline<T: Send + 'static>(
    spec: &RemoteSpec,
    op: &'static str,
    f: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("git-{}", op.split(' ').next().unwrap_or("op")))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(GitError::io("starting a Git network worker"))?;
    match rx.recv_timeout(spec.timeout + WATCHDOG_GRACE) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(url = %spec.redacted_url(), op, "Git server silent past the timeout; abandoning the operation");
            Err(GitError::Timeout {
                op,
                url: spec.redacted_url(),
                timeout: spec.timeout,
            })
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(GitError::Local {
            context: format!("{op} '{}'", spec.redacted_url()),
            message: "the Git network worker stopped unexpectedly".into(),
        }),
    }
}
