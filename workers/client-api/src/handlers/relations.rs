//! `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` and
//! `GET /rooms/{roomId}/threads`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::{Viewer, bundle_aggregations, stored_client_event};
use myelin_store::{Direction, MAX_RELATION_DEPTH, RelationQuery, StoredEvent};
use myelin_types::{StreamPosition, StreamToken};
use ruma::UInt;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type,
    get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads;
use ruma::serde::Raw;
use serde_json::Value;

use crate::ClientApi;
use crate::access::RoomReader;
use crate::handlers::message::parse_token;

/// Relations on one page when the client does not say.
const DEFAULT_RELATIONS: usize = 50;
/// Most relations on one page, whatever the client asks.
const MAX_RELATIONS: usize = 100;
/// Threads on one page when the client does not say.
const DEFAULT_THREADS: usize = 25;
/// Most threads on one page.
const MAX_THREADS: usize = 100;

/// A client event as ruma's raw event of any kind.
pub(crate) fn raw<T>(event: &Value) -> Result<Raw<T>, MatrixError> {
    serde_json::value::to_raw_value(event)
        .map(Raw::from_json)
        .map_err(|error| MatrixError::internal(error.to_string()))
}

fn page_size(limit: Option<UInt>, default: usize, max: usize) -> usize {
    limit.map_or(default, |limit| {
        usize::try_from(u64::from(limit))
            .unwrap_or(max)
            .clamp(1, max)
    })
}

/// What every form of the relations endpoint asks.
struct RelationsRequest {
    room_id: String,
    event_id: String,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<String>,
    to: Option<String>,
    dir: ruma::api::Direction,
    limit: Option<UInt>,
    recurse: bool,
}

struct RelationsPage {
    chunk: Vec<Raw<ruma::events::AnyMessageLikeEvent>>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    recursion_depth: Option<UInt>,
}

impl ClientApi {
    async fn relations_page(
        &self,
        context: &RequestContext,
        request: RelationsRequest,
    ) -> Result<RelationsPage, MatrixError> {
        let user = context.user()?;
        let room_id = request.room_id.as_str();
        // The parent must be an event the user may see, else nothing is told.
        let (_, reader) = self
            .visible_event(room_id, &request.event_id, &user.user_id)
            .await?;
        let backward = request.dir == ruma::api::Direction::Backward;
        let from = match &request.from {
            Some(token) => parse_token(token)?,
            None if backward => self.store.max_position().await?,
            None => StreamPosition::BEFORE_ALL,
        };
        let to = request.to.as_deref().map(parse_token).transpose()?;
        let (from, to) = match (reader.limit(), backward) {
            (Some(limit), true) => (from.min(limit), to),
            (Some(limit), false) => (from, Some(to.map_or(limit, |to| to.min(limit)))),
            (None, _) => (from, to),
        };
        let limit = page_size(request.limit, DEFAULT_RELATIONS, MAX_RELATIONS);
        let query = RelationQuery {
            room_id: room_id.to_owned(),
            event_id: request.event_id.clone(),
            rel_type: request.rel_type,
            event_type: request.event_type,
            from,
            to,
            direction: if backward {
                Direction::Backward
            } else {
                Direction::Forward
            },
            limit,
            recurse: request.recurse,
        };
        let events = self.store.relations(&query).await?;
        let next_batch = match (events.last(), events.len() == limit) {
            (Some(last), true) => Some(
                StreamToken::at(if backward {
                    last.position.before()
                } else {
                    last.position
                })
                .to_string(),
            ),
            _ => None,
        };
        let chunk = self
            .served_events(&reader, room_id, context, &events)
            .await?;
        Ok(RelationsPage {
            chunk: chunk.iter().map(raw).collect::<Result<_, _>>()?,
            next_batch,
            prev_batch: request.from,
            recursion_depth: request.recurse.then(|| UInt::from(MAX_RELATION_DEPTH)),
        })
    }

