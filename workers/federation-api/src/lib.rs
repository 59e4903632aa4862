#![doc = include_str!("../README.md")]

mod device_lists;
mod edus;
mod events;
mod gaps;
mod history;
mod keys;
mod membership;
mod query;
mod rooms;
mod seen;
mod space;
mod transactions;
mod user_keys;

use std::sync::Arc;

use myelin_config::Config;
use myelin_federation::{KeyRing, XMatrixVerifier};
use myelin_http::Router;
use myelin_process::{Deps, Role};
use myelin_room::ServerKey;
use myelin_store::Store;

pub struct FederationApi {
    config: Arc<Config>,
    bus: Arc<dyn myelin_bus::Bus>,
    /// Requests to other servers (missing events).
    federation: Arc<myelin_federation::FederationClient>,
    /// Origins whose transaction this replica is processing.
    in_flight: transactions::InFlight,
    room_versions: transactions::RoomVersions,
    /// This process among the replicas, for the inbound turns it holds.
    instance_id: String,
    /// The servers lately announced as up.
    seen: Arc<seen::SeenServers>,
    /// Turns at walking back through a gap (see `gaps`).
    gap_walks: tokio::sync::Semaphore,
    /// Other servers' users' device lists being fetched whole.
    resyncs: device_lists::Resyncs,
    store: Arc<dyn Store>,
    server_key: Arc<ServerKey>,
    server_keys: Arc<KeyRing>,
}

pub fn role(deps: &Deps) -> Arc<FederationApi> {
    Arc::new(FederationApi {
        config: Arc::clone(&deps.config),
        bus: Arc::clone(&deps.bus),
        federation: Arc::clone(&deps.federation),
        in_flight: Default::default(),
        room_versions: Default::default(),
        instance_id: ruma::TransactionId::new().to_string(),
        seen: Arc::new(seen::SeenServers::new(Arc::clone(&deps.bus))),
        gap_walks: tokio::sync::Semaphore::new(gaps::GAP_WALKS_AT_ONCE),
        resyncs: Default::default(),
        store: Arc::clone(&deps.store),
        server_key: Arc::clone(&deps.server_key),
        server_keys: Arc::clone(&deps.server_keys),
    })
}

impl Role for FederationApi {
    fn name(&self) -> &'static str {
        "federation-api"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        router.set_server_verifier(Arc::new(seen::NotingVerifier {
            signatures: XMatrixVerifier::new(
                self.server_keys_owner(),
                Arc::clone(&self.config),
                Arc::clone(&self.server_keys),
            ),
            seen: Arc::clone(&self.seen),
        }));
        router
            .handle(&self, keys::own_keys)
            .handle(&self, keys::notary_one)
            .handle(&self, keys::notary_batch)
            .handle(&self, query::version)
            .handle(&self, query::profile)
            .handle(&self, query::directory)
            .handle(&self, query::public_rooms)
            .handle(&self, query::public_rooms_filtered)
            .handle(&self, membership::make_join)
            .handle(&self, membership::send_join)
            .handle(&self, membership::make_leave)
            .handle(&self, membership::make_knock)
            .handle(&self, membership::send_knock)
            .handle(&self, membership::send_leave)
            .handle(&self, membership::invite)
            .handle(&self, transactions::send)
            .handle(&self, events::event)
            .handle(&self, events::state_ids)
            .handle(&self, events::state)
            .handle(&self, history::backfill)
            .handle(&self, history::missing_events)
            .handle(&self, space::hierarchy)
            .handle(&self, user_keys::query)
            .handle(&self, user_keys::claim)
            .handle(&self, user_keys::devices);
    }
}

impl FederationApi {
    fn is_local(&self, user_id: &ruma::UserId) -> bool {
        user_id.server_name().as_str() == self.config.server_name
    }

    /// This server's name as ruma types it (checked when the process started).
    fn server_keys_owner(&self) -> &ruma::ServerName {
        self.server_keys.server_name()
    }
}
