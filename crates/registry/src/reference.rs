//! Image references: parsing and canonicalisation with go-containerregistry's (non-strict) rules, as
//! Flux's `ParseImageReference` applies them to `ImageRepository.spec.image`.

use std::fmt;
use std::net::Ipv4Addr;

/// Docker Hub's registry host, used when a reference names no registry.
pub const DEFAULT_REGISTRY: &str = "index.docker.io";
/// The alias users write for Docker Hub; rewritten to [`DEFAULT_REGISTRY`].
const DEFAULT_REGISTRY_ALIAS: &str = "docker.io";
/// Characters allowed in a repository path.
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
/// Characters allowed in a tag.
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
/// Characters allowed in a digest (`sha256:` plus lower-case hex).
const DIGEST_CHARS: &str = "sha256:0123456789abcdef";

/// Why an image reference was rejected. Display texts are Flux's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The image carries a URL scheme such as `https://`.
    #[error("image '{image}' should not include URL scheme; remove '{scheme}://'")]
    Scheme {
        /// The image as given.
        image: String,
        /// The scheme found before `://`.
        scheme: String,
    },
    /// The reference does not follow the registry/repository grammar.
    #[error("could not parse reference: {image}")]
    Parse {
        /// The image as given.
        image: String,
    },
    /// The image carries a tag or digest.
    #[error("image '{image}' should not include a tag; remove ':{tag}'")]
    Tag {
        /// The image as given.
        image: String,
        /// The text after the first `:` of the repository part.
        tag: String,
    },
    /// A tag given for a manifest lookup is not a valid tag.
    #[error("invalid tag '{tag}': tags are 1 to 128 characters of [A-Za-z0-9_.-]")]
    InvalidTag {
        /// The rejected tag.
        tag: String,
    },
}

/// URL scheme used to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TLS only.
    Https,
    /// Try https first and fall back to plain http (insecure, localhost, loopback and private registries),
    /// as go-containerregistry's ping does.
    HttpsThenHttp,
}

/// A parsed repository reference (registry + repository path), without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    insecure: bool,
}

impl ImageRef {
    /// Parses `ImageRepository.spec.image` exactly as Flux does: no scheme, no tag, no digest; Docker Hub
    /// defaults (`alpine` → `index.docker.io/library/alpine`), ports kept.
    pub fn parse(image: &str, insecure: bool) -> Result<ImageRef, ReferenceError> {
        let parts: Vec<&str> = image.split("://").collect();
        if parts.len() > 1 {
            return Err(ReferenceError::Scheme {
                image: image.to_string(),
                scheme: parts[0].to_string(),
            });
        }
        let parse_err = || ReferenceError::Parse {
            image: image.to_string(),
        };
        let repo = parse_any_reference(image, insecure).ok_or_else(parse_err)?;
        // Flux strips the registry text and rejects anything with a colon left, which catches tags and
        // digests (`@sha256:...`) alike.
        let rest = image.strip_prefix(repo.registry.as_str()).unwrap_or(image);
        let pieces: Vec<&str> = rest.split(':').collect();
        if pieces.len() > 1 {
            return Err(ReferenceError::Tag {
                image: image.to_string(),
                tag: pieces[1].to_string(),
            });
        }
        Ok(repo)
    }

    /// The registry host (with port when given), e.g. `index.docker.io` or `example.com:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path including Docker Hub's implicit `library/`, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Whether the reference was parsed with `insecure: true`.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The canonical name `<registry>/<repository>` stored in `status.canonicalImageName`.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// How to reach the registry: plain http is allowed (after trying https) for `insecure`, localhost,
    /// `*.local`/`*.localhost`, loopback and RFC 1918 addresses.
    pub fn scheme(&self) -> Scheme {
        if self.insecure || is_local_registry(&self.registry) {
            Scheme::HttpsThenHttp
        } else {
            Scheme::Https
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Checks a tag with go-containerregistry's rules: 1 to 128 of `[A-Za-z0-9_.-]`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    if check_element(tag, TAG_CHARS, 1, 128) {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag {
            tag: tag.to_string(),
        })
    }
}

