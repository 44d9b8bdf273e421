//! What to check out: the GitRepository `spec.ref` / ImageUpdateAutomation `spec.git.checkout.ref` forms.

use api::git_repository::{DEFAULT_BRANCH, GitCheckout, GitRepositoryRef};

/// A reference to check out, after Flux's precedence (commit > name > tag > semver > branch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutRef {
    /// The head of a branch.
    Branch(String),
    /// A tag (detached HEAD).
    Tag(String),
    /// The highest tag matching a Masterminds semver constraint (detached HEAD).
    SemVer(String),
    /// A full reference name such as `refs/heads/main`, `refs/tags/v1` or `refs/pull/1/head`.
    Name(String),
    /// A commit, optionally looked up on one branch only (detached HEAD).
    Commit {
        /// Full commit hash.
        commit: String,
        /// Branch holding it, if given.
        branch: Option<String>,
    },
}

impl CheckoutRef {
    /// The reference for an optional API ref: `None` is branch `master`, as Flux.
    pub fn from_api(reference: Option<&GitRepositoryRef>) -> CheckoutRef {
        match reference {
            Some(r) => CheckoutRef::from(r),
            None => CheckoutRef::Branch(DEFAULT_BRANCH.to_string()),
        }
    }

    /// The branch this reference checks out, if it is a branch (`Branch`, or `Name` of `refs/heads/…`).
    /// Flux treats only `Branch` as the push branch default; see [`Self::push_branch_default`].
    pub fn branch(&self) -> Option<&str> {
        match self {
            CheckoutRef::Branch(b) => Some(b),
            CheckoutRef::Name(n) => n.strip_prefix("refs/heads/"),
            _ => None,
        }
    }

    /// The push branch when the automation names none: the checkout `branch` only (Flux never infers it
    /// from `name`, `tag`, `semver` or `commit`).
    pub fn push_branch_default(&self) -> Option<&str> {
        match self {
            CheckoutRef::Branch(b) => Some(b),
            _ => None,
        }
    }

    /// The reference as written in messages: the branch, tag, semver expression, name or commit.
    pub fn describe(&self) -> String {
        match self {
            CheckoutRef::Branch(b) => b.clone(),
            CheckoutRef::Tag(t) => t.clone(),
            CheckoutRef::SemVer(s) => s.clone(),
            CheckoutRef::Name(n) => n.clone(),
            CheckoutRef::Commit { commit, .. } => commit.clone(),
        }
    }
}

impl From<&GitRepositoryRef> for CheckoutRef {
    fn from(r: &GitRepositoryRef) -> CheckoutRef {
        match r.checkout() {
            GitCheckout::Commit { commit, branch } => CheckoutRef::Commit {
                commit: commit.to_string(),
                branch: branch.map(str::to_string),
            },
            GitCheckout::RefName(n) => CheckoutRef::Name(n.to_string()),
            GitCheckout::Tag(t) => CheckoutRef::Tag(t.to_string()),
            GitCheckout::SemVer(s) => CheckoutRef::SemVer(s.to_string()),
            GitCheckout::Branch(b) => CheckoutRef::Branch(b.to_string()),
        }
    }
}

impl std::fmt::Display for CheckoutRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
