//! Every endpoint this role serves. Handlers are named `async fn`s taking
//! ruma's request and returning ruma's response, one line each here; the
//! older modules still register a group of closures through `routes`.

use std::sync::Arc;

use myelin_http::Router;

use crate::ClientApi;
use crate::handlers::{
    account, admin, alias, device, discovery, filter, membership, message, profile, relations,
    room, search, session, state, upgrade,
};

pub(crate) fn add(api: &Arc<ClientApi>, router: &mut Router) {
    discovery::routes(api, router);
    session::routes(api, router);
    account::routes(api, router);
    admin::routes(api, router);
    room::routes(api, router);
    membership::routes(api, router);
    message::routes(api, router);
    state::routes(api, router);
    router.handle(api, filter::create);
    router.handle(api, filter::get);
    router.handle(api, relations::relating);
    router.handle(api, relations::relating_with_rel_type);
    router.handle(api, relations::relating_with_rel_type_and_event_type);
    router.handle(api, relations::threads);
    router.handle(api, search::search);
    device::routes(api, router);
    profile::routes(api, router);
    alias::routes(api, router);
    upgrade::routes(api, router);
}
