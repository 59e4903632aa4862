//! `GET /_matrix/client/v3/sync`: initial and incremental sync, long-polling
//! until something relevant is persisted or the timeout passes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use myelin_http::{MatrixError, RequestContext, Router};
use myelin_room::{HistoryView, SyncFilter, stored_client_event, stripped_state_event};
use myelin_store::{Direction, Membership, TokenOwner};
use myelin_types::{StreamPosition, StreamToken};
use ruma::api::client::sync::sync_events;
use serde_json::{Map, Value, json};

use crate::Synchrotron;
use crate::timelines::CachedEvent;

const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// Most events one room's timeline returns, whatever the filter asks;
/// `/messages` pages on from `prev_batch`.
const MAX_TIMELINE_LIMIT: usize = 100;
/// Longest long-poll we hold, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// State types shown with an invite (stripped state).
const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
];

pub(crate) fn routes(sync: &Arc<Synchrotron>, router: &mut Router) {
    let sync = Arc::clone(sync);
    router.route_json::<sync_events::v3::Request, _, _>(move |context, request| {
        let sync = Arc::clone(&sync);
        async move { sync.sync(context, request).await }
    });
}

/// One sync request's parameters.
struct SyncParams {
    since: Option<StreamPosition>,
    filter: SyncFilter,
    full_state: bool,
}

impl SyncParams {
    /// Events per room timeline: the filter's, within bounds, so one
    /// request cannot ask for a whole room's history at once.
    fn timeline_limit(&self) -> usize {
        self.filter
            .timeline
            .limit
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .clamp(1, MAX_TIMELINE_LIMIT)
    }
}