/// `name.ParseReference`: a tag reference, else a digest reference; returns the repository part.
fn parse_any_reference(name: &str, insecure: bool) -> Option<ImageRef> {
    parse_tag_reference(name, insecure).or_else(|| parse_digest_reference(name, insecure))
}

/// `name.NewTag` (weak validation): an optional `:tag` after the last colon unless it contains `/`.
fn parse_tag_reference(name: &str, insecure: bool) -> Option<ImageRef> {
    let mut base = name;
    if let Some((before, tag)) = name.rsplit_once(':')
        && !tag.contains('/')
    {
        base = before;
        if !tag.is_empty() && !check_element(tag, TAG_CHARS, 1, 128) {
            return None;
        }
    }
    parse_repository(base, insecure)
}

/// `name.NewDigest`: `<tag reference>@sha256:<64 hex>`.
fn parse_digest_reference(name: &str, insecure: bool) -> Option<ImageRef> {
    let parts: Vec<&str> = name.split('@').collect();
    if parts.len() != 2 {
        return None;
    }
    if !check_element(parts[1], DIGEST_CHARS, 7 + 64, 7 + 64) || !parts[1].starts_with("sha256:") {
        return None;
    }
    parse_tag_reference(parts[0], insecure)
}

/// `name.NewRepository`: the first segment is the registry iff it contains `.` or `:`.
fn parse_repository(name: &str, insecure: bool) -> Option<ImageRef> {
    if name.is_empty() {
        return None;
    }
    let (mut registry, mut repo) = ("", name);
    if let Some((first, rest)) = name.split_once('/')
        && (first.contains('.') || first.contains(':'))
    {
        registry = first;
        repo = rest;
    }
    if !check_element(repo, REPOSITORY_CHARS, 2, 255) {
        return None;
    }
    if !is_uri_authority(registry) {
        return None;
    }
    let registry = match registry {
        "" | DEFAULT_REGISTRY_ALIAS => DEFAULT_REGISTRY,
        other => other,
    };
    let repository = if registry == DEFAULT_REGISTRY && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_string()
    };
    Some(ImageRef {
        registry: registry.to_string(),
        repository,
        insecure,
    })
}

/// go-containerregistry's `checkElement`: allowed characters and length bounds.
fn check_element(s: &str, allowed: &str, min: usize, max: usize) -> bool {
    s.len() >= min && s.len() <= max && s.chars().all(|c| allowed.contains(c))
}

/// Whether `//<name>` parses as a URL whose authority is exactly `name` (Go's RFC 3986 authority check):
/// no user info or path characters, an optional numeric port, IPv6 only in brackets.
fn is_uri_authority(name: &str) -> bool {
    if name.contains(['@', '/', '?', '#', ' ', '%', '\\']) {
        return false;
    }
    let valid_port = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = name.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, "")) => true,
            Some((_, after)) => after.strip_prefix(':').is_some_and(valid_port),
            None => false,
        };
    }
    match name.rsplit_once(':') {
        Some((host, port)) => !host.contains(':') && valid_port(port),
        None => true,
    }
}

/// go-containerregistry `Registry.Scheme()` heuristics for registries that default to plain http.
fn is_local_registry(registry: &str) -> bool {
    if registry.starts_with("localhost:") {
        return true;
    }
    if is_local_suffix(registry) {
        return true;
    }
    if registry.contains("127.0.0.1") || registry.contains("::1") {
        return true;
    }
    is_rfc1918(registry)
}

/// `.*\.local(?:host)?(?::\d{1,5})?$`
fn is_local_suffix(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if (1..=5).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    host.ends_with(".local") || host.ends_with(".localhost")
}

