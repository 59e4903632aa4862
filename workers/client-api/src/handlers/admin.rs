//! `GET|POST /_synapse/admin/v1/register`: shared-secret registration, the
//! API Synapse's `register_new_matrix_user` script speaks.
//!
//! The nonce is signed rather than stored, so the `GET` and the `POST` may
//! reach different replicas; it expires after a minute. A nonce is good for
//! one attempt, right MAC or wrong: the store records the ones offered
//! until they expire, on every replica at once.

use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use myelin_http::{MatrixError, Router, json_response};
use myelin_store::{NewUser, NonceUse, StoreError};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::ClientApi;
use crate::passwords;
use crate::user_ids::{local_user_id, random_string};

const NONCE_LIFETIME_MS: i64 = 60_000;

/// Used nonces kept at most (each only for its minute): past that, a
/// registration waits until some expire rather than growing the table.
const MAX_LIVE_USED_NONCES: u32 = 10_000;

/// The nonce's signature is the first half of an HMAC-SHA256.
const NONCE_SIGNATURE_BYTES: usize = 16;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let nonce_api = Arc::clone(api);
    router.raw(
        Method::GET,
        "/_synapse/admin/v1/register",
        false,
        move |_, _, _| {
            let api = Arc::clone(&nonce_api);
            async move {
                let secret = api.shared_secret()?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"nonce": new_nonce(secret, myelin_types::now_millis())}),
                ))
            }
        },
    );
    let register_api = Arc::clone(api);
    router.raw(
        Method::POST,
        "/_synapse/admin/v1/register",
        false,
        move |_, request, _| {
            let api = Arc::clone(&register_api);
            async move { api.shared_secret_register(request.into_body()).await }
        },
    );
}

fn nonce_mac(secret: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

fn new_nonce(secret: &str, now: i64) -> String {
    let payload = format!("{now}.{}", random_string(16));
    let signature = nonce_mac(secret, &payload).finalize().into_bytes();
    format!(
        "{payload}.{}",
        hex::encode(&signature[..NONCE_SIGNATURE_BYTES])
    )
}

/// When a nonce this server signed was issued, if it has not expired by
/// `now`. The signature is compared in constant time.
fn nonce_issued_at(secret: &str, nonce: &str, now: i64) -> Option<i64> {
    let (payload, given) = nonce.rsplit_once('.')?;
    let given = hex::decode(given).ok()?;
    if given.len() != NONCE_SIGNATURE_BYTES {
        return None;
    }
    nonce_mac(secret, payload)
        .verify_truncated_left(&given)
        .ok()?;
    let issued: i64 = payload.split('.').next()?.parse().ok()?;
    (0..NONCE_LIFETIME_MS)
        .contains(&now.saturating_sub(issued))
        .then_some(issued)
}

/// What the `mac` of a shared-secret registration signs.
pub struct RegistrationMac<'a> {
    pub nonce: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub user_type: Option<&'a str>,
}

impl RegistrationMac<'_> {
    /// HMAC-SHA1 over `nonce NUL user NUL password NUL admin|notadmin
    /// [NUL user_type]`, hex: what the client sends.
    pub fn hex(&self, secret: &str) -> String {
        hex::encode(self.hmac(secret).finalize().into_bytes())
    }

    /// Whether `given` (hex, either case) is the MAC, compared in
    /// constant time.
    fn matches(&self, secret: &str, given: &str) -> bool {
        hex::decode(given).is_ok_and(|given| self.hmac(secret).verify_slice(&given).is_ok())
    }

    fn hmac(&self, secret: &str) -> Hmac<Sha1> {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(self.nonce.as_bytes());
        mac.update(b"\x00");
        mac.update(self.user.as_bytes());
        mac.update(b"\x00");
        mac.update(self.password.as_bytes());
        mac.update(b"\x00");
        mac.update(if self.admin { b"admin" } else { b"notadmin" });
        if let Some(user_type) = self.user_type {
            mac.update(b"\x00");
            mac.update(user_type.as_bytes());
        }
        mac
    }
}

fn text<'a>(body: &'a Value, key: &str) -> Result<&'a str, MatrixError> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param(format!("`{key}` is required")))
}

