//! `/version` and the profile query.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use ruma::api::federation::discovery::get_server_version;
use ruma::api::federation::query::get_profile_information;
use ruma::profile::ProfileFieldName;

use crate::FederationApi;

pub(crate) async fn version(
    _: Arc<FederationApi>,
    _: RequestContext,
    _: get_server_version::v1::Request,
) -> Result<get_server_version::v1::Response, MatrixError> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Myelin".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

pub(crate) async fn profile(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_profile_information::v1::Request,
) -> Result<get_profile_information::v1::Response, MatrixError> {
    if request.user_id.server_name().as_str() != api.config.server_name {
        return Err(MatrixError::invalid_param(
            "The user is not hosted on this server",
        ));
    }
    let user = api
        .store
        .user(request.user_id.as_str())
        .await?
        .filter(|user| !user.deactivated)
        .ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    let wanted =
        |field: ProfileFieldName| request.field.as_ref().is_none_or(|asked| *asked == field);
    let mut response = get_profile_information::v1::Response::new();
    if let Some(name) = user
        .displayname
        .filter(|_| wanted(ProfileFieldName::DisplayName))
    {
        response.set("displayname".to_owned(), name.into());
    }
    if let Some(url) = user
        .avatar_url
        .filter(|_| wanted(ProfileFieldName::AvatarUrl))
    {
        response.set("avatar_url".to_owned(), url.into());
    }
    Ok(response)
}
