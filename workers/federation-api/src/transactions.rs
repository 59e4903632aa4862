//! `PUT /send/{txnId}`: another server's transaction of PDUs and EDUs.
//!
//! Each PDU is checked (format, signatures, content hash) and handed to its
//! room's writer, which authorizes and stores it before the answer goes
//! out. One transaction per origin at a time, across every replica (a turn
//! kept in the store); a retry is safe because the writer knows events by
//! their ID.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use myelin_bus::messages::{RemoteEvent, RemoteEventKind, RemoteEvents, RoomInput};
use myelin_federation::{check_pdu, parse_pdu};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::{AnsweredTransaction, InboundTurn};
use myelin_types::Partition;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::{CanonicalJsonValue, OwnedEventId, OwnedServerName};
use serde_json::value::RawValue;

use crate::FederationApi;
use crate::gaps::GapBudget;
use crate::rooms;

/// The refusal of an event whose prev_events are not known here.
pub(crate) const MISSING_PREV_EVENTS: &str = "M_MISSING_PREV_EVENTS";

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
    // The rooms the PDUs name are read while the turn is claimed: both are
    // round trips to the store, and neither needs the other.
    let mut rooms = RoomsSeen::default();
    let (claimed, ()) = tokio::join!(
        api.store.claim_inbound_turn(
            origin.as_str(),
            &holder,
            request.transaction_id.as_str(),
            now,
            now + TURN_LAPSES_MS,
        ),
        rooms.read_each(&api, rooms_named(&request.pdus), &origin),
    );
    let answered_before = match claimed? {
        InboundTurn::Busy => return Err(busy()),
        InboundTurn::Taken(answered_before) => answered_before,
    };
    // Given back when done, or when dropped if the sender hangs up first.
    let store_turn = StoreTurn {
        store: Arc::clone(&api.store),
        origin: origin.to_string(),
        holder,
        txn_id: request.transaction_id.to_string(),
        given_back: false,
    };
    // A retry of a transaction answered before gets that answer again;
    // nothing in it is applied twice.
    if let Some(results) = answered_before.and_then(|answer| results_from_json(&answer)) {
        store_turn.give_back(None).await;
        return Ok(send_transaction_message::v1::Response::new(results));
    }
    let mut results = Results::new();
    let processing = async {
        // What one transaction may have fetched to close gaps, all told.
        let mut gap_budget = GapBudget::default();
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
    let answered = AnsweredTransaction {
        txn_id: request.transaction_id.to_string(),
        answer: results_to_json(&results),
        answered_at: myelin_types::now_millis(),
    };
    store_turn.give_back(Some(&answered)).await;
    Ok(send_transaction_message::v1::Response::new(results))
}

/// A transaction's answer as kept: each PDU's error, or `null`.
type Results = BTreeMap<OwnedEventId, Result<(), String>>;

fn results_to_json(results: &Results) -> String {
    let kept: BTreeMap<&str, Option<&str>> = results
        .iter()
        .map(|(event_id, result)| (event_id.as_str(), result.as_ref().err().map(String::as_str)))
        .collect();
    serde_json::to_string(&kept).unwrap_or_else(|_| "{}".to_owned())
}

/// `None` when what was kept cannot be read: the transaction is then
/// processed again, which the writer makes safe for its PDUs.
fn results_from_json(kept: &str) -> Option<Results> {
    let kept: BTreeMap<OwnedEventId, Option<String>> = serde_json::from_str(kept).ok()?;
    Some(
        kept.into_iter()
            .map(|(event_id, error)| (event_id, error.map_or(Ok(()), Err)))
            .collect(),
    )
}

