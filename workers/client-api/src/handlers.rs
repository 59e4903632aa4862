//! Handlers, one module per ruma API module.

pub(crate) mod account;
pub mod admin;
pub(crate) mod alias;
pub(crate) mod device;
pub(crate) mod discovery;
pub(crate) mod filter;
pub(crate) mod membership;
pub(crate) mod message;
pub(crate) mod profile;
pub(crate) mod room;
pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod upgrade;
pub(crate) mod user_admin;
