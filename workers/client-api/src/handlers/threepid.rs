//! `GET /account/3pid`: this server keeps no third-party identifiers, so
//! the list is empty. Adding, binding and removing them are not served
//! (404 `M_UNRECOGNIZED`), and `/capabilities` says `m.3pid_changes` is off.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use ruma::api::client::account::get_3pids;

use crate::ClientApi;

pub(crate) async fn list(
    _api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_3pids::v3::Request,
) -> Result<get_3pids::v3::Response, MatrixError> {
    context.user()?;
    Ok(get_3pids::v3::Response::new(Vec::new()))
}