/// An origin's turn held in the store: given back before the answer goes
/// out, or when dropped unanswered.
struct StoreTurn {
    store: Arc<dyn myelin_store::Store>,
    origin: String,
    holder: String,
    txn_id: String,
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
                .claim_inbound_turn(
                    &self.origin,
                    &self.holder,
                    &self.txn_id,
                    now,
                    now + TURN_LAPSES_MS,
                )
                .await
            {
                Ok(InboundTurn::Taken(_)) => {}
                // The writer dedupes events: another replica taking the
                // origin's next transaction stores nothing twice.
                Ok(InboundTurn::Busy) => {
                    tracing::warn!(origin = %self.origin, "an inbound turn lapsed while its transaction ran");
                }
                Err(error) => {
                    tracing::warn!(origin = %self.origin, %error, "could not renew an inbound turn");
                }
            }
        }
    }

    /// Gives the turn back, remembering the transaction it answered.
    async fn give_back(mut self, answered: Option<&AnsweredTransaction>) {
        self.given_back = true;
        if let Err(error) = self
            .store
            .release_inbound_turn(&self.origin, &self.holder, answered)
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
            if let Err(error) = store.release_inbound_turn(&origin, &holder, None).await {
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
        api: &FederationApi,
        room_id: &str,
        origin: &OwnedServerName,
    ) -> Option<SeenRoom> {
        if let Some(seen) = self.0.get(room_id) {
            return seen.clone();
        }
        let store = api.store.as_ref();
        let seen = match api.room_versions.of(store, room_id).await {
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

    /// Reads each room not read yet.
    async fn read_each(
        &mut self,
        api: &FederationApi,
        room_ids: Vec<String>,
        origin: &OwnedServerName,
    ) {
        for room_id in room_ids {
            self.read(api, &room_id, origin).await;
        }
    }

    fn forget(&mut self, room_id: &str) {
        self.0.remove(room_id);
    }
}

/// The rooms a transaction's PDUs name, each once, at most as many as a
/// transaction may carry PDUs; what cannot be read is checked later.
fn rooms_named(pdus: &[Box<RawValue>]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct RoomOf {
        room_id: String,
    }
    let mut named: Vec<String> = Vec::new();
    for raw in pdus.iter().take(MAX_PDUS) {
        if let Ok(RoomOf { room_id }) = serde_json::from_str::<RoomOf>(raw.get())
            && !named.contains(&room_id)
        {
            named.push(room_id);
        }
    }
    named
}

/// The version of each room this replica has read: a room's never changes.
#[derive(Default)]
pub(crate) struct RoomVersions(Mutex<HashMap<String, myelin_room::RoomVersion>>);

/// The most room versions remembered; all are forgotten when it fills.
const MAX_VERSIONS_KNOWN: usize = 10_000;

impl RoomVersions {
    async fn of(
        &self,
        store: &dyn myelin_store::Store,
        room_id: &str,
    ) -> Result<myelin_room::RoomVersion, MatrixError> {
        if let Some(version) = self.lock().get(room_id) {
            return Ok(version.clone());
        }
        let version = rooms::room_version(store, room_id).await?;
        let mut known = self.lock();
        if known.len() >= MAX_VERSIONS_KNOWN {
            known.clear();
        }
        known.insert(room_id.to_owned(), version.clone());
        Ok(version)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, myelin_room::RoomVersion>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long a replica's turn at an origin's transactions lasts if it is
/// never given back (the replica died while processing).
const TURN_LAPSES_MS: i64 = 120_000;
/// How often a turn is renewed while its transaction runs.
const TURN_RENEWED_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl FederationApi {
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
        let SeenRoom { version, acl } = rooms.read(self, &room_id, origin).await?;
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
        gap_budget: &mut GapBudget,
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

    /// Hands one checked event (its ID and canonical JSON) to its room's
    /// writer.
    pub(crate) async fn hand_over(
        &self,
        origin: &OwnedServerName,
        room_id: &str,
        (event_id, json): (&str, &str),
        state_ids: Option<Vec<String>>,
    ) -> Result<(), MatrixError> {
        let remote = RemoteEvent {
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            pdu_json: json.to_owned(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rooms_named_are_each_listed_once_in_order() {
        let pdus: Vec<Box<RawValue>> = [
            r#"{"room_id":"!b:x","type":"m.room.message"}"#,
            r#"{"room_id":"!a:x"}"#,
            r#"{"room_id":"!b:x"}"#,
            r#"{"type":"no room"}"#,
            r#"{"room_id":5}"#,
            "[1]",
        ]
        .into_iter()
        .map(|json| RawValue::from_string(json.to_owned()).expect("JSON"))
        .collect();
        assert_eq!(rooms_named(&pdus), ["!b:x", "!a:x"]);
    }

    #[test]
    fn a_kept_answer_reads_back_as_it_was_given() {
        let mut results = Results::new();
        results.insert(OwnedEventId::try_from("$taken").expect("an ID"), Ok(()));
        results.insert(
            OwnedEventId::try_from("$refused").expect("an ID"),
            Err("M_FORBIDDEN: not allowed".to_owned()),
        );
        let kept = results_to_json(&results);
        assert_eq!(results_from_json(&kept), Some(results));
        assert_eq!(results_from_json("{}"), Some(Results::new()));
        assert_eq!(results_from_json("not json"), None);
    }
}
