//! Handlers, one module per ruma API module.

pub(crate) mod account;
pub(crate) mod account_data;
pub mod admin;
pub(crate) mod alias;
pub(crate) mod device;
pub(crate) mod discovery;
pub(crate) mod filter;
pub(crate) mod membership;
pub(crate) mod message;
pub(crate) mod notifications;
pub(crate) mod profile;
pub(crate) mod push_rules;
pub(crate) mod receipts;
pub(crate) mod relations;
pub(crate) mod room;
pub(crate) mod search;
pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod typing;
pub(crate) mod upgrade;
