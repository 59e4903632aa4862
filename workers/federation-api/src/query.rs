//! `/version`, the profile and alias queries and the room directory.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::directory::{DirectoryError, DirectoryPage, DirectoryQuery, list_public_rooms};
use ruma::OwnedRoomId;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::discovery::get_server_version;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::directory::{Filter, RoomNetwork};
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

/// An alias of this server to its room, with servers that can join others.
pub(crate) async fn directory(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_room_information::v1::Request,
) -> Result<get_room_information::v1::Response, MatrixError> {
    if request.room_alias.server_name().as_str() != api.config.server_name {
        return Err(MatrixError::invalid_param(
            "The alias is not an alias of this server",
        ));
    }
    let record = api
        .store
        .alias(request.room_alias.as_str())
        .await?
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    let room_id = OwnedRoomId::try_from(record.room_id)
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    // This server first: it holds the alias and, most likely, the room.
    let mut servers = vec![api.server_keys_owner().to_owned()];
    for member in api.store.room_memberships(room_id.as_str()).await? {
        if member.membership != "join" {
            continue;
        }
        if let Ok(user_id) = ruma::OwnedUserId::try_from(member.user_id)
            && !servers.iter().any(|known| known == user_id.server_name())
        {
            servers.push(user_id.server_name().to_owned());
        }
    }
    Ok(get_room_information::v1::Response::new(room_id, servers))
}

/// `GET /publicRooms`: this server's room directory, for another server's
/// client, when the operator allows it.
pub(crate) async fn public_rooms(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_public_rooms::v1::Request,
) -> Result<get_public_rooms::v1::Response, MatrixError> {
    let since = request.since.as_deref();
    let page = directory_page(
        &api,
        request.limit,
        since,
        &Filter::new(),
        &request.room_network,
    )
    .await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

/// `POST /publicRooms`: the same, searched.
pub(crate) async fn public_rooms_filtered(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_public_rooms_filtered::v1::Request,
) -> Result<get_public_rooms_filtered::v1::Response, MatrixError> {
    let since = request.since.as_deref();
    let page = directory_page(
        &api,
        request.limit,
        since,
        &request.filter,
        &request.room_network,
    )
    .await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

async fn directory_page(
    api: &FederationApi,
    limit: Option<ruma::UInt>,
    since: Option<&str>,
    filter: &Filter,
    network: &RoomNetwork,
) -> Result<DirectoryPage, MatrixError> {
    if !api.config.allow_public_rooms_over_federation {
        return Err(MatrixError::forbidden(
            "This server does not share its room directory with other servers",
        ));
    }
    let query = DirectoryQuery {
        limit,
        since,
        filter,
        network,
    };
    list_public_rooms(api.store.as_ref(), query)
        .await
        .map_err(|error| match error {
            DirectoryError::Invalid(why) => MatrixError::invalid_param(why.0),
            DirectoryError::Store(error) => error.into(),
        })
}