impl Synchrotron {
    async fn sync(
        &self,
        context: RequestContext,
        request: sync_events::v3::Request,
    ) -> Result<Value, MatrixError> {
        let user = context.user()?.clone();
        let since = match &request.since {
            Some(token) => Some(
                token
                    .parse::<StreamToken>()
                    .map_err(|_| MatrixError::invalid_param("Invalid since token"))?
                    .events,
            ),
            None => None,
        };
        let filter = self.filter(&user.user_id, request.filter.as_ref()).await?;
        let params = SyncParams {
            since,
            filter,
            full_state: request.full_state,
        };
        let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let signal = self.waiters.signal(&user.user_id);
        loop {
            // Register for wake-ups before reading, so an event persisted
            // while we read still wakes us.
            let woken = signal.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (response, has_news) = self.build(&user, &params).await?;
            let stopping = self.stopping.load(std::sync::atomic::Ordering::SeqCst);
            if has_news
                || stopping
                || params.since.is_none()
                || params.full_state
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(response);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                let (response, _) = self.build(&user, &params).await?;
                return Ok(response);
            }
        }
    }

    async fn filter(
        &self,
        user_id: &str,
        filter: Option<&sync_events::v3::Filter>,
    ) -> Result<SyncFilter, MatrixError> {
        let definition = match filter {
            None => return Ok(SyncFilter::default()),
            Some(sync_events::v3::Filter::FilterDefinition(definition)) => {
                serde_json::to_value(definition)
                    .map_err(|error| MatrixError::bad_json(error.to_string()))?
            }
            Some(sync_events::v3::Filter::FilterId(filter_id)) => {
                let stored = self
                    .store
                    .filter(user_id, filter_id)
                    .await?
                    .ok_or_else(|| MatrixError::invalid_param("No such filter"))?;
                serde_json::from_str(&stored)
                    .map_err(|error| MatrixError::internal(error.to_string()))?
            }
            Some(_) => return Ok(SyncFilter::default()),
        };
        Ok(SyncFilter::from_json(&definition))
    }

    /// The sync response up to the highest visible position, and whether it
    /// holds anything new for an incremental sync.
    async fn build(
        &self,
        user: &TokenOwner,
        params: &SyncParams,
    ) -> Result<(Value, bool), MatrixError> {
        let upto = self.store.max_position().await?;
        self.timelines.catch_up(self.store.as_ref(), upto).await?;
        let (mut join, mut invite, mut knock, mut leave) =
            (Map::new(), Map::new(), Map::new(), Map::new());
        for membership in self.store.memberships_of_user(&user.user_id).await? {
            if !params.filter.rooms.allows_room(&membership.room_id) {
                continue;
            }
            let changed_since = params.since.is_none_or(|since| membership.position > since);
            match membership.membership.as_str() {
                "join" => {
                    if let Some(room) = self.joined_room(user, &membership, params, upto).await? {
                        join.insert(membership.room_id.clone(), room);
                    }
                }
                "invite" if changed_since => {
                    invite.insert(
                        membership.room_id.clone(),
                        self.invited_room(&membership).await?,
                    );
                }
                "knock" if changed_since => {
                    knock.insert(
                        membership.room_id.clone(),
                        self.knocked_room(&membership).await?,
                    );
                }
                "leave" | "ban"
                    if changed_since && (params.since.is_some() || params.filter.include_leave) =>
                {
                    leave.insert(
                        membership.room_id.clone(),
                        self.left_room(user, &membership, params).await?,
                    );
                }
                _ => {}
            }
        }
        let has_news =
            !(join.is_empty() && invite.is_empty() && knock.is_empty() && leave.is_empty());
        let response = json!({
            "next_batch": StreamToken::at(upto).to_string(),
            "rooms": {"join": join, "invite": invite, "knock": knock, "leave": leave},
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
        });
        Ok((response, has_news))
    }

    async fn joined_room(
        &self,
        user: &TokenOwner,
        membership: &Membership,
        params: &SyncParams,
        upto: StreamPosition,
    ) -> Result<Option<Value>, MatrixError> {
        let room_id = &membership.room_id;
        let limit = params.timeline_limit();
        let newly_joined = match params.since {
            None => true,
            Some(since) if membership.position > since => {
                !self.was_joined_at(room_id, &user.user_id, since).await?
            }
            Some(_) => false,
        };
        let lower = if newly_joined { None } else { params.since };
        // One more than the limit tells whether the timeline was cut.
        let mut recent = self.newest_events(room_id, lower, upto, limit + 1).await?;
        let limited = recent.len() > limit;
        recent.truncate(limit);
        recent.reverse();
        if recent.is_empty() && !newly_joined && !params.full_state {
            return Ok(None);
        }
        // Joined since before the oldest event here: all of it is theirs to
        // see. Otherwise each event is judged by the visibility at it.
        if recent
            .first()
            .is_some_and(|oldest| oldest.position < membership.position)
        {
            self.keep_visible(&mut recent, room_id, &user.user_id)
                .await?;
        }
        let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
        let in_timeline: HashSet<&str> =
            recent.iter().map(|event| event.event_id.as_str()).collect();
        let include_state = newly_joined || params.full_state || limited;
        let state: Vec<Value> = if include_state {
            self.store
                .current_state(room_id)
                .await?
                .iter()
                .filter(|event| !in_timeline.contains(event.event_id.as_str()))
                .filter(|event| {
                    newly_joined
                        || params.full_state
                        || params.since.is_none_or(|since| event.position > since)
                })
                .filter(|event| params.filter.state.allows(&event.event_type, &event.sender))
                .map(|event| stored_client_event(event, viewer))
                .collect()
        } else {
            Vec::new()
        };
        let prev_batch = recent.first().map_or(upto, |first| first.position.before());
        let timeline: Vec<Value> = recent
            .iter()
            .filter(|event| {
                params
                    .filter
                    .timeline
                    .allows(&event.event_type, &event.sender)
            })
            .map(|event| stored_client_event(event, viewer))
            .collect();
        Ok(Some(json!({
            "timeline": {"events": timeline, "limited": limited, "prev_batch": StreamToken::at(prev_batch).to_string()},
            "state": {"events": state},
            "account_data": {"events": []},
            "ephemeral": {"events": []},
        })))
    }

    /// The room's newest events in `(lower, upper]`, at most `take`, newest
    /// first: from the cache when it can tell, else from the store.
    async fn newest_events(
        &self,
        room_id: &str,
        lower: Option<StreamPosition>,
        upper: StreamPosition,
        take: usize,
    ) -> Result<Vec<CachedEvent>, MatrixError> {
        if let Some(cached) = self.timelines.newest(room_id, lower, upper, take) {
            self.timeline_reads.with_label_values(&["cache"]).inc();
            return Ok(cached);
        }
        self.timeline_reads.with_label_values(&["store"]).inc();
        let stored = self
            .store
            .room_events(room_id, upper, lower, Direction::Backward, take)
            .await?;
        Ok(stored.into_iter().map(Arc::new).collect())
    }

    /// Drops the events the user may not see by the room's history
    /// visibility and their membership at each event.
    async fn keep_visible(
        &self,
        events: &mut Vec<CachedEvent>,
        room_id: &str,
        user_id: &str,
    ) -> Result<(), MatrixError> {
        let view = HistoryView::load(self.store.as_ref(), room_id, user_id).await?;
        events.retain(|event| view.may_see(event));
        Ok(())
    }

    /// Whether the user was already joined at `since`: a profile change
    /// re-sends the join event, and must not look like a fresh join.
    async fn was_joined_at(
        &self,
        room_id: &str,
        user_id: &str,
        since: StreamPosition,
    ) -> Result<bool, MatrixError> {
        let then = self
            .store
            .state_event_at(room_id, "m.room.member", user_id, since)
            .await?;
        Ok(then.is_some_and(|event| {
            let pdu: Value = serde_json::from_str(&event.pdu_json).unwrap_or_default();
            pdu["content"]["membership"] == "join"
        }))
    }

    async fn invited_room(&self, membership: &Membership) -> Result<Value, MatrixError> {
        let events = self.stripped_state_with(membership).await?;
        Ok(json!({"invite_state": {"events": events}}))
    }

    /// A room the user knocked on: the same stripped state an invite shows.
    async fn knocked_room(&self, membership: &Membership) -> Result<Value, MatrixError> {
        let events = self.stripped_state_with(membership).await?;
        Ok(json!({"knock_state": {"events": events}}))
    }

    /// The room's stripped state for someone outside it, ending with their
    /// own membership event.
    async fn stripped_state_with(
        &self,
        membership: &Membership,
    ) -> Result<Vec<Value>, MatrixError> {
        let state = self.store.current_state(&membership.room_id).await?;
        let mut stripped: Vec<Value> = state
            .iter()
            .filter(|event| INVITE_STATE_TYPES.contains(&event.event_type.as_str()))
            .map(|event| stripped_state_event(&event.pdu_json))
            .collect();
        if let Some(invite) = state
            .iter()
            .find(|event| event.event_id == membership.event_id)
        {
            stripped.push(stripped_state_event(&invite.pdu_json));
        }
        Ok(stripped)
    }

    async fn left_room(
        &self,
        user: &TokenOwner,
        membership: &Membership,
        params: &SyncParams,
    ) -> Result<Value, MatrixError> {
        let limit = params.timeline_limit();
        let mut recent = self
            .newest_events(
                &membership.room_id,
                params.since,
                membership.position,
                limit + 1,
            )
            .await?;
        let limited = recent.len() > limit;
        recent.truncate(limit);
        recent.reverse();
        let prev_batch = recent
            .first()
            .map_or(membership.position, |first| first.position.before());
        self.keep_visible(&mut recent, &membership.room_id, &user.user_id)
            .await?;
        let viewer = Some((user.user_id.as_str(), user.device_id.as_str()));
        Ok(json!({
            "timeline": {
                "events": recent.iter().map(|event| stored_client_event(event, viewer)).collect::<Vec<_>>(),
                "limited": limited,
                "prev_batch": StreamToken::at(prev_batch).to_string(),
            },
            "state": {"events": []},
        }))
    }
}
