//! Checks the `X-Matrix` signature of each inbound federation request:
//! for this server, from a server it federates with, signed over method,
//! URI, origin, destination and body by a key of the origin valid now.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use myelin_config::Config;
use myelin_http::{MatrixError, ServerRequestVerifier};
use ruma::api::federation::authentication::XMatrix;
use ruma::serde::Base64;
use ruma::{OwnedServerName, ServerName};

use crate::keyring::KeyRing;

pub struct XMatrixVerifier {
    server_name: OwnedServerName,
    config: Arc<Config>,
    keys: Arc<KeyRing>,
}

impl XMatrixVerifier {
    pub fn new(server_name: &ServerName, config: Arc<Config>, keys: Arc<KeyRing>) -> Self {
        XMatrixVerifier {
            server_name: server_name.to_owned(),
            config,
            keys,
        }
    }

    async fn check(&self, request: &http::Request<Bytes>) -> Result<OwnedServerName, MatrixError> {
        let header = XMatrix::extract_from_http_headers(request.headers()).map_err(|error| {
            MatrixError::unauthorized(format!(
                "Missing or malformed X-Matrix authorization: {error}"
            ))
        })?;
        if header
            .destination
            .as_deref()
            .is_some_and(|destination| destination != self.server_name)
        {
            return Err(MatrixError::unauthorized(
                "The request is addressed to another server",
            ));
        }
        if header.origin == self.server_name {
            return Err(MatrixError::unauthorized(
                "Requests signed as this server are not accepted",
            ));
        }
        if !self.config.federates_with(header.origin.as_str()) {
            return Err(MatrixError::forbidden(format!(
                "Federation with {} is not allowed",
                header.origin
            )));
        }
        // A body that is not JSON cannot have been signed as the spec says.
        if !request.body().is_empty()
            && serde_json::from_slice::<serde_json::Value>(request.body()).is_err()
        {
            return Err(MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                "The request body is not JSON",
            ));
        }
        let key_id = header.key.as_str();
        let keys = self
            .keys
            .verify_keys(&header.origin, Some(key_id), myelin_types::now_millis())
            .await
            .map_err(|why| {
                MatrixError::unauthorized(format!("Cannot check the signature: {why}"))
            })?;
        let key_set: BTreeMap<String, Base64> = keys
            .into_iter()
            .filter_map(|(id, key)| Some((id, Base64::parse(key).ok()?)))
            .collect();
        let public_keys = BTreeMap::from([(header.origin.to_string(), key_set)]);
        header
            .verify_http_request(request, &self.server_name, &public_keys)
            .map_err(|error| {
                MatrixError::unauthorized(format!("Invalid X-Matrix signature: {error}"))
            })?;
        Ok(header.origin)
    }
}

impl ServerRequestVerifier for XMatrixVerifier {
    fn verify<'a>(
        &'a self,
        request: &'a http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<OwnedServerName, MatrixError>> {
        Box::pin(self.check(request))
    }
}
