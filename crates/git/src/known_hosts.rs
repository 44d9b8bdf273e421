//! Strict SSH host-key checking against the `known_hosts` of a Secret (OpenSSH format: plain and hashed
//! host patterns, wildcards, negation, `@revoked`; `@cert-authority` lines are skipped since libgit2 hands
//! over plain host keys only).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One usable `known_hosts` line.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    revoked: bool,
    patterns: String,
    key_type: String,
    blob: Vec<u8>,
}

/// Parsed `known_hosts` content.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct KnownHosts {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownHosts({} entries)", self.entries.len())
    }
}

/// The verdict on a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyCheck {
    /// The key is listed for the host.
    Trusted,
    /// The key is revoked, or the host is listed with other keys, or not at all.
    Rejected(String),
}

impl KnownHosts {
    /// Parse `known_hosts` text; an error names the first malformed line.
    pub fn parse(text: &[u8]) -> Result<KnownHosts, String> {
        let text = String::from_utf8_lossy(text);
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut revoked = false;
            if let Some(marker) = first.strip_prefix('@') {
                match marker {
                    "revoked" => revoked = true,
                    // Certificates are not handed to the callback; a CA line cannot vouch for a plain key.
                    "cert-authority" => continue,
                    other => return Err(format!("line {}: unknown marker '@{other}'", n + 1)),
                }
                first = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                return Err(format!(
                    "line {}: expected 'hosts key-type base64-key'",
                    n + 1
                ));
            };
            let blob = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|e| format!("line {}: invalid base64 key: {e}", n + 1))?;
            entries.push(Entry {
                revoked,
                patterns: first.to_string(),
                key_type: key_type.to_string(),
                blob,
            });
        }
        if entries.is_empty() {
            return Err("no host keys found".into());
        }
        Ok(KnownHosts { entries })
    }

    /// Check the server's raw host key (SSH wire format) for `host:port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> HostKeyCheck {
        let name = host_name(host, port);
        let mut listed = false;
        for e in &self.entries {
            if !matches_host(&e.patterns, &name) {
                continue;
            }
            if e.revoked {
                if e.blob == key {
                    return HostKeyCheck::Rejected(format!("host key for {name} is revoked"));
                }
                continue;
            }
            listed = true;
            if e.blob == key {
                return HostKeyCheck::Trusted;
            }
        }
        let key_type = key_type_of(key).unwrap_or("unknown");
        if listed {
            HostKeyCheck::Rejected(format!(
                "host key mismatch for {name}: the server's {key_type} key is not in known_hosts"
            ))
        } else {
            HostKeyCheck::Rejected(format!("no known_hosts entry for {name}"))
        }
    }
}

/// The algorithm name at the start of an SSH wire-format key (`string` length-prefixed), without trusting
/// libgit2's `hostkey_type`, which panics on types it does not know.
pub(crate) fn key_type_of(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(4..4 + len)?).ok()
}

/// How OpenSSH names a host in known_hosts: `host`, or `[host]:port` off port 22.
fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn matches_host(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let hit = wildcard(pattern, name);
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH pattern matching: `*` any run, `?` one character, case-insensitive.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (kind.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind.as_bytes());
        v.extend_from_slice(body);
        v
    }

    fn line(hosts: &str, kind: &str, body: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob(kind, body));
        format!("{hosts} {kind} {b64}\n")
    }

    #[test]
    fn plain_port_wildcard_and_revoked() {
        let text = format!(
            "# comment\n{}{}{}@cert-authority *.example.com ssh-ed25519 AAAA\n",
            line("[127.0.0.1]:2222,other", "ssh-ed25519", b"one"),
            line(
                "*.example.com,!bad.example.com",
                "ecdsa-sha2-nistp256",
                b"two"
            ),
            line("@revoked", "x", b"y").replacen("@revoked x", "@revoked github.com ssh-rsa", 1),
        );
        let kh = KnownHosts::parse(text.as_bytes()).unwrap();
        let k1 = blob("ssh-ed25519", b"one");
        assert_eq!(kh.check("127.0.0.1", 2222, &k1), HostKeyCheck::Trusted);
        assert!(
            matches!(kh.check("127.0.0.1", 22, &k1), HostKeyCheck::Rejected(m) if m.contains("no known_hosts entry"))
        );
        assert!(matches!(
            kh.check("127.0.0.1", 2222, &blob("ssh-ed25519", b"other")),
            HostKeyCheck::Rejected(m) if m.contains("mismatch")
        ));
        let k2 = blob("ecdsa-sha2-nistp256", b"two");
        assert_eq!(kh.check("git.example.com", 22, &k2), HostKeyCheck::Trusted);
        assert!(matches!(
            kh.check("bad.example.com", 22, &k2),
            HostKeyCheck::Rejected(_)
        ));
        assert_eq!(key_type_of(&k2), Some("ecdsa-sha2-nistp256"));
        assert_eq!(key_type_of(&[0, 0]), None);
    }

    #[test]
    fn hashed_entry() {
        // `ssh-keygen -H` form for "[127.0.0.1]:2222", computed here with the same HMAC construction.
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hosts = format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        let kh = KnownHosts::parse(line(&hosts, "ssh-ed25519", b"k").as_bytes()).unwrap();
        assert_eq!(
            kh.check("127.0.0.1", 2222, &blob("ssh-ed25519", b"k")),
            HostKeyCheck::Trusted
        );
        assert!(matches!(
            kh.check("127.0.0.2", 2222, &blob("ssh-ed25519", b"k")),
            HostKeyCheck::Rejected(_)
        ));
    }

    #[test]
    fn malformed() {
        assert!(KnownHosts::parse(b"host ssh-ed25519 !!!").is_err());
        assert!(KnownHosts::parse(b"host").is_err());
        assert!(KnownHosts::parse(b"# nothing").is_err());
    }
}
