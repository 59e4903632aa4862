//! A head with more forward extremities than one event may cite: many
//! servers' events arrived side by side. The next local event cites the
//! deepest of them and is judged by the state those resolve to; the rest
//! stay extremities, which the event after it cites with it, so the room's
//! branches still meet within a few events.

use std::collections::HashMap;

use myelin_bus::messages::RoomInputRefused;
use myelin_room::{EventRef, MAX_PREV_EVENTS, RoomState, cite_deepest};

use crate::EventPersister;
use crate::head::CachedHead;
use crate::input::unavailable;
use crate::persist::{ComposedEvent, advance};

/// A head split for the next event.
pub(crate) struct NarrowHead {
    /// What the next event is composed on: the extremities it cites and
    /// the state after them.
    pub(crate) cited: CachedHead,
    /// The extremities left for a later event.
    uncited: Vec<EventRef>,
}

impl EventPersister {
    /// `None` when the next event can cite every extremity of `head`.
    pub(crate) async fn narrow_head(
        &self,
        head: &CachedHead,
    ) -> Result<Option<NarrowHead>, RoomInputRefused> {
        if head.extremities.len() <= MAX_PREV_EVENTS {
            return Ok(None);
        }
        let ids: Vec<String> = head
            .extremities
            .iter()
            .map(|extremity| extremity.event_id.clone())
            .collect();
        let depths: HashMap<String, i64> = self
            .store
            .events_by_id(&ids)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|event| (event.event_id, event.depth))
            .collect();
        let (cited, uncited) = cite_deepest(
            head.extremities
                .iter()
                .map(|extremity| {
                    let depth = depths.get(&extremity.event_id).copied().unwrap_or(0);
                    (extremity.clone(), depth)
                })
                .collect(),
        );
        let (state, snapshot) = match self.states_after(head, &cited).await? {
            Some(forks) => self.merge_forks(&head.version, forks).await?,
            // A room from before snapshots: its one linear state stands.
            None => (head.state.clone(), head.snapshot.clone()),
        };
        Ok(Some(NarrowHead {
            cited: CachedHead {
                version: head.version.clone(),
                room_id: head.room_id.clone(),
                state,
                extremities: cited,
                // Deeper than every extremity, cited or not.
                max_depth: head.max_depth,
                snapshot,
                joined: head.joined.clone(),
                redactions_wait: head.redactions_wait,
            },
            uncited,
        }))
    }

    /// The room's head once `composed`, written on `narrow.cited`, stands
    /// beside the uncited extremities: their states resolved with its.
    pub(crate) async fn head_beside_uncited(
        &self,
        narrow: &NarrowHead,
        composed: &ComposedEvent,
    ) -> Result<CachedHead, RoomInputRefused> {
        let mut next = narrow.cited.clone();
        advance(&mut next, composed);
        if let Some(forks) = self.states_after(&next, &narrow.uncited).await? {
            let mut states: Vec<RoomState> = forks.into_iter().map(|(state, _)| state).collect();
            states.push(next.state.clone());
            next.state = self.resolve(&next.version, &states).await?;
            // The resolved state is in no snapshot yet.
            next.snapshot = None;
        }
        next.extremities.extend(narrow.uncited.iter().cloned());
        Ok(next)
    }

    /// The state after each of `extremities`; `None` when one has none
    /// stored.
    async fn states_after(
        &self,
        head: &CachedHead,
        extremities: &[EventRef],
    ) -> Result<Option<Vec<(RoomState, crate::snapshots::HeadSnapshot)>>, RoomInputRefused> {
        let mut forks = Vec::with_capacity(extremities.len());
        for extremity in extremities {
            match self.state_after(&head.version, &extremity.event_id).await? {
                Some(fork) => forks.push(fork),
                None => return Ok(None),
            }
        }
        Ok(Some(forks))
    }
}
