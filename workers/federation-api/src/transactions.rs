//! `PUT /send/{txnId}`: another server's transaction of PDUs and EDUs.
//!
//! Each PDU is checked (format, signatures, content hash) and handed to its
//! room's writer, which authorizes and stores it before the answer goes
//! out. One transaction per origin at a time, across every replica (a turn
//! kept in the store); a retry is safe because the writer knows events by
//! their ID.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use myelin_bus::messages::{RemoteEvent, RemoteEventKind, RemoteEvents, RoomInput};
use myelin_federation::history::RemoteRoom;
use myelin_federation::{check_pdu, parse_pdu};
use myelin_http::{MatrixError, RequestContext};
use myelin_types::Partition;
use ruma::api::federation::event::get_missing_events;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::{CanonicalJsonValue, OwnedEventId, OwnedServerName};
use serde_json::value::RawValue;

use crate::FederationApi;
use crate::rooms;

/// The refusal of an event whose prev_events are not known here.
const MISSING_PREV_EVENTS: &str = "M_MISSING_PREV_EVENTS";
/// The most events fetched to close the gaps of one transaction; a longer
/// gap is closed by the state before the oldest fetched (`/state_ids`),
/// leaving the older part of it out.
const GAP_LIMIT: usize = 500;
/// Events asked for per `/get_missing_events` round, and the most events
/// a round walks back from.
const GAP_ROUND: u16 = 50;
const GAP_ROUND_FROM: usize = 20;

/// The spec's limits on one transaction.
pub(crate) const MAX_PDUS: usize = 50;
pub(crate) const MAX_EDUS: usize = 100;

/// The origins whose transaction is being processed here now.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashSet<OwnedServerName>>);

struct InFlightGuard<'a> {
    set: &'a InFlight,
    origin: OwnedServerName,
}

impl InFlight {
    fn enter(&self, origin: &OwnedServerName) -> Option<InFlightGuard<'_>> {
        let mut origins = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        origins.insert(origin.clone()).then(|| InFlightGuard {
            set: self,
            origin: origin.clone(),
        })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut origins = self
            .set
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        origins.remove(&self.origin);
    }
}

