//! Media IDs: the ones we make, and which ones we accept in a path.

use std::future::Future;

use myelin_http::MatrixError;
use myelin_store::{StoreError, StoreResult};
use rand::Rng;

const GENERATED_LENGTH: usize = 24;
const MAX_LENGTH: usize = 255;

pub(crate) fn generate() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(GENERATED_LENGTH)
        .map(char::from)
        .collect()
}

/// A new random ID colliding is next to impossible; a few tries settle it.
const ID_ATTEMPTS: usize = 3;

/// Records something under a new random ID with `insert`, drawing another
/// ID when the store reports the one drawn as taken; returns the ID used
/// and what `insert` answered.
pub(crate) async fn insert_with_new_id<F, Fut, T>(mut insert: F) -> Result<(String, T), MatrixError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    for _ in 0..ID_ATTEMPTS {
        let media_id = generate();
        match insert(media_id.clone()).await {
            Ok(answer) => return Ok((media_id, answer)),
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(MatrixError::internal("Could not find a free media ID"))
}

/// Only `A-Za-z0-9_-`, as the spec asks servers to enforce, so no ID can
/// smuggle a path or a traversal anywhere.
pub(crate) fn is_valid(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= MAX_LENGTH
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (generate(), generate());
        assert!(is_valid(&a), "{a}");
        assert_eq!(a.len(), GENERATED_LENGTH);
        assert_ne!(a, b);
    }

    #[test]
    fn only_safe_characters_pass() {
        assert!(is_valid("abc_DEF-123"));
        for bad in ["", "../etc", "a/b", "a.b", "a%2Fb", "é"] {
            assert!(!is_valid(bad), "{bad:?} passed");
        }
        assert!(!is_valid(&"a".repeat(MAX_LENGTH + 1)));
    }
}
