//! What an attacker or a careless client tries: reading what they may not
//! see, holding the server's connections, forging headers, and writes that
//! must be refused whole. Each new endpoint gets its cross-user and
//! bad-input cases here.

mod admin;
mod directories;
mod edge;
mod endpoints;
pub(crate) mod federation;
mod integrity;
mod keys;
mod per_user;
mod privacy;
mod pushers;
mod relations;
mod sessions;
