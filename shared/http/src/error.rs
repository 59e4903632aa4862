//! The Matrix error body (`errcode`, `error`, right status), and the one
//! place where lower layers' errors become Matrix errors.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use myelin_bus::BusError;
use myelin_store::StoreError;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub status: StatusCode,
    /// Empty only for a user-interactive-auth challenge, which has none.
    pub errcode: Cow<'static, str>,
    pub error: String,
    /// Extra top-level fields (`retry_after_ms`, UIA `flows`, ...).
    pub extra: Map<String, Value>,
}

impl MatrixError {
    pub fn new(
        status: StatusCode,
        errcode: impl Into<Cow<'static, str>>,
        error: impl Into<String>,
    ) -> Self {
        MatrixError {
            status,
            errcode: errcode.into(),
            error: error.into(),
            extra: Map::new(),
        }
    }

    /// The 401 that starts (or continues) user-interactive authentication.
    pub fn auth_required(flows: Value, session: &str, failure: Option<MatrixError>) -> Self {
        let mut error =
            failure.unwrap_or_else(|| MatrixError::new(StatusCode::UNAUTHORIZED, "", ""));
        error.status = StatusCode::UNAUTHORIZED;
        error
            .with("flows", flows)
            .with("params", json!({}))
            .with("session", Value::String(session.to_owned()))
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn unrecognized(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", error)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "M_UNRECOGNIZED",
            "Method not allowed for this endpoint",
        )
    }
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", error)
    }
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", error)
    }
    /// A federation request without a valid `X-Matrix` signature.
    pub fn unauthorized(error: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", error)
    }
    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
            "Missing access token",
        )
    }
    pub fn unknown_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
            "Unknown or expired access token",
        )
        .with("soft_logout", Value::Bool(false))
    }
    pub fn not_json(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", error)
    }
    pub fn bad_json(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", error)
    }
    pub fn missing_param(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", error)
    }
    pub fn invalid_param(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", error)
    }
    pub fn too_large(error: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", error)
    }
    /// The client stopped sending its request body, or sends it too slowly.
    pub fn body_timeout(error: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "M_UNKNOWN", error)
    }
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
            "Too many requests",
        )
        .with("retry_after_ms", json!(retry_after_ms))
    }
    pub fn unavailable(error: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", error)
    }
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", error)
    }
    pub fn user_in_use() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "M_USER_IN_USE",
            "User ID already taken",
        )
    }
    pub fn invalid_username(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_USERNAME", error)
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        if !self.errcode.is_empty() {
            body.insert(
                "errcode".to_owned(),
                Value::String(self.errcode.to_string()),
            );
            body.insert("error".to_owned(), Value::String(self.error.clone()));
        }
        Value::Object(body)
    }

    pub fn into_response(self) -> http::Response<Bytes> {
        crate::json_response(self.status, &self.body())
    }
}

impl From<StoreError> for MatrixError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => MatrixError::not_found("Not found"),
            StoreError::Conflict(what) => MatrixError::new(StatusCode::CONFLICT, "M_UNKNOWN", what),
            StoreError::Unavailable(what) => {
                tracing::warn!(%what, "store unavailable");
                MatrixError::unavailable("The database is unavailable; try again later")
            }
            // Only room writers fence their writes, and they answer "send again".
            StoreError::Fenced => {
                MatrixError::unavailable("This room's writer is changing; try again")
            }
            StoreError::Corrupt(what) => {
                tracing::error!(%what, "corrupt data in the store");
                MatrixError::internal("Stored data is damaged")
            }
        }
    }
}

impl From<BusError> for MatrixError {
    fn from(error: BusError) -> Self {
        tracing::warn!(%error, "bus request failed");
        match error {
            BusError::Invalid(what) => MatrixError::internal(what),
            other => MatrixError::unavailable(format!(
                "A backend service is unavailable ({other}); try again later"
            )),
        }
    }
}

/// The one mapping of ruma's request parsing errors.
impl From<ruma::api::error::FromHttpRequestError> for MatrixError {
    fn from(error: ruma::api::error::FromHttpRequestError) -> Self {
        use ruma::api::error::{DeserializationError, FromHttpRequestError};
        match error {
            FromHttpRequestError::MethodMismatch { .. } => MatrixError::method_not_allowed(),
            FromHttpRequestError::Deserialization(DeserializationError::Json(json)) => {
                let text = json.to_string();
                if text.starts_with("missing field") {
                    MatrixError::missing_param(text)
                } else {
                    MatrixError::bad_json(text)
                }
            }
            FromHttpRequestError::Deserialization(DeserializationError::Query(query)) => {
                let text = query.to_string();
                if text.starts_with("missing field") {
                    MatrixError::missing_param(text)
                } else {
                    MatrixError::invalid_param(text)
                }
            }
            FromHttpRequestError::Deserialization(other) => {
                MatrixError::invalid_param(other.to_string())
            }
            other => MatrixError::bad_json(other.to_string()),
        }
    }
}
