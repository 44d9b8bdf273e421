//! The expiry-aware token cache shared by registry credentials and the automation controller's Git
//! provider tokens: one refresh rule and one bound for every issued credential.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Longest refresh margin: a credential is replaced this long before it expires, or a quarter of its
/// lifetime before when that is shorter.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Bounds of the token cache (`--token-cache-max-size`, `--token-cache-max-duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most credentials kept; 0 disables caching.
    pub max_entries: usize,
    /// Longest time a credential is reused, whatever its own expiry; `None` for no bound.
    pub max_duration: Option<Duration>,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 1024,
            max_duration: None,
        }
    }
}

/// Credentials by key, each used until its refresh point (expiry minus the refresh margin, bounded
/// by [`CacheLimits::max_duration`]). Keys must name the identity a credential belongs to, so that
/// no object gets another's credential.
pub struct TokenCache<K, V> {
    limits: CacheLimits,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

struct Entry<V> {
    value: V,
    refresh_at: SystemTime,
}

impl<K: Eq + Hash + Clone, V: Clone> TokenCache<K, V> {
    /// An empty cache bounded by `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        TokenCache {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The credential under `key` if it is not yet due for refresh at `now`.
    pub fn get(&self, key: &K, now: SystemTime) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|e| now < e.refresh_at)
            .map(|e| e.value.clone())
    }

    /// Keeps `value`, which expires at `expires_at`, under `key`. When full, entries due for refresh
    /// go first, then the one due soonest.
    pub fn store(&self, key: K, value: V, expires_at: SystemTime, now: SystemTime) {
        let limits = self.limits;
        if limits.max_entries == 0 {
            return;
        }
        let lifetime = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
        // Refresh a quarter of the lifetime early, at most five minutes: a 12 h ECR token is replaced
        // 5 min before expiry, a 60 s test token after 45 s.
        let margin = (lifetime / 4).min(MAX_REFRESH_MARGIN);
        let mut refresh_at = expires_at.checked_sub(margin).unwrap_or(now);
        if let Some(max) = limits.max_duration {
            refresh_at = refresh_at.min(now + max);
        }
        let mut entries = self.lock();
        if entries.len() >= limits.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, e| now < e.refresh_at);
            if entries.len() >= limits.max_entries
                && let Some(k) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.refresh_at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&k);
            }
        }
        entries.insert(key, Entry { value, refresh_at });
    }

    /// Drops the entries for which `keep` is false (e.g. a credential a server refused).
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.lock().retain(|k, e| keep(k, &e.value));
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        // Only a cache: a panic elsewhere leaves it usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
