//! User IDs of this server: validation and generation.

use myelin_http::MatrixError;
use rand::Rng;

/// `@localpart:server` from a localpart or a full ID of this server.
pub(crate) fn local_user_id(input: &str, server_name: &str) -> Result<String, MatrixError> {
    let localpart = match input.strip_prefix('@') {
        Some(full) => {
            let (localpart, server) = full
                .split_once(':')
                .ok_or_else(|| MatrixError::invalid_username("User ID has no server part"))?;
            if server != server_name {
                return Err(MatrixError::invalid_username(
                    "User ID is not of this server",
                ));
            }
            localpart
        }
        None => input,
    };
    let localpart = localpart.to_ascii_lowercase();
    validate_localpart(&localpart)?;
    let user_id = format!("@{localpart}:{server_name}");
    if user_id.len() > 255 {
        return Err(MatrixError::invalid_username(
            "User ID is longer than 255 characters",
        ));
    }
    Ok(user_id)
}

/// The spec's historical-safe set: `a-z 0-9 . _ = - / +`.
fn validate_localpart(localpart: &str) -> Result<(), MatrixError> {
    if localpart.is_empty() {
        return Err(MatrixError::invalid_username("User ID localpart is empty"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c);
    if !localpart.chars().all(allowed) {
        return Err(MatrixError::invalid_username(
            "User ID may only contain a-z, 0-9, and ._=-/+",
        ));
    }
    if localpart.starts_with('_') {
        return Err(MatrixError::invalid_username(
            "User ID may not begin with _",
        ));
    }
    Ok(())
}

pub(crate) fn random_string(length: usize) -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

pub(crate) fn new_device_id() -> String {
    random_string(10).to_ascii_uppercase()
}

pub(crate) fn new_access_token() -> String {
    format!("myl_{}", random_string(40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localparts_and_full_ids() {
        assert_eq!(local_user_id("Alice", "hs").expect("ok"), "@alice:hs");
        assert_eq!(local_user_id("@bob:hs", "hs").expect("ok"), "@bob:hs");
        assert_eq!(
            local_user_id("@bob:other", "hs")
                .expect_err("foreign")
                .errcode,
            "M_INVALID_USERNAME"
        );
        assert!(local_user_id("a b", "hs").is_err());
        assert!(local_user_id("_system", "hs").is_err());
        assert!(local_user_id("", "hs").is_err());
    }
}
