//! Checks made before ruma parses a request body, for the request types
//! whose parser panics on some bodies instead of refusing them: such a body
//! gets its Matrix error here and never reaches the parser.
//!
//! `tests/malformed_input.rs` of the `myelin` crate sends bodies without
//! their type fields to every route and fails on any panic; a new entry
//! belongs here when it finds one.

use std::any::TypeId;

use ruma::api::client::session::login;
use serde_json::Value;

use crate::MatrixError;

/// Top-level fields a request type's parser reads without checking that
/// they are there.
fn fields_the_parser_assumes(request: TypeId) -> &'static [&'static str] {
    // `LoginInfo` indexes the body's map with `["type"]`, which panics
    // when the key is absent.
    if request == TypeId::of::<login::v3::Request>() {
        &["type"]
    } else {
        &[]
    }
}

/// `M_MISSING_PARAM` when the body of an `R` lacks a field its parser
/// assumes. Bodies that are not JSON objects pass: the parser refuses
/// those itself, without panicking.
pub(crate) fn check_body<R: 'static>(body: &[u8]) -> Result<(), MatrixError> {
    let required = fields_the_parser_assumes(TypeId::of::<R>());
    if required.is_empty() {
        return Ok(());
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    match required.iter().find(|field| !object.contains_key(**field)) {
        Some(field) => Err(MatrixError::missing_param(format!(
            "Missing params: ['{field}']"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::IncomingRequestExt;
    use ruma::api::client::session::logout;

    fn login_request(body: &str) -> http::Request<&[u8]> {
        http::Request::builder()
            .method(http::Method::POST)
            .uri("/_matrix/client/v3/login")
            .body(body.as_bytes())
            .expect("request")
    }

    #[test]
    fn a_login_without_type_is_missing_param() {
        for body in [
            r#"{}"#,
            r#"{"identifier": {"type": "m.id.user", "user": "a"}, "password": "p"}"#,
        ] {
            let error = check_body::<login::v3::Request>(body.as_bytes()).expect_err(body);
            assert_eq!(error.body()["errcode"], "M_MISSING_PARAM", "{body}");
        }
    }

    #[test]
    fn what_passes_the_guard_does_not_panic_the_parser() {
        for body in [
            r#"{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "a"}, "password": "p"}"#,
            r#"{"type": null}"#,
            r#"{"type": 7}"#,
            r#"{"type": "org.example.custom"}"#,
            r#"[]"#,
            r#""text""#,
        ] {
            check_body::<login::v3::Request>(body.as_bytes()).expect(body);
            let parsed = std::panic::catch_unwind(|| {
                login::v3::Request::try_from_http_request(login_request(body), &[] as &[&str])
                    .is_ok()
            });
            assert!(parsed.is_ok(), "the parser panicked on {body}");
        }
    }

    #[test]
    fn other_request_types_are_not_checked() {
        assert!(check_body::<logout::v3::Request>(b"{}").is_ok());
    }
}
