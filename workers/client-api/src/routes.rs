//! Every endpoint this role serves. Handlers are named `async fn`s taking
//! ruma's request and returning ruma's response, one line each here; the
//! older modules still register a group of closures through `routes`.

use std::sync::Arc;

use myelin_http::Router;

use crate::ClientApi;
use crate::handlers::{
    account, admin, alias, device, directory, discovery, filter, membership, message, profile,
    room, session, state, upgrade, user_directory,
};

pub(crate) fn add(api: &Arc<ClientApi>, router: &mut Router) {
    router.handle(api, discovery::versions);
    router.handle(api, discovery::capabilities);
    session::routes(api, router);
    account::routes(api, router);
    admin::routes(api, router);
    room::routes(api, router);
    membership::routes(api, router);
    message::routes(api, router);
    state::routes(api, router);
    router.handle(api, filter::create);
    router.handle(api, filter::get);
    router.handle(api, directory::get_public_rooms);
    router.handle(api, directory::search_public_rooms);
    router.handle(api, directory::get_visibility);
    router.handle(api, directory::set_visibility);
    router.handle(api, user_directory::search);
    device::routes(api, router);
    profile::routes(api, router);
    alias::routes(api, router);
    upgrade::routes(api, router);
}
