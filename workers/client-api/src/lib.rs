#![doc = include_str!("../README.md")]

mod access;
pub(crate) mod handlers;
mod identifier_limits;
mod passwords;
mod room_writer;
mod routes;
mod signed_json;
mod uia;
mod user_ids;

use std::sync::Arc;

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_config::Config;
use myelin_http::{RateLimiter, Router};
use myelin_process::{Deps, Role};
use myelin_store::Store;

pub use handlers::admin::RegistrationMac;
pub use passwords::hash_now as hash_password;

pub struct ClientApi {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    server_name: String,
    /// Requests to other servers (remote profiles, ...).
    federation: Arc<myelin_federation::FederationClient>,
    /// Other servers' signing keys, to check the events they hand over.
    server_keys: Arc<myelin_federation::KeyRing>,
    /// This server's key, to sign a join made by another server.
    server_key: Arc<myelin_room::ServerKey>,
    limits: Limits,
    /// When each user's activity last counted for their presence.
    activity: handlers::presence::ActivityGate,
    /// When each room's history was last asked of other servers.
    backfills: handlers::backfill::BackfillAttempts,
}

/// The `rc_*` buckets this role enforces.
struct Limits {
    message: RateLimiter,
    registration: RateLimiter,
    login_address: RateLimiter,
    login_account: RateLimiter,
    login_failures: RateLimiter,
    joins: RateLimiter,
}

pub fn role(deps: &Deps) -> Arc<ClientApi> {
    let rc = &deps.config.rate_limits;
    let bucket =
        |limit: &myelin_config::RateLimit| RateLimiter::new(limit.per_second, limit.burst_count);
    Arc::new(ClientApi {
        config: Arc::clone(&deps.config),
        store: Arc::clone(&deps.store),
        bus: Arc::clone(&deps.bus),
        server_name: deps.config.server_name.clone(),
        federation: Arc::clone(&deps.federation),
        server_keys: Arc::clone(&deps.server_keys),
        server_key: Arc::clone(&deps.server_key),
        activity: Default::default(),
        backfills: Default::default(),
        limits: Limits {
            message: bucket(&rc.rc_message),
            registration: bucket(&rc.rc_registration),
            login_address: bucket(&rc.rc_login.address),
            login_account: bucket(&rc.rc_login.account),
            login_failures: bucket(&rc.rc_login.failed_attempts),
            joins: bucket(&rc.rc_joins.local),
        },
    })
}

#[async_trait]
impl Role for ClientApi {
    fn name(&self) -> &'static str {
        "client-api"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        routes::add(&self, router);
    }
}
