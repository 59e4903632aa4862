//! The key server: this server's own key document, and this server as a
//! notary for other servers' documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_federation::key_document::{own_key_document, sign};
use myelin_http::{MatrixError, RequestContext};
use ruma::api::federation::discovery::{
    ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
};
use ruma::serde::Raw;
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use crate::FederationApi;

/// Servers one notary query may ask about.
const MAX_SERVERS_PER_QUERY: usize = 100;

fn raw(document: &Value) -> Result<Raw<ServerSigningKeys>, MatrixError> {
    serde_json::value::to_raw_value(document)
        .map(Raw::from_json)
        .map_err(|error| MatrixError::internal(format!("cannot encode a key document: {error}")))
}

pub(crate) async fn own_keys(
    api: Arc<FederationApi>,
    _: RequestContext,
    _: get_server_keys::v2::Request,
) -> Result<get_server_keys::v2::Response, MatrixError> {
    let document = own_key_document(&api.server_key, &api.config, myelin_types::now_millis());
    Ok(get_server_keys::v2::Response::new(raw(&document)?))
}

pub(crate) async fn notary_one(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_remote_server_keys::v2::Request,
) -> Result<get_remote_server_keys::v2::Response, MatrixError> {
    let minimum = i64::from(request.minimum_valid_until_ts.get());
    let server_keys = api.notarized(&request.server_name, minimum).await?;
    Ok(get_remote_server_keys::v2::Response::new(server_keys))
}

pub(crate) async fn notary_batch(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_remote_server_keys_batch::v2::Request,
) -> Result<get_remote_server_keys_batch::v2::Response, MatrixError> {
    if request.server_keys.len() > MAX_SERVERS_PER_QUERY {
        return Err(MatrixError::invalid_param(format!(
            "At most {MAX_SERVERS_PER_QUERY} servers per query"
        )));
    }
    let asked: BTreeMap<OwnedServerName, i64> = request
        .server_keys
        .iter()
        .map(|(server, criteria)| {
            let minimum = criteria
                .values()
                .filter_map(|criteria| criteria.minimum_valid_until_ts)
                .map(|ts| i64::from(ts.get()))
                .max()
                .unwrap_or(0);
            (server.clone(), minimum)
        })
        .collect();
    let answers = futures::future::join_all(
        asked
            .iter()
            .map(|(server, minimum)| api.notarized(server, *minimum)),
    )
    .await;
    let mut server_keys = Vec::new();
    for answer in answers {
        server_keys.extend(answer?);
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(server_keys))
}

impl FederationApi {
    /// The documents held (or fetched) for `server`, countersigned; none
    /// when it cannot be had.
    async fn notarized(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Result<Vec<Raw<ServerSigningKeys>>, MatrixError> {
        let now = myelin_types::now_millis();
        let document = if server.as_str() == self.config.server_name {
            Some(own_key_document(&self.server_key, &self.config, now))
        } else {
            self.server_keys
                .document_for_notary(server, minimum_valid_until_ts)
                .await
                .map(|document| sign(&self.server_key, document))
        };
        document.as_ref().map(raw).into_iter().collect()
    }
}
