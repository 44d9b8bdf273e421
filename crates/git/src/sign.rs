//! Commit signing from the ImageUpdateAutomation signing Secret (`automation.md` §2.6): OpenPGP (`git.asc`,
//! `passphrase`, rpgp) or SSH (`identity`, `password`, SSHSIG with namespace `git` and SHA-512). The
//! signature goes into the commit's `gpgsig` header for both.

use std::collections::BTreeMap;
use std::sync::Arc;

use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};

use crate::error::GitError;

/// A commit signer. `Debug` never prints key material.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<SignerKind>,
}

enum SignerKind {
    OpenPgp {
        key: Box<SignedSecretKey>,
        subkey: Option<usize>,
        passphrase: Password,
    },
    Ssh(ssh_key::PrivateKey),
    /// RSA, signed through [`RsaSshSigner`].
    SshRsa(RsaSshSigner),
}

/// An RSA SSH signing key (PKCS#1 v1.5 with SHA-512, `rsa-sha2-512`, as ssh-keygen signs).
struct RsaSshSigner {
    key: rsa::RsaPrivateKey,
    public: ssh_key::public::KeyData,
}

impl signature::Signer<ssh_key::Signature> for RsaSshSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<ssh_key::Signature, signature::Error> {
        use signature::SignatureEncoding as _;
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(self.key.clone());
        let sig = signature::Signer::try_sign(&signer, msg)?;
        ssh_key::Signature::new(
            ssh_key::Algorithm::Rsa {
                hash: Some(ssh_key::HashAlg::Sha512),
            },
            sig.to_vec(),
        )
        .map_err(|_| signature::Error::new())
    }
}

impl From<&RsaSshSigner> for ssh_key::public::KeyData {
    fn from(s: &RsaSshSigner) -> Self {
        s.public.clone()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            SignerKind::OpenPgp { key, .. } => {
                write!(f, "Signer(openpgp {:?})", key.primary_key.legacy_key_id())
            }
            SignerKind::Ssh(k) => write!(f, "Signer(ssh {})", k.algorithm()),
            SignerKind::SshRsa(_) => write!(f, "Signer(ssh ssh-rsa)"),
        }
    }
}

fn missing(name: &str, key: &str) -> GitError {
    let article = if key.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    GitError::Signing(format!(
        "signing key secret '{name}' does not contain {article} '{key}' key"
    ))
}

