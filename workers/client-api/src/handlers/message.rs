//! Sending and reading room events: `/send`, `/messages`, `/event`,
//! `/redact`, `/context`.

use std::sync::Arc;

use myelin_bus::messages::WireTxn;
use myelin_http::{MatrixError, RequestContext, Router};
use myelin_room::{EventFilter, stored_client_event};
use myelin_store::{Direction, StoredEvent, TxnKey};
use myelin_types::{StreamPosition, StreamToken, TimelinePoint};
use ruma::api::client::context::get_context;
use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::get_room_event;
use serde_json::{Value, json};

use crate::ClientApi;
use crate::access::RoomReader;
use crate::identifier_limits::{check_event_key, check_txn_id};
use crate::room_writer::template;

/// Most events one `/messages` page returns, whatever the client asks.
const MAX_PAGE: usize = 1000;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<send_message_event::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let content: Value = serde_json::from_str(request.body.json().get())
                .map_err(|error| MatrixError::bad_json(error.to_string()))?;
            let event_type = request.event_type.to_string();
            let event_id = api
                .send_with_txn(
                    &context,
                    request.room_id.as_str(),
                    &event_type,
                    content,
                    None,
                    request.txn_id.as_str(),
                )
                .await?;
            Ok(json!({"event_id": event_id}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<redact_event::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let mut content = json!({});
            if let Some(reason) = request.reason {
                content["reason"] = json!(reason);
            }
            let target = request.event_id.as_str();
            let event_id = api
                .send_with_txn(
                    &context,
                    request.room_id.as_str(),
                    "m.room.redaction",
                    content,
                    Some(target),
                    request.txn_id.as_str(),
                )
                .await?;
            Ok(json!({"event_id": event_id}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_message_events::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move { api.messages(context, request).await }
    });
    let a = Arc::clone(api);
    router.route_json::<get_room_event::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            let (event, reader) = api
                .visible_event(room_id, request.event_id.as_str(), &user.user_id)
                .await?;
            let mut events = [stored_client_event(
                &event,
                Some((&user.user_id, &user.device_id)),
            )];
            api.bundle(&reader, room_id, &context, &mut events).await?;
            let [event] = events;
            Ok(event)
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_context::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move { api.context(context, request).await }
    });
}

/// A `from` or `to` of paging by stream position (relations, threads).
pub(crate) fn parse_token(token: &str) -> Result<StreamPosition, MatrixError> {
    token
        .parse::<StreamToken>()
        .map(|token| token.events)
        .map_err(|_| MatrixError::invalid_param(format!("Invalid pagination token {token:?}")))
}

/// A `from` or `to` of paging through a room's timeline: a point of it,
/// or a stream token (`/sync`'s `prev_batch`).
fn parse_point(token: &str) -> Result<TimelinePoint, MatrixError> {
    token
        .parse::<TimelinePoint>()
        .map_err(|_| MatrixError::invalid_param(format!("Invalid pagination token {token:?}")))
}

impl ClientApi {
    /// Sends once per device and transaction ID: a retry gets the first event ID.
    async fn send_with_txn(
        &self,
        context: &RequestContext,
        room_id: &str,
        event_type: &str,
        content: Value,
        redacts: Option<&str>,
        txn_id: &str,
    ) -> Result<String, MatrixError> {
        let user = context.user()?;
        check_event_key("The event type", event_type)?;
        check_txn_id(txn_id)?;
        if !content.is_object() {
            return Err(MatrixError::bad_json("Event content must be an object"));
        }
        // A retried transaction ID is answered by the room's writer from the
        // store; only when the rate limit refuses do we look here, so a retry
        // of a send that went through is never refused.
        if let Err(limited) = self.limits.message.check(&user.user_id) {
            let key = TxnKey {
                user_id: user.user_id.clone(),
                device_id: user.device_id.clone(),
                txn_id: txn_id.to_owned(),
            };
            return match self.store.txn_event_id(&key).await? {
                Some(event_id) => Ok(event_id),
                None => Err(limited),
            };
        }
        let mut event = template(event_type, None, content);
        event.redacts = redacts.map(str::to_owned);
        let txn = WireTxn {
            device_id: user.device_id.clone(),
            txn_id: txn_id.to_owned(),
        };
        let event_id = self
            .send_event(room_id, &user.user_id, event, Some(txn))
            .await?
            .event_id;
        self.note_activity(&user.user_id).await;
        Ok(event_id)
    }

