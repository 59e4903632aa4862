//! Password hashes: argon2id for new ones; bcrypt accepted from Synapse.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use myelin_http::MatrixError;

/// What checking a password found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    /// Valid, but stored in an old scheme: store this argon2id hash instead.
    ValidRehash(String),
    Invalid,
}

/// Each hash holds `MEMORY_KIB` of memory; a burst of registrations or
/// logins must not hold it many times over (the allocator keeps what it got).
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// OWASP's equivalent of argon2's default (19 MiB, 2 passes) with less
/// memory and more passes: the same work for an attacker, a smaller server.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(MEMORY_KIB, PASSES, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashing is slow on purpose; it runs on a blocking thread, two at a time.
pub(crate) async fn hash(password: String) -> Result<String, MatrixError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|error| MatrixError::internal(error.to_string()))?
}

pub fn hash_now(password: &str) -> Result<String, MatrixError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| MatrixError::internal(format!("cannot hash password: {error}")))
}

pub(crate) async fn verify(password: String, stored: String) -> Verdict {
    let Ok(_permit) = HASHING.acquire().await else {
        return Verdict::Invalid;
    };
    tokio::task::spawn_blocking(move || verify_now(&password, &stored))
        .await
        .unwrap_or(Verdict::Invalid)
}

fn verify_now(password: &str, stored: &str) -> Verdict {
    if stored.starts_with("$2") {
        // Synapse stores bcrypt; accept it once and move the user to argon2id.
        return match bcrypt::verify(password, stored) {
            Ok(true) => hash_now(password)
                .map(Verdict::ValidRehash)
                .unwrap_or(Verdict::Valid),
            _ => Verdict::Invalid,
        };
    }
    match PasswordHash::new(stored) {
        Ok(parsed)
            // The parameters come from the stored hash, whatever they were.
            if Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok() =>
        {
            Verdict::Valid
        }
        _ => Verdict::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let hash = hash_now("hunter2").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(verify_now("hunter2", &hash), Verdict::Valid);
        assert_eq!(verify_now("hunter3", &hash), Verdict::Invalid);
    }

    #[test]
    fn bcrypt_from_synapse_is_accepted_and_rehashed() {
        let synapse_hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
        match verify_now("s3cret", &synapse_hash) {
            Verdict::ValidRehash(new) => assert!(new.starts_with("$argon2id$")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(verify_now("wrong", &synapse_hash), Verdict::Invalid);
    }
}
