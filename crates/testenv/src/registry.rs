//! A small OCI distribution client for tests: pushes images by tag (a tiny config blob and manifest per tag, and
//! multi-arch indexes) and lists tags, through any registry variant of the test environment.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_TYPE, HeaderMap, LINK, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde_json::json;

use crate::{Error, RegistryAuth, RegistryEndpoint, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer media type.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The one layer of every pushed image: an empty tar archive (two zero blocks).
const EMPTY_TAR: [u8; 1024] = [0; 1024];

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let d = digest(&SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A manifest fetched from the registry.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its `Content-Type`.
    pub media_type: String,
    /// Its digest, computed from the bytes.
    pub digest: String,
    /// The raw bytes.
    pub bytes: Vec<u8>,
}

/// One page of a tag listing.
#[derive(Debug, Clone)]
pub struct TagPage {
    /// The tags on this page.
    pub tags: Vec<String>,
    /// The URL of the next page (from the `Link` header), if any.
    pub next: Option<Url>,
}

/// A registry client with the endpoint's TLS settings and credentials; cheap to share between tasks.
#[derive(Debug)]
pub struct RegistryClient {
    base: Url,
    http: reqwest::Client,
    auth: RegistryAuth,
    /// Bearer tokens by repository (token auth).
    tokens: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    /// A client for `endpoint` using its credentials.
    pub fn new(endpoint: &RegistryEndpoint) -> Result<Self> {
        Self::with_auth(endpoint, endpoint.auth.clone())
    }

    /// A client for `endpoint` with other credentials (e.g. wrong ones, to test rejection).
    pub fn with_auth(endpoint: &RegistryEndpoint, auth: RegistryAuth) -> Result<Self> {
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(64);
        if let Some(ca) = &endpoint.ca_cert {
            let pem = read(ca)?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| http_err(format!("CA {}", ca.display()), e))?;
            builder = builder.tls_certs_only([cert]);
        }
        if let Some((cert, key)) = &endpoint.client_identity {
            let mut pem = read(cert)?;
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| http_err(format!("client identity {}", cert.display()), e))?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| http_err("building the HTTP client".into(), e))?;
        let base = Url::parse(&endpoint.base_url())
            .map_err(|e| Error::Protocol(format!("registry address {}: {e}", endpoint.host)))?;
        Ok(Self {
            base,
            http,
            auth,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| Error::Protocol(format!("bad registry path {path}: {e}")))
    }

    fn cached_token(&self, repo: &str) -> Option<String> {
        self.tokens.lock().ok().and_then(|t| t.get(repo).cloned())
    }

    /// Send a request built by `build` for repository `repo`, authenticating as configured; with token auth, a
    /// 401 challenge is answered once by fetching a token from its realm.
    async fn send(
        &self,
        repo: &str,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut retried = false;
        loop {
            let mut req = build(&self.http);
            match &self.auth {
                RegistryAuth::Anonymous => {}
                RegistryAuth::Basic { user, password } => {
                    req = req.basic_auth(user, Some(password))
                }
                RegistryAuth::Token { .. } | RegistryAuth::AnonymousToken => {
                    if let Some(t) = self.cached_token(repo) {
                        req = req.bearer_auth(t);
                    }
                }
            }
            let resp = req.send().await.map_err(|e| http_err(what.to_owned(), e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(resp);
            }
            let creds = match &self.auth {
                RegistryAuth::Token { user, password } => Some((user.as_str(), password.as_str())),
                RegistryAuth::AnonymousToken => None,
                RegistryAuth::Anonymous | RegistryAuth::Basic { .. } => return Ok(resp),
            };
            let token = self.fetch_token(repo, resp.headers(), creds).await?;
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(repo.to_owned(), token);
            }
            retried = true;
        }
    }

    /// Answer a Bearer challenge: ask its realm for a token covering pull and push on `repo`.
    async fn fetch_token(
        &self,
        repo: &str,
        headers: &HeaderMap,
        creds: Option<(&str, &str)>,
    ) -> Result<String> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol("401 without a WWW-Authenticate challenge".into()))?;
        let params = parse_bearer_challenge(challenge)
            .ok_or_else(|| Error::Protocol(format!("not a Bearer challenge: {challenge}")))?;
        let realm = params
            .get("realm")
            .ok_or_else(|| Error::Protocol(format!("challenge without realm: {challenge}")))?;
        let mut url =
            Url::parse(realm).map_err(|e| Error::Protocol(format!("bad realm {realm}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            let scope = if repo.is_empty() {
                params.get("scope").cloned().unwrap_or_default()
            } else {
                format!("repository:{repo}:pull,push")
            };
            if !scope.is_empty() {
                q.append_pair("scope", &scope);
            }
        }
        let what = format!("fetching a token from {realm}");
        let mut req = self.http.get(url);
        if let Some((user, password)) = creds {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.map_err(|e| http_err(what.clone(), e))?;
        let resp = check(resp, &what, &[StatusCode::OK]).await?;
        let body: serde_json::Value = resp.json().await.map_err(|e| http_err(what.clone(), e))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("{what}: no token in the answer")))
    }

    /// Check that the registry answers `/v2/` (authenticating if needed).
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        let resp = self.send("", "GET /v2/", |c| c.get(url.clone())).await?;
        check(resp, "GET /v2/", &[StatusCode::OK]).await.map(drop)
    }

    /// Upload a blob unless it exists; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let dgst = sha256_digest(data);
        let url = self.url(&format!("/v2/{repo}/blobs/{dgst}"))?;
        let resp = self
            .send(repo, "HEAD blob", |c| c.head(url.clone()))
            .await?;
        if resp.status() == StatusCode::OK {
            return Ok(dgst);
        }
        self.upload_blob(repo, data, &dgst).await?;
        Ok(dgst)
    }

    /// Upload a blob (POST a session, PUT the content with its digest).
    async fn upload_blob(&self, repo: &str, data: &[u8], dgst: &str) -> Result<()> {
        let what = format!("starting a blob upload to {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let resp = self.send(repo, &what, |c| c.post(url.clone())).await?;
        let resp = check(resp, &what, &[StatusCode::ACCEPTED]).await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| Error::Protocol(format!("{what}: no Location header")))?;
        let mut put = self
            .base
            .join(location)
            .map_err(|e| Error::Protocol(format!("{what}: bad Location {location}: {e}")))?;
        put.query_pairs_mut().append_pair("digest", dgst);
        let what = format!("uploading blob {dgst} to {repo}");
        let body = data.to_vec();
        let resp = self
            .send(repo, &what, |c| {
                c.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        check(resp, &what, &[StatusCode::CREATED]).await.map(drop)
    }

    /// PUT a manifest under `reference` (tag or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let what = format!("pushing manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let body = bytes.to_vec();
        let resp = self
            .send(repo, &what, |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        check(resp, &what, &[StatusCode::CREATED]).await?;
        Ok(sha256_digest(bytes))
    }

    /// DELETE the manifest `digest` (the registry runs with deletes enabled): every tag pointing at it
    /// disappears from the tag list.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let what = format!("deleting manifest {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"))?;
        let resp = self.send(repo, &what, |c| c.delete(url.clone())).await?;
        check(resp, &what, &[StatusCode::ACCEPTED]).await.map(drop)
    }

    /// Push a single-platform image tagged `tag`: the shared empty layer and config (if missing) and a manifest
    /// unique to the tag (an annotation names it). Returns the manifest digest. Use [`Self::push_tags`] for many.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Result<String> {
        let config = self.push_base(repo, "linux", "amd64").await?;
        self.push_manifest_for(repo, Some(tag), &config, tag).await
    }

    /// Upload the empty layer and the config of an `os`/`arch` image unless present; returns the config.
    async fn push_base(&self, repo: &str, os: &str, arch: &str) -> Result<Vec<u8>> {
        let layer = self.push_blob(repo, &EMPTY_TAR).await?;
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": os,
            "rootfs": { "type": "layers", "diff_ids": [layer] },
        }))
        .map_err(|e| Error::Protocol(format!("config JSON: {e}")))?;
        self.push_blob(repo, &config).await?;
        Ok(config)
    }

    /// PUT the manifest of an image over `config` and the empty layer, annotated with `label` (which makes its
    /// digest unique), under `tag` or, if `None`, its digest.
    async fn push_manifest_for(
        &self,
        repo: &str,
        tag: Option<&str>,
        config: &[u8],
        label: &str,
    ) -> Result<String> {
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": config.len() },
            "layers": [{
                "mediaType": OCI_LAYER_TAR, "digest": sha256_digest(&EMPTY_TAR), "size": EMPTY_TAR.len(),
            }],
            "annotations": { "testenv.image": label },
        }))
        .map_err(|e| Error::Protocol(format!("manifest JSON: {e}")))?;
        let reference = match tag {
            Some(t) => t.to_owned(),
            None => sha256_digest(&manifest),
        };
        self.push_manifest(repo, &reference, OCI_MANIFEST, &manifest)
            .await
    }

    /// Push one image per tag (one manifest PUT each, after the shared blobs) with up to `concurrency` requests in
    /// flight; returns `(tag, digest)` in tag order. Every tag gets a distinct digest.
    pub async fn push_tags<S: AsRef<str>>(
        &self,
        repo: &str,
        tags: &[S],
        concurrency: usize,
    ) -> Result<Vec<(String, String)>> {
        let config = self.push_base(repo, "linux", "amd64").await?;
        let config = &config;
        futures::stream::iter(tags.iter().map(|t| async move {
            let tag = t.as_ref();
            let d = self.push_manifest_for(repo, Some(tag), config, tag).await?;
            Ok::<_, Error>((tag.to_owned(), d))
        }))
        .buffered(concurrency.max(1))
        .try_collect()
        .await
    }

    /// Push a multi-arch image index tagged `tag` over one image per `(os, arch)`; returns the index digest.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, &str)],
    ) -> Result<String> {
        let mut manifests = Vec::new();
        for (os, arch) in platforms {
            let config = self.push_base(repo, os, arch).await?;
            let label = format!("{tag}-{os}-{arch}");
            let digest = self.push_manifest_for(repo, None, &config, &label).await?;
            let m = self.manifest(repo, &digest).await?;
            manifests.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": m.bytes.len(),
                "platform": { "os": os, "architecture": arch },
            }));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .map_err(|e| Error::Protocol(format!("index JSON: {e}")))?;
        self.push_manifest(repo, tag, OCI_INDEX, &index).await
    }

    /// GET a manifest by tag or digest (accepting OCI and Docker media types).
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let what = format!("fetching manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let accept = format!(
            "{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json"
        );
        let resp = self
            .send(repo, &what, |c| {
                c.get(url.clone()).header(reqwest::header::ACCEPT, &accept)
            })
            .await?;
        let resp = check(resp, &what, &[StatusCode::OK]).await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.bytes().await.map_err(|e| http_err(what, e))?.to_vec();
        Ok(Manifest {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        })
    }

    /// Fetch one page of `repo`'s tags: the first page (`next` `None`, with `n` as page size if given) or the
    /// page a previous answer's `Link` named.
    pub async fn tags_page(
        &self,
        repo: &str,
        n: Option<usize>,
        next: Option<&Url>,
    ) -> Result<TagPage> {
        let url = match next {
            Some(u) => u.clone(),
            None => {
                let mut u = self.url(&format!("/v2/{repo}/tags/list"))?;
                if let Some(n) = n {
                    u.query_pairs_mut().append_pair("n", &n.to_string());
                }
                u
            }
        };
        let what = format!("listing tags of {repo} ({url})");
        let resp = self
            .send(repo, &what, |c| c.request(Method::GET, url.clone()))
            .await?;
        let resp = check(resp, &what, &[StatusCode::OK]).await?;
        let next = match resp.headers().get(LINK).and_then(|v| v.to_str().ok()) {
            Some(link) => Some(
                parse_next_link(link)
                    .and_then(|l| self.base.join(&l).ok())
                    .ok_or_else(|| {
                        Error::Protocol(format!("{what}: unusable Link header {link}"))
                    })?,
            ),
            None => None,
        };
        let body: serde_json::Value = resp.json().await.map_err(|e| http_err(what.clone(), e))?;
        let tags = match body.get("tags") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::Null) | None => Vec::new(),
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "{what}: tags is not a list: {other}"
                )));
            }
        };
        Ok(TagPage { tags, next })
    }

    /// All tags of `repo`, following `Link` pagination when `n` is given; returns the tags and the page count.
    pub async fn list_tags(&self, repo: &str, n: Option<usize>) -> Result<(Vec<String>, usize)> {
        let mut page = self.tags_page(repo, n, None).await?;
        let mut tags = std::mem::take(&mut page.tags);
        let mut pages = 1;
        while let Some(next) = page.next.take() {
            page = self.tags_page(repo, n, Some(&next)).await?;
            tags.append(&mut page.tags);
            pages += 1;
        }
        Ok((tags, pages))
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        context: format!("reading {}", path.display()),
        source: e,
    })
}

fn http_err(context: String, source: reqwest::Error) -> Error {
    Error::Http { context, source }
}

/// Pass a response with an expected status; otherwise an error with the status and the start of the body.
async fn check(
    resp: reqwest::Response,
    what: &str,
    ok: &[StatusCode],
) -> Result<reqwest::Response> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let mut body = resp.text().await.unwrap_or_default();
    body.truncate(500);
    Err(Error::Status {
        context: what.to_owned(),
        status,
        body,
    })
}

/// Parameters of a `Bearer k="v",k2="v2"` challenge.
pub fn parse_bearer_challenge(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, a)| (v, a))
        };
        params.insert(key, value.to_owned());
        s = after.trim_start_matches([',', ' ']);
    }
    Some(params)
}

/// The target of a `Link: <url>; rel="next"` header.
pub fn parse_next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "rel=\"next\"" | "rel=next"
                )
            })
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let p = parse_bearer_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(parse_bearer_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn next_link() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(parse_next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