    /// An event of the room that the user may see. Anything else, also an
    /// event of a room they may not read at all, is not found: the answer
    /// must not tell that it exists.
    pub(crate) async fn visible_event(
        &self,
        room_id: &str,
        event_id: &str,
        user_id: &str,
    ) -> Result<(StoredEvent, RoomReader), MatrixError> {
        let not_found = || MatrixError::not_found("Event not found");
        let reader = match self.room_reader(room_id, user_id).await {
            Ok(reader) => reader,
            Err(error) if error.status == http::StatusCode::FORBIDDEN => return Err(not_found()),
            Err(error) => return Err(error),
        };
        let event = self
            .store
            .event(event_id)
            .await?
            .filter(|event| event.room_id == room_id && reader.may_see(event))
            .ok_or_else(not_found)?;
        Ok((event, reader))
    }

    async fn messages(
        &self,
        context: RequestContext,
        request: get_message_events::v3::Request,
    ) -> Result<Value, MatrixError> {
        let user = context.user()?;
        let room_id = request.room_id.as_str();
        let mut reader = self.room_reader(room_id, &user.user_id).await?;
        let filter =
            EventFilter::from_json(&serde_json::to_value(&request.filter).unwrap_or_default());
        let limit = (u64::from(request.limit) as usize).clamp(1, MAX_PAGE);
        let backward = request.dir == ruma::api::Direction::Backward;
        let from = match &request.from {
            Some(token) => parse_point(token)?,
            None if backward => TimelinePoint::of_stream(self.store.max_position().await?),
            // History fetched from other servers sits below zero.
            None => TimelinePoint::BEFORE_ALL,
        };
        let to = request.to.as_deref().map(parse_point).transpose()?;
        // A former member reads nothing after the end of their membership.
        let (from, to) = match (reader.limit_point(), backward) {
            (Some(limit), true) => (from.min(limit), to),
            (Some(limit), false) => (from, Some(to.map_or(limit, |to| to.min(limit)))),
            (None, _) => (from, to),
        };
        let direction = if backward {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let mut events = self
            .store
            .room_events(room_id, from, to, direction, limit)
            .await?;
        // Paging back past the oldest event held here, or across a gap in
        // the room's history: ask the servers in the room for what is
        // missing, and let the client ask for more.
        let reached_start = to.is_none() && events.len() < limit;
        let backfilled = backward
            && self
                .backfill(room_id, &events, reached_start, limit)
                .await?;
        if backfilled {
            events = self
                .store
                .room_events(room_id, from, to, direction, limit)
                .await?;
            // What was fetched changed the room's history: judge it anew.
            reader = self.room_reader(room_id, &user.user_id).await?;
        }
        let end = match (events.last(), events.len() == limit || backfilled) {
            (Some(last), true) => Some(if backward {
                last.point().before()
            } else {
                last.point()
            }),
            _ => None,
        };
        let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
        // A page may come back emptier than asked, never short of `end`:
        // the client pages on past what it may not see.
        let mut chunk: Vec<Value> = events
            .iter()
            .filter(|event| reader.may_see(event))
            .filter(|event| filter.allows(&event.event_type, &event.sender))
            .map(|event| stored_client_event(event, viewer))
            .collect();
        self.bundle(&reader, room_id, &context, &mut chunk).await?;
        let mut body = json!({"start": from.to_string(), "chunk": chunk});
        if let Some(end) = end {
            body["end"] = json!(end.to_string());
        }
        Ok(body)
    }

    async fn context(
        &self,
        context: RequestContext,
        request: get_context::v3::Request,
    ) -> Result<Value, MatrixError> {
        let user = context.user()?;
        let room_id = request.room_id.as_str();
        let (event, reader) = self
            .visible_event(room_id, request.event_id.as_str(), &user.user_id)
            .await?;
        let limit = (u64::from(request.limit) as usize).min(MAX_PAGE);
        let before_count = limit / 2;
        let after_count = limit - before_count;
        let around = reader
            .events_around(self.store.as_ref(), &event, before_count, after_count)
            .await?;
        let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
        let (start, end) = (around.start, around.end);
        let client_events = |events: &[StoredEvent]| -> Vec<Value> {
            events
                .iter()
                .map(|event| stored_client_event(event, viewer))
                .collect()
        };
        // The state at the last event returned, which for a former member
        // is never past their leave.
        let state: Vec<Value> = myelin_store::state_at_point(self.store.as_ref(), room_id, end)
            .await?
            .iter()
            .map(|state| stored_client_event(state, viewer))
            .collect();
        let mut events_before = client_events(&around.before);
        let mut events_after = client_events(&around.after);
        let mut target = [stored_client_event(&event, viewer)];
        self.bundle(&reader, room_id, &context, &mut events_before)
            .await?;
        self.bundle(&reader, room_id, &context, &mut events_after)
            .await?;
        self.bundle(&reader, room_id, &context, &mut target).await?;
        let [target] = target;
        Ok(json!({
            "event": target,
            "events_before": events_before,
            "events_after": events_after,
            "start": start.to_string(),
            "end": end.to_string(),
            "state": state,
        }))
    }
}
