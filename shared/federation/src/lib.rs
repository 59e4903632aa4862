//! Server-to-server plumbing shared by the federation roles and the
//! client-api: this server's key document, other servers' keys (fetched,
//! checked, kept), finding where a server is, signed requests out and
//! `X-Matrix` checks in.

mod client;
pub mod discovery;
pub mod history;
pub mod key_document;
mod keyring;
pub mod pdu_check;
pub mod remote_devices;
pub mod room_head;
pub mod server_acl;
pub mod user_keys;
mod verifier;

pub use client::{FederationClient, FederationError, OutgoingAuth};
pub use keyring::{KeyRing, NoKey};
pub use pdu_check::{CheckedPdu, PduRejected, check_pdu, parse_pdu};
pub use verifier::XMatrixVerifier;