    /// The events the reader may see, as client events with their bundled
    /// aggregations.
    pub(crate) async fn served_events(
        &self,
        reader: &RoomReader,
        room_id: &str,
        context: &RequestContext,
        events: &[StoredEvent],
    ) -> Result<Vec<Value>, MatrixError> {
        let user = context.user()?;
        let mut chunk: Vec<Value> = events
            .iter()
            .filter(|event| reader.may_see(event))
            .map(|event| stored_client_event(event, Some((&user.user_id, &user.device_id))))
            .collect();
        self.bundle(reader, room_id, context, &mut chunk).await?;
        Ok(chunk)
    }

    /// Adds the bundled aggregations the reader may see to client events.
    pub(crate) async fn bundle(
        &self,
        reader: &RoomReader,
        room_id: &str,
        context: &RequestContext,
        events: &mut [Value],
    ) -> Result<(), MatrixError> {
        let user = context.user()?;
        let viewer = Viewer {
            user_id: &user.user_id,
            device_id: Some(&user.device_id),
            upto: reader.limit(),
        };
        bundle_aggregations(self.store.as_ref(), room_id, viewer, events).await?;
        Ok(())
    }
}

pub(crate) async fn relating(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_relating_events::v1::Request,
) -> Result<get_relating_events::v1::Response, MatrixError> {
    let page = api
        .relations_page(
            &context,
            RelationsRequest {
                room_id: request.room_id.to_string(),
                event_id: request.event_id.to_string(),
                rel_type: None,
                event_type: None,
                from: request.from,
                to: request.to,
                dir: request.dir,
                limit: request.limit,
                recurse: request.recurse,
            },
        )
        .await?;
    let mut response = get_relating_events::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(response)
}

pub(crate) async fn relating_with_rel_type(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_relating_events_with_rel_type::v1::Request,
) -> Result<get_relating_events_with_rel_type::v1::Response, MatrixError> {
    let page = api
        .relations_page(
            &context,
            RelationsRequest {
                room_id: request.room_id.to_string(),
                event_id: request.event_id.to_string(),
                rel_type: Some(request.rel_type.to_string()),
                event_type: None,
                from: request.from,
                to: request.to,
                dir: request.dir,
                limit: request.limit,
                recurse: request.recurse,
            },
        )
        .await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(response)
}

pub(crate) async fn relating_with_rel_type_and_event_type(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_relating_events_with_rel_type_and_event_type::v1::Request,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response, MatrixError> {
    let page = api
        .relations_page(
            &context,
            RelationsRequest {
                room_id: request.room_id.to_string(),
                event_id: request.event_id.to_string(),
                rel_type: Some(request.rel_type.to_string()),
                event_type: Some(request.event_type.to_string()),
                from: request.from,
                to: request.to,
                dir: request.dir,
                limit: request.limit,
                recurse: request.recurse,
            },
        )
        .await?;
    let mut response =
        get_relating_events_with_rel_type_and_event_type::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(response)
}

pub(crate) async fn threads(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_threads::v1::Request,
) -> Result<get_threads::v1::Response, MatrixError> {
    let user = context.user()?;
    let room_id = request.room_id.as_str();
    let participant = match request.include {
        get_threads::v1::IncludeThreads::All => None,
        get_threads::v1::IncludeThreads::Participated => Some(user.user_id.as_str()),
        other => {
            return Err(MatrixError::invalid_param(format!(
                "include must be all or participated, not {:?}",
                other.as_str()
            )));
        }
    };
    if api.store.room(room_id).await?.is_none() {
        return Err(MatrixError::not_found("Room not found"));
    }
    let reader = api.room_reader(room_id, &user.user_id).await?;
    let before = request.from.as_deref().map(parse_token).transpose()?;
    let limit = page_size(request.limit, DEFAULT_THREADS, MAX_THREADS);
    let threads = api
        .store
        .threads(room_id, participant, before, reader.limit(), limit)
        .await?;
    let next_batch = match (threads.last(), threads.len() == limit) {
        (Some(last), true) => Some(StreamToken::at(last.latest_position).to_string()),
        _ => None,
    };
    let roots: Vec<StoredEvent> = threads.into_iter().map(|thread| thread.root).collect();
    let chunk = api
        .served_events(&reader, room_id, &context, &roots)
        .await?;
    let mut response =
        get_threads::v1::Response::new(chunk.iter().map(raw).collect::<Result<_, _>>()?);
    response.next_batch = next_batch;
    Ok(response)
}
