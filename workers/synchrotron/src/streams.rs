//! `/sync` as a set of streams. Each provider in `streams/` fills its part
//! of ruma's typed response for one user between two positions of its
//! stream and says whether it added anything; the sync token carries every
//! stream's position, so each change is delivered exactly once.
//!
//! Adding a stream: a position in `SyncToken`, a store trait with its own
//! counter, a topic in `myelin_bus::topics` that wakes the users concerned
//! (see `consumers.rs`), and a provider file here called from [`collect`].

mod account_data;
mod device_lists;
mod presence;
mod push_counts;
mod receipts;
mod room_events;
mod to_device;
mod typing;

use myelin_http::MatrixError;
use myelin_room::SyncFilter;
use myelin_store::TokenOwner;
use myelin_types::SyncToken;
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::serde::Raw;
use serde::Serialize;

pub(crate) use to_device::ToDeviceAcks;
pub(crate) use typing::TypingRooms;

use crate::Synchrotron;

/// One sync request, parsed.
pub(crate) struct SyncRequest {
    pub(crate) user: TokenOwner,
    pub(crate) since: Option<SyncToken>,
    pub(crate) filter: SyncFilter,
    pub(crate) full_state: bool,
    /// Answer `state_after` rather than `state`.
    pub(crate) use_state_after: bool,
}

impl Synchrotron {
    /// The highest position of every stream that readers may see now:
    /// read from the store when `fresh`, else possibly a snapshot no
    /// change has outdated (see `positions.rs`).
    async fn positions_now(&self, fresh: bool) -> Result<SyncToken, MatrixError> {
        let stored = if fresh {
            self.positions.fresh(self.store.as_ref()).await?
        } else {
            self.positions.shared(self.store.as_ref()).await?
        };
        Ok(stored.with_typing(self.typing.position()))
    }

    /// The response up to the streams' current positions, and whether it
    /// holds anything new for an incremental sync.
    pub(crate) async fn collect(
        &self,
        request: &SyncRequest,
        fresh: bool,
    ) -> Result<(Response, bool), MatrixError> {
        let upto = self.positions_now(fresh).await?;
        // Every change is a position in the token: none moved, nothing new.
        if request.since == Some(upto) && !request.full_state {
            return Ok((Response::new(upto.to_string()), false));
        }
        let mut response = Response::new(upto.to_string());
        let joined = room_events::fill(self, request, upto.events, &mut response).await?;
        let mut news = joined.news;
        news |= account_data::fill(self, request, &joined.rooms, upto, &mut response).await?;
        news |= receipts::fill(self, request, &joined.rooms, upto, &mut response).await?;
        news |= typing::fill(self, request, &joined.rooms, upto, &mut response)?;
        news |= presence::fill(self, request, &joined.rooms, upto, &mut response).await?;
        news |= to_device::fill(self, request, upto, &mut response).await?;
        news |= device_lists::fill(self, request, &joined.rooms, upto, &mut response).await?;
        push_counts::fill(self, request, &joined.rooms, &mut response).await?;
        // Key counts change with claims that wake nobody: sent with every
        // response that goes out, not a reason to answer.
        if news || request.since.is_none() || request.full_state {
            to_device::fill_key_counts(self, request, &mut response).await?;
        }
        Ok((response, news))
    }
}

/// Our JSON as one of ruma's raw event types; the JSON is already an event
/// of that kind, so only the framing changes.
pub(crate) fn raw<T>(value: &impl Serialize) -> Result<Raw<T>, MatrixError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|error| MatrixError::internal(error.to_string()))
}