impl Signer {
    /// Build a signer from the signing Secret `name` (for messages) of type `kind` (`gpg`, empty, or `ssh`).
    pub fn from_secret(
        name: &str,
        kind: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Signer, GitError> {
        match kind {
            "" | "gpg" => Self::openpgp(name, data),
            "ssh" => Self::ssh(name, data),
            other => Err(GitError::Signing(format!(
                "unknown signing key type \"{other}\""
            ))),
        }
    }

    fn openpgp(name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Signer, GitError> {
        let armored = data
            .get("git.asc")
            .ok_or_else(|| missing(name, "git.asc"))?;
        let read_err = |e: &dyn std::fmt::Display| {
            GitError::Signing(format!(
                "could not read signing key from secret '{name}': {e}"
            ))
        };
        let (items, _) =
            SignedSecretKey::from_armor_many(&armored[..]).map_err(|e| read_err(&e))?;
        let mut keys = Vec::new();
        for item in items {
            keys.push(item.map_err(|e| read_err(&e))?);
        }
        if keys.len() > 1 {
            return Err(GitError::Signing(format!(
                "multiple entities read from secret '{name}', could not determine which signing key to use"
            )));
        }
        let key = keys.pop().ok_or_else(|| read_err(&"no key found"))?;
        // The first subkey bound for signing, else the primary key (as gpg picks).
        let subkey = key
            .secret_subkeys
            .iter()
            .position(|sk| sk.signatures.iter().any(|s| s.key_flags().sign()));
        let encrypted = match subkey {
            Some(i) => key.secret_subkeys[i].key.secret_params().is_encrypted(),
            None => key.primary_key.secret_params().is_encrypted(),
        };
        let passphrase = data
            .get("passphrase")
            .map(|p| String::from_utf8_lossy(p).to_string());
        if encrypted && passphrase.is_none() {
            return Err(GitError::Signing(format!(
                "can not use passphrase protected signing key without 'passphrase' field present in secret {name}"
            )));
        }
        let passphrase = Password::from(passphrase.unwrap_or_default().as_str());
        let signer = Signer {
            inner: Arc::new(SignerKind::OpenPgp {
                key: Box::new(key),
                subkey,
                passphrase,
            }),
        };
        // Decrypt once now, so a wrong passphrase is reported with the secret rather than at commit time.
        signer.sign(b"probe").map_err(|e| {
            GitError::Signing(format!(
                "could not decrypt private key of the signing key present in secret {name}: {e}"
            ))
        })?;
        Ok(signer)
    }

    fn ssh(name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Signer, GitError> {
        let identity = data
            .get("identity")
            .ok_or_else(|| missing(name, "identity"))?;
        let key = ssh_key::PrivateKey::from_openssh(identity).map_err(|e| {
            GitError::Signing(format!(
                "could not parse SSH signing key from secret '{name}': {e}"
            ))
        })?;
        let key = if key.is_encrypted() {
            let pw = data.get("password").ok_or_else(|| {
                GitError::Signing(format!(
                    "can not use passphrase protected signing key without 'password' field present in secret {name}"
                ))
            })?;
            key.decrypt(pw).map_err(|e| {
                GitError::Signing(format!(
                    "could not parse SSH signing key from secret '{name}': {e}"
                ))
            })?
        } else {
            key
        };
        match key.key_data() {
            ssh_key::private::KeypairData::Ed25519(_) | ssh_key::private::KeypairData::Ecdsa(_) => {
            }
            ssh_key::private::KeypairData::Rsa(pair) => {
                let bits = pair.public.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
                if bits < 2048 {
                    return Err(GitError::Signing(format!(
                        "RSA key size {bits} bits is below the minimum of 2048 bits"
                    )));
                }
                let int = |m: &ssh_key::Mpint| {
                    rsa::BigUint::from_bytes_be(m.as_positive_bytes().unwrap_or_default())
                };
                let key = rsa::RsaPrivateKey::from_components(
                    int(&pair.public.n),
                    int(&pair.public.e),
                    int(&pair.private.d),
                    vec![int(&pair.private.p), int(&pair.private.q)],
                )
                .map_err(|e| {
                    GitError::Signing(format!(
                        "could not parse SSH signing key from secret '{name}': {e}"
                    ))
                })?;
                let public = ssh_key::public::KeyData::from(key_public(&key)?);
                return Ok(Signer {
                    inner: Arc::new(SignerKind::SshRsa(RsaSshSigner { key, public })),
                });
            }
            _ => {
                return Err(GitError::Signing(format!(
                    "unsupported SSH signing key algorithm: {}",
                    key.algorithm()
                )));
            }
        }
        Ok(Signer {
            inner: Arc::new(SignerKind::Ssh(key)),
        })
    }

    /// The armored signature of `content` (a commit without signature).
    pub fn sign(&self, content: &[u8]) -> Result<String, GitError> {
        match &*self.inner {
            SignerKind::OpenPgp {
                key,
                subkey,
                passphrase,
            } => {
                let rng = rand::thread_rng();
                let sig = match subkey {
                    Some(i) => DetachedSignature::sign_binary_data(
                        rng,
                        &key.secret_subkeys[*i].key,
                        passphrase,
                        HashAlgorithm::Sha256,
                        content,
                    ),
                    None => DetachedSignature::sign_binary_data(
                        rng,
                        &key.primary_key,
                        passphrase,
                        HashAlgorithm::Sha256,
                        content,
                    ),
                }
                .map_err(|e| GitError::Signing(format!("signing the commit failed: {e}")))?;
                sig.to_armored_string(ArmorOptions::default())
                    .map_err(|e| GitError::Signing(format!("armoring the signature failed: {e}")))
            }
            SignerKind::Ssh(key) => {
                let sig = key
                    .sign("git", ssh_key::HashAlg::Sha512, content)
                    .map_err(|e| GitError::Signing(format!("signing the commit failed: {e}")))?;
                sig.to_pem(ssh_key::LineEnding::LF)
                    .map_err(|e| GitError::Signing(format!("armoring the signature failed: {e}")))
            }
            SignerKind::SshRsa(signer) => {
                let sig = ssh_key::SshSig::sign(signer, "git", ssh_key::HashAlg::Sha512, content)
                    .map_err(|e| {
                    GitError::Signing(format!("signing the commit failed: {e}"))
                })?;
                sig.to_pem(ssh_key::LineEnding::LF)
                    .map_err(|e| GitError::Signing(format!("armoring the signature failed: {e}")))
            }
        }
    }
}

/// The SSH public key of an RSA private key.
fn key_public(key: &rsa::RsaPrivateKey) -> Result<ssh_key::public::RsaPublicKey, GitError> {
    use rsa::traits::PublicKeyParts as _;
    let mpint = |b: &rsa::BigUint| ssh_key::Mpint::from_positive_bytes(&b.to_bytes_be());
    match (mpint(key.e()), mpint(key.n())) {
        (Ok(e), Ok(n)) => Ok(ssh_key::public::RsaPublicKey { e, n }),
        _ => Err(GitError::Signing("invalid RSA public key".into())),
    }
}
