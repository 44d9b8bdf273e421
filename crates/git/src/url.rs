//! Minimal parsing of Git remote URLs: scheme, user, host and port, and a credential-free rendering for
//! messages and cache keys.

/// The parts of a remote URL this engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteUrl {
    /// Lower-case scheme: `file`, `git`, `http`, `https` or `ssh` (scp-like `user@host:path` is `ssh`).
    pub scheme: String,
    /// User name from the userinfo, if any.
    pub user: Option<String>,
    /// Password from the userinfo, if any.
    pub password: Option<String>,
    /// Host name or IP (without brackets).
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
}

impl RemoteUrl {
    /// Parse `url`; `None` when it has no recognisable host (e.g. a plain path).
    pub fn parse(url: &str) -> Option<RemoteUrl> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => {
                // scp-like syntax: [user@]host:path
                let (authority, _) = url.split_once(':')?;
                if authority.contains('/') {
                    return None;
                }
                let (user, host) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_string()), h),
                    None => (None, authority),
                };
                return Some(RemoteUrl {
                    scheme: "ssh".into(),
                    user,
                    password: None,
                    host: host.to_string(),
                    port: None,
                });
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (Some(percent_decode(user)), Some(percent_decode(pw))),
                None => (Some(percent_decode(u)), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
            let (h, after) = stripped.split_once(']')?;
            (
                h.to_string(),
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            )
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()),
                None => (hostport.to_string(), None),
            }
        };
        Some(RemoteUrl {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
            host,
            port,
        })
    }

    /// The port in use: the explicit one or the scheme's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.scheme.as_str() {
            "ssh" => 22,
            "git" => 9418,
            "http" => 80,
            _ => 443,
        })
    }
}

/// `url` with any userinfo password (or token) removed, for messages and logs. A user name alone stays
/// (`ssh://git@host/...`), since it is not a secret.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

/// `url` without any userinfo at all: the identity of the remote for cache keys and the URL handed to
/// libgit2 (credentials go through callbacks instead).
pub(crate) fn strip_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            // HTTP user names come from the secret or the callbacks; only SSH needs one in the URL.
            if scheme.eq_ignore_ascii_case("ssh") && !user.is_empty() {
                format!("{scheme}://{user}@{host}{path}")
            } else {
                format!("{scheme}://{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let u = RemoteUrl::parse("https://bob:s%40cret@example.com:8443/org/repo.git").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(8443));
        assert_eq!(
            redact_url("https://bob:s%40cret@example.com:8443/org/repo.git"),
            "https://bob:***@example.com:8443/org/repo.git"
        );
        assert_eq!(
            strip_password("https://bob:pw@example.com/r"),
            "https://example.com/r"
        );
        assert_eq!(
            strip_password("ssh://git@example.com:22/r"),
            "ssh://git@example.com:22/r"
        );
        let s = RemoteUrl::parse("git@github.com:org/repo").unwrap();
        assert_eq!((s.scheme.as_str(), s.host.as_str()), ("ssh", "github.com"));
        let v6 = RemoteUrl::parse("ssh://[::1]:2222/r").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(2222)));
        assert_eq!(redact_url("file:///tmp/x"), "file:///tmp/x");
    }
}
