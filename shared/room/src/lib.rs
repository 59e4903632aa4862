//! Room logic on top of ruma: room versions, building a spec-conformant PDU
//! (prev/auth events, depth, content hash, signature, reference-hash event
//! ID), the authorization rules, redaction, and the client event format.
//!
//! Invariant: hashing, signing, canonical JSON and the auth rules are ruma's
//! (`ruma::signatures`, `ruma::state_res`, `ruma::canonical_json`); this crate
//! only arranges the inputs. Maps are `BTreeMap` so output is deterministic.

mod aggregations;
mod auth;
mod build;
mod client_format;
mod compose;
pub mod directory;
mod filter;
mod keys;
mod pdu;
pub mod presence;
pub mod push;
mod redact;
mod resolve;
pub mod space;
mod versions;
mod visibility;

pub use aggregations::{MAX_BUNDLED_REFERENCES, Viewer, bundle_aggregations};
pub use auth::{
    AuthError, RoomState, auth_event_ids, authorize, authorize_citing, authorized_by_auth_events,
    state_from_pdus,
};
pub use build::{
    BuildError, BuiltPdu, EventRef, MAX_DEPTH, MAX_KEY_BYTES, PduInput, build_pdu,
    explicit_event_id, next_depth, reference_hash_of,
};
pub use client_format::{
    INVITE_STATE_TYPES, client_event, stored_client_event, stripped_state_event,
};
pub use compose::{
    ComposeError, MAX_PREV_EVENTS, NewEvent, RoomHead, cite_deepest, compose_event, event_ref,
    event_template,
};
pub use filter::{EventFilter, SyncFilter};
pub use keys::ServerKey;
pub use pdu::{Pdu, PduParseError, content_text};
pub use redact::prune_pdu;
pub use resolve::{EventPool, resolve_state};
pub use versions::{DEFAULT_ROOM_VERSION, RoomVersion, STABLE_ROOM_VERSIONS};
pub use visibility::HistoryView;
