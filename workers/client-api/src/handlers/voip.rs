//! `GET /voip/turnServer`: TURN credentials from Synapse's settings.
//!
//! With `turn_shared_secret`, time-limited credentials of the TURN REST API
//! (username `<expiry seconds>:<user ID>`, password the base64 HMAC-SHA1 of
//! the username under the secret); else the fixed `turn_username` and
//! `turn_password`. Without `turn_uris` or credentials the answer is an
//! empty object, as Synapse gives: ruma's response has every field
//! required, so the handler answers JSON, built from ruma's type when there
//! is something to say.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use myelin_config::Config;
use myelin_http::{MatrixError, RequestContext};
use ruma::api::OutgoingResponseExt;
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{Map, Value};
use sha1::Sha1;

use crate::ClientApi;

pub(crate) async fn turn_server(
    api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_turn_server_info::v3::Request,
) -> Result<Value, MatrixError> {
    let user = context.user()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    match credentials(&api.config, &user.user_id, now) {
        Some(response) => {
            let encoded = response
                .try_into_http_response::<Vec<u8>>()
                .map_err(|error| MatrixError::internal(error.to_string()))?;
            serde_json::from_slice(encoded.body())
                .map_err(|error| MatrixError::internal(error.to_string()))
        }
        None => Ok(Value::Object(Map::new())),
    }
}

/// The answer for `user_id` at `now`; `None` when TURN is not configured.
fn credentials(
    config: &Config,
    user_id: &str,
    now: Duration,
) -> Option<get_turn_server_info::v3::Response> {
    if config.turn_uris.is_empty() {
        return None;
    }
    let lifetime = Duration::from_millis(config.turn_user_lifetime_ms());
    let (username, password) = match (
        config.turn_shared_secret.as_deref(),
        config.turn_username.as_deref(),
        config.turn_password.as_deref(),
    ) {
        (Some(secret), _, _) if !secret.is_empty() => {
            let expiry = now.saturating_add(lifetime).as_secs();
            let username = format!("{expiry}:{user_id}");
            (username.clone(), rest_api_password(secret, &username))
        }
        (_, Some(username), Some(password)) => (username.to_owned(), password.to_owned()),
        _ => return None,
    };
    Some(get_turn_server_info::v3::Response::new(
        username,
        password,
        config.turn_uris.clone(),
        Duration::from_secs(lifetime.as_secs()),
    ))
}

/// base64(HMAC-SHA1(secret, username)), the TURN REST API's password.
fn rest_api_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        serde_yaml_from(&format!("server_name: hs.test\n{yaml}"))
    }

    fn serde_yaml_from(yaml: &str) -> Config {
        myelin_config::load_from_str(yaml, "test", &[])
            .expect("config")
            .config
    }

    #[test]
    fn nothing_without_uris_or_credentials() {
        let now = Duration::from_secs(1_000);
        assert!(credentials(&config(""), "@a:hs.test", now).is_none());
        assert!(
            credentials(&config("turn_shared_secret: s\n"), "@a:hs.test", now).is_none(),
            "a secret without URIs"
        );
        assert!(
            credentials(&config("turn_uris: ['turn:t.test']\n"), "@a:hs.test", now).is_none(),
            "URIs without credentials"
        );
    }

    #[test]
    fn shared_secret_credentials_follow_the_rest_api() {
        let config = config(
            "turn_uris: ['turn:t.test?transport=udp']\nturn_shared_secret: s3cret\nturn_user_lifetime: 2h\n",
        );
        let answer =
            credentials(&config, "@a:hs.test", Duration::from_millis(1_000_500)).expect("answer");
        assert_eq!(answer.username, "8200:@a:hs.test");
        assert_eq!(answer.ttl, Duration::from_secs(7200));
        assert_eq!(answer.uris, vec!["turn:t.test?transport=udp".to_owned()]);
        // HMAC-SHA1("s3cret", "8200:@a:hs.test"), computed independently.
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(b"s3cret").expect("key");
        mac.update(b"8200:@a:hs.test");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(answer.password, expected);
        assert_eq!(answer.password.len(), 28, "20 bytes in base64");
        assert_ne!(
            rest_api_password("other", "8200:@a:hs.test"),
            answer.password
        );
    }

    #[test]
    fn rfc2202_vector() {
        // RFC 2202, test case 2: key "Jefe", "what do ya want for nothing?".
        let password = rest_api_password("Jefe", "what do ya want for nothing?");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(password)
            .expect("base64");
        assert_eq!(
            hex::encode(bytes),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn static_credentials_when_no_secret() {
        let config =
            config("turn_uris: ['turns:t.test']\nturn_username: fixed\nturn_password: pass\n");
        let answer = credentials(&config, "@a:hs.test", Duration::from_secs(5)).expect("answer");
        assert_eq!(
            (answer.username.as_str(), answer.password.as_str()),
            ("fixed", "pass")
        );
        assert_eq!(
            answer.ttl,
            Duration::from_secs(3600),
            "Synapse's 1h default"
        );
    }
}