impl ClientApi {
    fn shared_secret(&self) -> Result<&str, MatrixError> {
        self.config
            .registration_shared_secret
            .as_deref()
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| {
                MatrixError::new(
                    StatusCode::BAD_REQUEST,
                    "M_UNKNOWN",
                    "Shared secret registration is not enabled",
                )
            })
    }

    /// Spends the nonce before the MAC is checked, so a wrong guess costs
    /// the nonce too.
    async fn use_nonce(&self, secret: &str, nonce: &str) -> Result<(), MatrixError> {
        let unrecognised =
            || MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "unrecognised nonce");
        let now = myelin_types::now_millis();
        let issued = nonce_issued_at(secret, nonce, now).ok_or_else(unrecognised)?;
        let expires_ts = issued + NONCE_LIFETIME_MS;
        match self
            .store
            .use_registration_nonce(nonce, expires_ts, now, MAX_LIVE_USED_NONCES)
            .await?
        {
            NonceUse::Fresh => Ok(()),
            NonceUse::AlreadyUsed => Err(unrecognised()),
            NonceUse::TooMany => Err(MatrixError::limit_exceeded(
                NONCE_LIFETIME_MS.unsigned_abs(),
            )),
        }
    }

    async fn shared_secret_register(
        &self,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, MatrixError> {
        let secret = self.shared_secret()?.to_owned();
        let body: Value = serde_json::from_slice(&body)
            .map_err(|error| MatrixError::not_json(error.to_string()))?;
        let nonce = text(&body, "nonce")?;
        let username = text(&body, "username")?;
        let password = text(&body, "password")?;
        let given_mac = text(&body, "mac")?;
        let admin = body.get("admin").and_then(Value::as_bool).unwrap_or(false);
        let user_type = body.get("user_type").and_then(Value::as_str);
        self.use_nonce(&secret, nonce).await?;
        let signed = RegistrationMac {
            nonce,
            user: username,
            password,
            admin,
            user_type,
        };
        if !signed.matches(&secret, given_mac) {
            return Err(MatrixError::forbidden("HMAC incorrect"));
        }
        let user_id = local_user_id(username, &self.server_name)?;
        let password_hash = passwords::hash(password.to_owned()).await?;
        let new_user = NewUser {
            user_id: user_id.clone(),
            password_hash: Some(password_hash),
            is_admin: admin,
            created_ts: myelin_types::now_millis(),
        };
        self.store
            .create_user(new_user)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => MatrixError::user_in_use(),
                other => other.into(),
            })?;
        if let Some(displayname) = body.get("displayname").and_then(Value::as_str) {
            let update = myelin_store::ProfileUpdate {
                displayname: Some(Some(displayname.to_owned())),
                avatar_url: None,
            };
            self.store.update_profile(&user_id, update).await?;
        }
        let session = self.start_session(&user_id, None, None).await?;
        Ok(json_response(StatusCode::OK, &session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let nonce = new_nonce("secret", 1_000_000);
        assert_eq!(
            nonce_issued_at("secret", &nonce, 1_000_500),
            Some(1_000_000)
        );
        assert_eq!(
            nonce_issued_at("secret", &nonce, 1_000_000 + NONCE_LIFETIME_MS),
            None
        );
        assert_eq!(nonce_issued_at("other", &nonce, 1_000_500), None);
        assert_eq!(nonce_issued_at("secret", "123.abc.def", 1_000_500), None);
        // A later issue time under the old signature is a forgery.
        let (_, rest) = nonce.split_once('.').expect("timestamp");
        let moved = format!("1000400.{rest}");
        assert_eq!(nonce_issued_at("secret", &moved, 1_000_500), None);
        // A shortened signature is not a prefix match.
        let shortened = &nonce[..nonce.len() - 2];
        assert_eq!(nonce_issued_at("secret", shortened, 1_000_500), None);
    }

    fn signed(admin: bool, user_type: Option<&str>) -> RegistrationMac<'_> {
        RegistrationMac {
            nonce: "n",
            user: "u",
            password: "p",
            admin,
            user_type,
        }
    }

    #[test]
    fn mac_matches_the_documented_construction() {
        // HMAC-SHA1("secret", "n\0u\0p\0admin"), computed independently.
        let mac = signed(true, None).hex("secret");
        assert_eq!(mac.len(), 40);
        assert_ne!(mac, signed(false, None).hex("secret"));
    }

    #[test]
    fn only_the_exact_registration_mac_matches() {
        let mac = signed(false, None).hex("secret");
        assert!(signed(false, None).matches("secret", &mac));
        assert!(signed(false, None).matches("secret", &mac.to_ascii_uppercase()));
        for wrong in [&mac[..38], "", "not hex", &format!("{mac}00")] {
            assert!(!signed(false, None).matches("secret", wrong), "{wrong:?}");
        }
        assert!(!signed(true, None).matches("secret", &mac));
        assert!(!signed(false, Some("bot")).matches("secret", &mac));
        assert!(!signed(false, None).matches("other", &mac));
    }
}
