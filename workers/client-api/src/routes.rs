//! Every endpoint this role serves. Handlers are named `async fn`s taking
//! ruma's request and returning ruma's response, one line each here; the
//! older modules still register a group of closures through `routes`.

use std::sync::Arc;

use myelin_http::Router;

use crate::ClientApi;
use crate::handlers::{
    account, account_data, admin, alias, device, discovery, filter, membership, message,
    notifications, profile, push_rules, receipts, relations, room, search, session, state, typing,
    upgrade,
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
    router.handle(api, account_data::set_global);
    router.handle(api, account_data::get_global);
    router.handle(api, account_data::set_room);
    router.handle(api, account_data::get_room);
    router.handle(api, account_data::get_room_tags);
    router.handle(api, account_data::put_room_tag);
    router.handle(api, account_data::delete_room_tag);
    router.handle(api, receipts::create);
    router.handle(api, receipts::set_markers);
    router.handle(api, typing::set);
    router.handle(api, push_rules::get_all);
    router.handle(api, notifications::list);
    router.handle(api, push_rules::get_global);
    router.handle(api, push_rules::get_rule);
    router.handle(api, push_rules::set_rule);
    router.handle(api, push_rules::delete_rule);
    router.handle(api, push_rules::get_enabled);
    router.handle(api, push_rules::set_enabled);
    router.handle(api, push_rules::get_actions);
    router.handle(api, push_rules::set_actions);
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