pub(crate) async fn send(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: send_transaction_message::v1::Request,
) -> Result<send_transaction_message::v1::Response, MatrixError> {
    let origin = ctx
        .origin
        .clone()
        .ok_or_else(|| MatrixError::unauthorized("Only servers may send transactions"))?;
    if request.origin != origin {
        return Err(MatrixError::forbidden(
            "The transaction's origin is not the server that signed the request",
        ));
    }
    if request.pdus.len() > MAX_PDUS || request.edus.len() > MAX_EDUS {
        return Err(MatrixError::bad_json(format!(
            "A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    let busy = || {
        let mut busy = MatrixError::limit_exceeded(1000);
        busy.error = "A transaction from this server is already being processed".to_owned();
        busy
    };
    // Here first, then across every replica.
    let Some(_turn) = api.in_flight.enter(&origin) else {
        return Err(busy());
    };
    let holder = format!("{}/{}", api.instance_id, request.transaction_id);
    let now = myelin_types::now_millis();
    if !api
        .store
        .claim_inbound_turn(origin.as_str(), &holder, now, now + TURN_LAPSES_MS)
        .await?
    {
        return Err(busy());
    }
    // Given back when done, or when dropped if the sender hangs up first.
    let store_turn = StoreTurn {
        store: Arc::clone(&api.store),
        origin: origin.to_string(),
        holder,
        given_back: false,
    };
    api.note_server_seen(&origin);
    let mut results = BTreeMap::new();
    let processing = async {
        let mut rooms = RoomsSeen::default();
        // What one transaction may have fetched to close gaps, all told.
        let mut gap_budget = GAP_LIMIT;
        // Consecutive PDUs of one room go to its writer together.
        let mut run: Vec<(OwnedEventId, ForWriter)> = Vec::new();
        for raw in &request.pdus {
            let Some((event_id, checked)) =
                api.check_transaction_pdu(&origin, raw, &mut rooms).await
            else {
                continue;
            };
            let pdu = match checked {
                Ok(pdu) => pdu,
                Err(why) => {
                    results.insert(event_id, Err(why));
                    continue;
                }
            };
            if run
                .first()
                .is_some_and(|(_, first)| first.room_id != pdu.room_id)
            {
                api.hand_over_run(
                    &origin,
                    std::mem::take(&mut run),
                    &mut results,
                    &mut gap_budget,
                )
                .await;
            }
            let acl_changed_in = pdu.changes_acl.then(|| pdu.room_id.clone());
            run.push((event_id, pdu));
            if let Some(room_id) = acl_changed_in {
                // The PDUs after it are judged by the ACL it sets.
                api.hand_over_run(
                    &origin,
                    std::mem::take(&mut run),
                    &mut results,
                    &mut gap_budget,
                )
                .await;
                rooms.forget(&room_id);
            }
        }
        api.hand_over_run(&origin, run, &mut results, &mut gap_budget)
            .await;
        api.accept_edus(&origin, &request.edus).await;
    };
    // Filling gaps may take longer than a turn lasts: it is renewed meanwhile.
    tokio::select! {
        () = processing => {}
        () = store_turn.keep() => {}
    }
    store_turn.give_back().await;
    Ok(send_transaction_message::v1::Response::new(results))
}

/// An origin's turn held in the store: given back before the answer goes
/// out, or when dropped unanswered.
struct StoreTurn {
    store: Arc<dyn myelin_store::Store>,
    origin: String,
    holder: String,
    given_back: bool,
}

impl StoreTurn {
    /// Renews the turn while the transaction runs; never ends by itself.
    async fn keep(&self) {
        loop {
            tokio::time::sleep(TURN_RENEWED_EVERY).await;
            let now = myelin_types::now_millis();
            match self
                .store
                .claim_inbound_turn(&self.origin, &self.holder, now, now + TURN_LAPSES_MS)
                .await
            {
                Ok(true) => {}
                // The writer dedupes events: another replica taking the
                // origin's next transaction stores nothing twice.
                Ok(false) => {
                    tracing::warn!(origin = %self.origin, "an inbound turn lapsed while its transaction ran");
                }
                Err(error) => {
                    tracing::warn!(origin = %self.origin, %error, "could not renew an inbound turn");
                }
            }
        }
    }

    async fn give_back(mut self) {
        self.given_back = true;
        if let Err(error) = self
            .store
            .release_inbound_turn(&self.origin, &self.holder)
            .await
        {
            // It lapses by itself.
            tracing::warn!(origin = %self.origin, %error, "could not give back an inbound turn");
        }
    }
}

impl Drop for StoreTurn {
    fn drop(&mut self) {
        if self.given_back {
            return;
        }
        let store = Arc::clone(&self.store);
        let (origin, holder) = (
            std::mem::take(&mut self.origin),
            std::mem::take(&mut self.holder),
        );
        tokio::spawn(async move {
            if let Err(error) = store.release_inbound_turn(&origin, &holder).await {
                // It lapses by itself.
                tracing::warn!(%origin, %error, "could not give back an inbound turn");
            }
        });
    }
}

/// A PDU of a transaction that passed the checks, for its room's writer.
struct ForWriter {
    room_id: String,
    version: myelin_room::RoomVersion,
    checked: myelin_federation::CheckedPdu,
    /// It sets the room's server ACL.
    changes_acl: bool,
}

fn described(error: &MatrixError) -> String {
    format!("{}: {}", error.errcode, error.error)
}

/// What one transaction has read of each room its PDUs name: the room's
/// version (`None`: not a room of this server) and whether the origin
/// passes the room's server ACL. A PDU that changes the ACL has the room
/// read again for the PDUs after it.
#[derive(Default)]
struct RoomsSeen(HashMap<String, Option<SeenRoom>>);

#[derive(Clone)]
struct SeenRoom {
    version: myelin_room::RoomVersion,
    acl: Result<(), String>,
}

impl RoomsSeen {
    async fn read(
        &mut self,
        store: &dyn myelin_store::Store,
        room_id: &str,
        origin: &OwnedServerName,
    ) -> Option<SeenRoom> {
        if let Some(seen) = self.0.get(room_id) {
            return seen.clone();
        }
        let seen = match rooms::room_version(store, room_id).await {
            Ok(version) => {
                let acl =
                    myelin_federation::server_acl::require_acl(store, room_id, origin.as_str())
                        .await
                        .map_err(|refused| refused.error);
                Some(SeenRoom { version, acl })
            }
            Err(error) => {
                tracing::info!(%origin, %room_id, ?error, "dropped a PDU of a room this server is not in");
                None
            }
        };
        if self.0.len() < MAX_PDUS {
            self.0.insert(room_id.to_owned(), seen.clone());
        }
        seen
    }

    fn forget(&mut self, room_id: &str) {
        self.0.remove(room_id);
    }
}

/// How long a replica's turn at an origin's transactions lasts if it is
/// never given back (the replica died while processing).
const TURN_LAPSES_MS: i64 = 120_000;
/// How often a turn is renewed while its transaction runs.
const TURN_RENEWED_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A server is announced as seen at most this often per replica.
const SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl FederationApi {
    /// Tells the senders a server is up, so one backing off from it sends now.
    fn note_server_seen(&self, origin: &OwnedServerName) {
        {
            let mut seen = self
                .seen_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = std::time::Instant::now();
            if seen
                .get(origin.as_str())
                .is_some_and(|at| now.duration_since(*at) < SEEN_EVERY)
            {
                return;
            }
            if seen.len() >= 10_000 {
                seen.clear();
            }
            seen.insert(origin.to_string(), now);
        }
        let bus = std::sync::Arc::clone(&self.bus);
        let message = myelin_bus::topics::ServerSeen {
            server_name: origin.to_string(),
        };
        tokio::spawn(async move {
            if let Err(error) = myelin_bus::topics::SERVER_SEEN
                .announce(bus.as_ref(), &message)
                .await
            {
                tracing::debug!(%error, "could not announce a server as seen");
            }
        });
    }

    /// Checks one PDU of a transaction for its room's writer. `None` when
    /// the PDU cannot even name an event, which the answer then leaves out.
    async fn check_transaction_pdu(
        &self,
        origin: &OwnedServerName,
        raw: &RawValue,
        rooms: &mut RoomsSeen,
    ) -> Option<(OwnedEventId, Result<ForWriter, String>)> {
        let object = match parse_pdu(raw) {
            Ok(object) => object,
            Err(why) => {
                tracing::info!(%origin, %why, "dropped an unreadable PDU");
                return None;
            }
        };
        let room_id = match object.get("room_id") {
            Some(CanonicalJsonValue::String(room_id)) => room_id.clone(),
            _ => return None,
        };
        let changes_acl = matches!(
            object.get("type"),
            Some(CanonicalJsonValue::String(event_type)) if event_type == "m.room.server_acl"
        );
        let SeenRoom { version, acl } = rooms.read(self.store.as_ref(), &room_id, origin).await?;
        let event_id = myelin_federation::pdu_check::event_id_of(&version, &object).ok()?;
        let event_id = OwnedEventId::try_from(event_id).ok()?;
        if let Err(refused) = acl {
            return Some((event_id, Err(refused)));
        }
        let checked = match check_pdu(&self.server_keys, &version, object).await {
            Err(why) => Err(why.0),
            Ok(checked) => Ok(ForWriter {
                room_id,
                version,
                checked,
                changes_acl,
            }),
        };
        Some((event_id, checked))
    }

    /// Hands a run of checked PDUs of one room to its writer in one
    /// request; a PDU refused for unknown prev_events is then handed over
    /// alone, across the gap.
    async fn hand_over_run(
        &self,
        origin: &OwnedServerName,
        run: Vec<(OwnedEventId, ForWriter)>,
        results: &mut BTreeMap<OwnedEventId, Result<(), String>>,
        gap_budget: &mut usize,
    ) {
        let Some((_, first)) = run.first() else {
            return;
        };
        let room_id = first.room_id.clone();
        let events = run
            .iter()
            .map(|(_, pdu)| RemoteEvent {
                room_id: room_id.clone(),
                event_id: pdu.checked.event_id.clone(),
                pdu_json: pdu.checked.json.clone(),
                origin: origin.to_string(),
                kind: RemoteEventKind::Transaction,
                state_ids: None,
            })
            .collect();
        let answered = myelin_process::request_remote_events(
            self.bus.as_ref(),
            Partition::of_room(&room_id),
            RemoteEvents { room_id, events },
        )
        .await;
        let mut outcomes = match answered {
            Ok(outcomes) => outcomes.into_iter(),
            Err(error) => {
                for (event_id, _) in run {
                    results.insert(event_id, Err(described(&error)));
                }
                return;
            }
        };
        for (event_id, pdu) in run {
            let result = match outcomes.next().map(|outcome| outcome.refused) {
                Some(None) => Ok(()),
                Some(Some(refused)) if refused.errcode == MISSING_PREV_EVENTS => self
                    .hand_over_across_gaps(
                        origin,
                        &pdu.room_id,
                        &pdu.version,
                        &pdu.checked,
                        gap_budget,
                    )
                    .await
                    .map_err(|error| described(&error)),
                Some(Some(refused)) => Err(format!("{}: {}", refused.errcode, refused.error)),
                None => Err("M_UNKNOWN: the room's writer did not answer for it".to_owned()),
            };
            results.insert(event_id, result);
        }
    }

    /// Hands a checked PDU to its room's writer; when its prev_events are
    /// not known here, first fetches what lies between (`/get_missing_events`)
    /// and, if a gap remains, the state before the event as its sender holds
    /// it (`/state_ids`), which then stands in for its prevs'. At most
    /// `gap_budget` events are fetched, and taken from it.
    async fn hand_over_across_gaps(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        checked: &myelin_federation::CheckedPdu,
        gap_budget: &mut usize,
    ) -> Result<(), MatrixError> {
        let first = self.hand_over(origin, room_id, checked, None).await;
        if !matches!(&first, Err(error) if error.errcode == MISSING_PREV_EVENTS) {
            return first;
        }
        self.fill_gap(
            origin,
            room_id,
            version,
            &checked.event_id,
            checked.pdu.depth,
            gap_budget,
        )
        .await;
        let second = self.hand_over(origin, room_id, checked, None).await;
        let Err(error) = &second else {
            return second;
        };
        if error.errcode != MISSING_PREV_EVENTS {
            return second;
        }
        self.hand_over_with_state(origin, room_id, version, checked)
            .await
            .unwrap_or(second)
    }

    /// Hands over an event whose prev_events cannot be had with the state
    /// before it as `origin` holds it (`/state_ids`); `None` when that state
    /// cannot be had either.
    async fn hand_over_with_state(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        checked: &myelin_federation::CheckedPdu,
    ) -> Option<Result<(), MatrixError>> {
        let remote = RemoteRoom {
            client: &self.federation,
            keys: &self.server_keys,
            server: origin,
            room_id,
            version,
        };
        match remote
            .state_before(self.store.as_ref(), &checked.event_id)
            .await
        {
            Ok(Some(state_ids)) => Some(
                self.hand_over(origin, room_id, checked, Some(state_ids))
                    .await,
            ),
            Ok(None) => None,
            Err(error) => {
                tracing::info!(%origin, %room_id, %error, "could not fetch the state before an event");
                None
            }
        }
    }

    /// Hands a checked PDU to its room's writer.
    async fn hand_over(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        checked: &myelin_federation::CheckedPdu,
        state_ids: Option<Vec<String>>,
    ) -> Result<(), MatrixError> {
        let remote = RemoteEvent {
            room_id: room_id.to_owned(),
            event_id: checked.event_id.clone(),
            pdu_json: checked.json.clone(),
            origin: origin.to_string(),
            kind: RemoteEventKind::Transaction,
            state_ids,
        };
        myelin_process::request_room_input(
            self.bus.as_ref(),
            Partition::of_room(room_id),
            RoomInput::Remote(remote),
        )
        .await
        .map(|_| ())
    }

    /// The fetched events whose prev_events are neither fetched nor in the
    /// room's timeline: where the next round walks back from.
    async fn still_missing(
        &self,
        fetched: &BTreeMap<String, myelin_federation::CheckedPdu>,
    ) -> Result<Vec<OwnedEventId>, myelin_store::StoreError> {
        let prevs: BTreeSet<String> = fetched
            .values()
            .flat_map(|checked| checked.pdu.prev_events.iter().map(ToString::to_string))
            .filter(|prev| !fetched.contains_key(prev))
            .collect();
        let prevs: Vec<String> = prevs.into_iter().collect();
        let here: HashSet<String> = self.store.timeline_ids(&prevs).await?.into_iter().collect();
        Ok(fetched
            .values()
            .filter(|checked| {
                checked.pdu.prev_events.iter().any(|prev| {
                    let prev = prev.as_str();
                    !fetched.contains_key(prev) && !here.contains(prev)
                })
            })
            .filter_map(|checked| OwnedEventId::try_from(checked.event_id.as_str()).ok())
            .take(GAP_ROUND_FROM)
            .collect())
    }

    /// Asks `origin` for the events between the room's forward extremities
    /// and `event_id` (`/get_missing_events`), round after round back from
    /// the oldest fetched, until they join what is here or [`GAP_LIMIT`] are
    /// fetched, and hands them over, oldest first; what cannot be used is
    /// left out. A gap filled here is in the timeline in order, with no
    /// hole for paging back to fall through.
    async fn fill_gap(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        version: &myelin_room::RoomVersion,
        event_id: &str,
        depth: i64,
        gap_budget: &mut usize,
    ) {
        let Ok(room) = ruma::OwnedRoomId::try_from(room_id) else {
            return;
        };
        let earliest: Vec<OwnedEventId> = match self.store.forward_extremities(room_id).await {
            Ok(extremities) => extremities
                .into_iter()
                .filter_map(|(id, _)| OwnedEventId::try_from(id).ok())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read a room's extremities");
                return;
            }
        };
        let Ok(latest) = OwnedEventId::try_from(event_id) else {
            return;
        };
        let min_depth =
            ruma::UInt::try_from(depth.saturating_sub(GAP_LIMIT as i64).max(0)).unwrap_or_default();
        let mut fetched: BTreeMap<String, myelin_federation::CheckedPdu> = BTreeMap::new();
        let mut from = vec![latest];
        let most = (*gap_budget).min(GAP_LIMIT);
        while !from.is_empty() && fetched.len() < most {
            let mut request =
                get_missing_events::v1::Request::new(room.clone(), earliest.clone(), from);
            request.limit = ruma::UInt::from(GAP_ROUND);
            request.min_depth = min_depth;
            let missing = match self.federation.send(origin, request).await {
                Ok(answer) => answer.events,
                Err(error) => {
                    tracing::info!(%origin, %room_id, %error, "could not fetch missing events");
                    break;
                }
            };
            let before = fetched.len();
            let room_left = usize::from(GAP_ROUND).min(most - before);
            for raw in missing.iter().take(room_left) {
                let Ok(object) = parse_pdu(raw) else { continue };
                match check_pdu(&self.server_keys, version, object).await {
                    Ok(checked) if checked.room_id == room_id => {
                        fetched.insert(checked.event_id.clone(), checked);
                    }
                    _ => {}
                }
            }
            if fetched.len() == before {
                break;
            }
            from = match self.still_missing(&fetched).await {
                Ok(from) => from,
                Err(error) => {
                    tracing::warn!(%error, "cannot read which events are here");
                    break;
                }
            };
        }
        *gap_budget -= fetched.len().min(*gap_budget);
        let mut checked_events: Vec<myelin_federation::CheckedPdu> =
            fetched.into_values().collect();
        checked_events.sort_by_key(|checked| checked.pdu.depth);
        // The oldest fetched may still miss its own prevs (a longer gap):
        // its state is asked for once, and the rest build on it.
        let mut state_asked = false;
        for checked in &checked_events {
            let mut outcome = self.hand_over(origin, room_id, checked, None).await;
            if matches!(&outcome, Err(error) if error.errcode == MISSING_PREV_EVENTS)
                && !state_asked
            {
                state_asked = true;
                if let Some(with_state) = self
                    .hand_over_with_state(origin, room_id, version, checked)
                    .await
                {
                    outcome = with_state;
                }
            }
            if let Err(error) = outcome {
                tracing::info!(event_id = %checked.event_id, error = %error.error, "a missing event was not taken");
            }
        }
    }
}
