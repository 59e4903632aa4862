//! The room directory: `GET|POST /publicRooms` and
//! `GET|PUT /directory/list/room/{roomId}`.

use std::sync::Arc;

use myelin_federation::FederationError;
use myelin_http::{MatrixError, RequestContext};
use myelin_room::directory::{self, DirectoryError, DirectoryPage, DirectoryQuery};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::api::federation::directory::get_public_rooms_filtered as federation_public_rooms;
use ruma::directory::{Filter, RoomNetwork};
use ruma::{ServerName, UInt};

use crate::ClientApi;
use crate::access::ReadAccess;

pub(crate) async fn get_public_rooms(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_public_rooms::v3::Request,
) -> Result<get_public_rooms::v3::Response, MatrixError> {
    let elsewhere = request
        .server
        .as_deref()
        .is_some_and(|server| server.as_str() != api.server_name);
    // Asking another server signs a request as this one: only for users.
    if !api.config.allow_public_rooms_without_auth || elsewhere {
        context.user()?;
    }
    let page = api
        .public_rooms(Query {
            server: request.server.as_deref(),
            limit: request.limit,
            since: request.since.as_deref(),
            filter: &Filter::new(),
            network: &RoomNetwork::Matrix,
        })
        .await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

pub(crate) async fn search_public_rooms(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_public_rooms_filtered::v3::Request,
) -> Result<get_public_rooms_filtered::v3::Response, MatrixError> {
    context.user()?;
    let page = api
        .public_rooms(Query {
            server: request.server.as_deref(),
            limit: request.limit,
            since: request.since.as_deref(),
            filter: &request.filter,
            network: &request.room_network,
        })
        .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.total_room_count_estimate = page.total;
    Ok(response)
}

pub(crate) async fn get_visibility(
    api: Arc<ClientApi>,
    _context: RequestContext,
    request: get_room_visibility::v3::Request,
) -> Result<get_room_visibility::v3::Response, MatrixError> {
    let room_id = request.room_id.as_str();
    api.require_room(room_id).await?;
    let visibility = if api.store.room_published(room_id).await? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(get_room_visibility::v3::Response::new(visibility))
}

pub(crate) async fn set_visibility(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_room_visibility::v3::Request,
) -> Result<set_room_visibility::v3::Response, MatrixError> {
    let user = context.user()?;
    let room_id = request.room_id.as_str();
    let published = match request.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ));
        }
    };
    api.require_room(room_id).await?;
    // As Synapse: server admins, or members who may set the canonical alias.
    if !user.is_admin {
        let joined = api.read_access(room_id, &user.user_id).await.ok() == Some(ReadAccess::Joined);
        if !joined
            || !api
                .may_send_state_now(room_id, &user.user_id, "m.room.canonical_alias")
                .await?
        {
            return Err(MatrixError::forbidden(
                "You need the power to set the room's canonical alias to change its directory visibility",
            ));
        }
    }
    api.store.set_room_published(room_id, published).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// One `/publicRooms` request, either form.
struct Query<'a> {
    server: Option<&'a ServerName>,
    limit: Option<UInt>,
    since: Option<&'a str>,
    filter: &'a Filter,
    network: &'a RoomNetwork,
}

impl ClientApi {
    /// This server's directory, or another server's (`server`), asked over
    /// federation.
    async fn public_rooms(&self, query: Query<'_>) -> Result<DirectoryPage, MatrixError> {
        if let Some(server) = query.server
            && server.as_str() != self.server_name
        {
            return self.remote_public_rooms(server, query).await;
        }
        directory::list_public_rooms(
            self.store.as_ref(),
            DirectoryQuery {
                limit: query.limit,
                since: query.since,
                filter: query.filter,
                network: query.network,
            },
        )
        .await
        .map_err(|error| match error {
            DirectoryError::Invalid(why) => MatrixError::invalid_param(why.0),
            DirectoryError::Store(error) => error.into(),
        })
    }

    async fn remote_public_rooms(
        &self,
        server: &ServerName,
        query: Query<'_>,
    ) -> Result<DirectoryPage, MatrixError> {
        let mut request = federation_public_rooms::v1::Request::new();
        request.limit = query.limit;
        request.since = query.since.map(str::to_owned);
        request.filter = query.filter.clone();
        request.room_network = query.network.clone();
        let answer = self
            .federation
            .send(server, request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        // Another server's page is passed on, but only so much of it.
        let limit = query
            .limit
            .and_then(|limit| usize::try_from(u64::from(limit)).ok())
            .unwrap_or(usize::MAX)
            .min(directory::MAX_LIMIT);
        let mut chunk = answer.chunk;
        // A page cut short here cannot be continued from the other's token.
        let cut = chunk.len() > limit;
        chunk.truncate(limit);
        Ok(DirectoryPage {
            chunk,
            next_batch: answer.next_batch.filter(|_| !cut),
            total: answer.total_room_count_estimate,
        })
    }

    /// The room's summary as the directory and space hierarchies show it;
    /// `None` for a room this server does not have.
    pub(crate) async fn summary_of(
        &self,
        room_id: &str,
    ) -> Result<Option<ruma::room::RoomSummary>, MatrixError> {
        Ok(directory::room_summary(self.store.as_ref(), room_id).await?)
    }
}
