//! Every endpoint this role serves. Handlers are named `async fn`s taking
//! ruma's request and returning ruma's response, one line each here; the
//! older modules still register a group of closures through `routes`.

use std::sync::Arc;

use myelin_http::Router;

use crate::ClientApi;
use crate::handlers::{
    account, admin, alias, device, discovery, filter, membership, message, profile, room, session,
    state, upgrade, user_admin,
};

pub(crate) fn add(api: &Arc<ClientApi>, router: &mut Router) {
    discovery::routes(api, router);
    session::routes(api, router);
    account::routes(api, router);
    admin::routes(api, router);
    router.handle(api, user_admin::get_admin);
    router.handle(api, user_admin::set_admin);
    room::routes(api, router);
    membership::routes(api, router);
    message::routes(api, router);
    state::routes(api, router);
    router.handle(api, filter::create);
    router.handle(api, filter::get);
    device::routes(api, router);
    profile::routes(api, router);
    alias::routes(api, router);
    upgrade::routes(api, router);
}
