//! Keeping one user's `/sync` on one synchrotron replica: the user behind an
//! access token (cached briefly), and rendezvous hashing of users over the
//! replicas that are up.
//!
//! Rendezvous (highest-random-weight) hashing gives each `(user, replica)`
//! pair a weight and picks the replica with the highest one. Every gateway
//! replica computes the same choice from the same set of replicas, a user
//! only moves when their replica leaves, and a replica that joins takes
//! users from every other replica evenly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use myelin_store::DeviceStore;

/// How long a token's owner is remembered.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// The cache is emptied of expired entries (and, failing that, cleared)
/// when it reaches this size.
const MAX_CACHED_TOKENS: usize = 100_000;

/// The weight of `replica` for `key`: a stable hash (the same in every
/// process and build), so all gateways agree.
pub fn weight(key: &str, replica: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in key.bytes().chain([0xff]).chain(replica.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // splitmix64's finalizer spreads FNV's weak low bits over the word.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The candidate with the highest weight for `key`; `id` names a candidate
/// (its address). Ties, which need equal 64-bit hashes, go to the larger id.
pub fn rendezvous<'a, T>(key: &str, candidates: &'a [T], id: impl Fn(&T) -> &str) -> Option<&'a T> {
    candidates
        .iter()
        .max_by(|a, b| (weight(key, id(a)), id(a)).cmp(&(weight(key, id(b)), id(b))))
}

/// `Authorization: Bearer <token>` or the `access_token` query parameter.
pub fn access_token<B>(request: &http::Request<B>) -> Option<String> {
    if let Some(token) = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, token)| token.into_owned())
}

/// Access token -> user ID, for [`TOKEN_TTL`]. Tokens the store does not
/// know are not cached, so a token is routed by its user as soon as it works.
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The user the token belongs to; `None` for unknown tokens and when the
    /// store cannot answer (the request then goes to any replica, which
    /// gives the client the real error).
    pub async fn user_for(&self, store: &dyn DeviceStore, token: &str) -> Option<String> {
        if let Some(user_id) = self.cached(token) {
            return Some(user_id);
        }
        match store.token_owner(token).await {
            Ok(Some(owner)) => {
                self.insert(token, &owner.user_id);
                Some(owner.user_id)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot look up an access token for sync routing");
                None
            }
        }
    }

    fn cached(&self, token: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(user_id, _)| user_id.clone())
    }

    fn insert(&self, token: &str, user_id: &str) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_TOKENS {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= MAX_CACHED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), (user_id.to_owned(), now + self.ttl));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn replicas(count: usize) -> Vec<String> {
        (0..count).map(|n| format!("10.0.0.{n}:8008")).collect()
    }

    fn users() -> Vec<String> {
        (0..2000).map(|n| format!("@user{n}:example.org")).collect()
    }

    fn pick<'a>(user: &str, replicas: &'a [String]) -> &'a str {
        rendezvous(user, replicas, String::as_str).expect("a replica")
    }

    #[test]
    fn weights_are_stable() {
        // Fixed values: every gateway process and build must agree.
        assert_eq!(
            weight("@alice:hs", "10.0.0.1:8008"),
            weight("@alice:hs", "10.0.0.1:8008")
        );
        assert_eq!(weight("@alice:hs", "10.0.0.1:8008"), 0x76a2_434c_d138_f2da);
        assert_ne!(
            weight("@alice:hs", "10.0.0.1:8008"),
            weight("@alice:hs", "10.0.0.2:8008")
        );
        assert_ne!(
            weight("@alice:hs", "10.0.0.1:8008"),
            weight("@bob:hs", "10.0.0.1:8008")
        );
        // The separator keeps `("ab", "c")` apart from `("a", "bc")`.
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
    }

    #[test]
    fn the_choice_does_not_depend_on_order() {
        let forward = replicas(5);
        let mut backward = forward.clone();
        backward.reverse();
        for user in users() {
            assert_eq!(pick(&user, &forward), pick(&user, &backward));
        }
        assert!(rendezvous::<String>("@a:hs", &[], String::as_str).is_none());
    }

    #[test]
    fn users_spread_over_replicas() {
        let all = replicas(4);
        let mut counts = HashMap::new();
        for user in users() {
            *counts.entry(pick(&user, &all)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        for (replica, count) in counts {
            assert!(
                (350..=650).contains(&count),
                "{replica} got {count} of 2000"
            );
        }
    }

    #[test]
    fn removing_a_replica_moves_only_its_users() {
        let all = replicas(5);
        let leaving = all[2].clone();
        let remaining: Vec<String> = all.iter().filter(|r| **r != leaving).cloned().collect();
        let mut moved = 0;
        for user in users() {
            let before = pick(&user, &all);
            let after = pick(&user, &remaining);
            if before == leaving {
                moved += 1;
                assert_ne!(after, leaving);
            } else {
                assert_eq!(before, after, "{user} moved although its replica stayed");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn adding_a_replica_moves_users_only_to_it() {
        let before_set = replicas(4);
        let after_set = replicas(5);
        let joined = &after_set[4];
        for user in users() {
            let before = pick(&user, &before_set);
            let after = pick(&user, &after_set);
            assert!(after == before || after == joined);
        }
    }

    #[test]
    fn tokens_come_from_header_or_query() {
        let with_header = http::Request::builder()
            .uri("/_matrix/client/v3/sync")
            .header("authorization", "Bearer abc ")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(access_token(&with_header).as_deref(), Some("abc"));
        let with_query = http::Request::builder()
            .uri("/_matrix/client/v3/sync?since=s1&access_token=d%2Be")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(access_token(&with_query).as_deref(), Some("d+e"));
        let without = http::Request::builder()
            .uri("/_matrix/client/v3/sync?since=s1")
            .header("authorization", "Basic abc")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(access_token(&without), None);
    }

    #[test]
    fn the_cache_forgets_after_its_ttl() {
        let cache = TokenCache::new(Duration::from_millis(0));
        cache.insert("t", "@a:hs");
        assert_eq!(cache.cached("t"), None);
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.insert("t", "@a:hs");
        assert_eq!(cache.cached("t").as_deref(), Some("@a:hs"));
        assert_eq!(cache.len(), 1);
    }
}