/// Whether the host part (before the first `:`) is an IPv4 address in 10/8, 172.16/12 or 192.168/16,
/// or (beyond go-containerregistry's literal `127.0.0.1`) anywhere in the loopback range 127/8.
fn is_rfc1918(registry: &str) -> bool {
    let host = registry.split(':').next().unwrap_or(registry);
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => ip.is_private() || ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("alpine", "index.docker.io/library/alpine"),
            ("docker.io/alpine", "index.docker.io/library/alpine"),
            ("docker.io/xy", "index.docker.io/library/xy"),
            ("fluxcd/flux", "index.docker.io/fluxcd/flux"),
            ("example.com:9999/foo/bar", "example.com:9999/foo/bar"),
            ("localhost:5000/foo", "localhost:5000/foo"),
            (
                "ghcr.io/stefanprodan/podinfo",
                "ghcr.io/stefanprodan/podinfo",
            ),
        ];
        for (input, want) in cases {
            let r = ImageRef::parse(input, false).unwrap();
            assert_eq!(r.canonical(), want, "{input}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "Example.com/Foo",
            "a",
            // One-character repositories are invalid in go-containerregistry, with or without a registry.
            "docker.io/x",
            "ghcr.io/stefanprodan/podinfo/foo:bar:zzz:qqq/aaa",
            "",
            "example.com/",
        ] {
            let err = ImageRef::parse(bad, false).unwrap_err();
            assert_eq!(err.to_string(), format!("could not parse reference: {bad}"));
        }
        let err = ImageRef::parse("https://example.com/foo", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image 'https://example.com/foo' should not include URL scheme; remove 'https://'"
        );
        let err = ImageRef::parse("example.com/foo/bar:baz", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image 'example.com/foo/bar:baz' should not include a tag; remove ':baz'"
        );
        let digest = format!("example.com/foo@sha256:{}", "a".repeat(64));
        let err = ImageRef::parse(&digest, false).unwrap_err();
        assert!(matches!(err, ReferenceError::Tag { .. }), "{err}");
    }

    #[test]
    fn schemes() {
        let https = ["example.com/foo", "ghcr.io/a/b", "8.8.8.8:5000/xy"];
        for s in https {
            assert_eq!(
                ImageRef::parse(s, false).unwrap().scheme(),
                Scheme::Https,
                "{s}"
            );
        }
        let http = [
            "localhost:5000/foo",
            "registry.localhost/foo",
            "registry.local:5000/foo",
            "127.0.0.1:5000/foo",
            "127.0.0.2:5000/foo",
            "10.1.2.3/foo",
            "172.16.0.1:443/foo",
            "192.168.1.1/foo",
        ];
        for s in http {
            assert_eq!(
                ImageRef::parse(s, false).unwrap().scheme(),
                Scheme::HttpsThenHttp,
                "{s}"
            );
        }
        assert_eq!(
            ImageRef::parse("example.com/foo", true).unwrap().scheme(),
            Scheme::HttpsThenHttp
        );
    }

    #[test]
    fn tags() {
        assert!(validate_tag("v1.2.3-rc_1").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
        assert!(validate_tag("a/b").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_canonical_is_stable(input in ".{0,80}", insecure: bool) {
            if let Ok(r) = ImageRef::parse(&input, insecure) {
                let again = ImageRef::parse(&r.canonical(), insecure).unwrap();
                proptest::prop_assert_eq!(again.canonical(), r.canonical());
            }
        }

        #[test]
        fn plausible_references_round_trip(
            host in "[a-z]{1,8}\\.[a-z]{2,3}(:[0-9]{1,5})?",
            repo in "[a-z0-9]{2,8}(/[a-z0-9_.-]{2,8}){0,3}",
        ) {
            let image = format!("{host}/{repo}");
            let r = ImageRef::parse(&image, false).unwrap();
            proptest::prop_assert_eq!(r.canonical(), image);
        }
    }
}
