//! Every endpoint this role serves. Handlers are named `async fn`s taking
//! ruma's request and returning ruma's response, one line each here; the
//! older modules still register a group of closures through `routes`.

use std::sync::Arc;

use myelin_http::Router;
use ruma::api::client::directory::get_public_rooms;
use ruma::api::client::keys::upload_signatures;
use ruma::api::client::voip::get_turn_server_info;

use crate::ClientApi;
use crate::handlers::{
    account, account_data, admin, alias, cross_signing, device, directory, discovery, filter,
    key_backup, keys, knock, membership, message, notifications, openid, presence, profile,
    push_rules, pushers, receipts, relations, report, room, search, session, space, state,
    threepid, timestamp, to_device, typing, upgrade, user_admin, user_directory, voip,
};

pub(crate) fn add(api: &Arc<ClientApi>, router: &mut Router) {
    router.handle(api, discovery::versions);
    router.handle(api, discovery::capabilities);
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
    router.handle(api, keys::upload);
    router.handle(api, keys::query);
    router.handle(api, keys::claim);
    router.handle(api, keys::changes);
    router.handle(api, cross_signing::upload_signing_keys);
    router.handle(api, key_backup::create_version);
    router.handle(api, key_backup::latest_version);
    router.handle(api, key_backup::version);
    router.handle(api, key_backup::update_version);
    router.handle(api, key_backup::delete_version);
    router.handle(api, key_backup::put_keys);
    router.handle(api, key_backup::put_room_keys);
    router.handle(api, key_backup::put_session_key);
    router.handle(api, key_backup::get_keys);
    router.handle(api, key_backup::get_room_keys);
    router.handle(api, key_backup::get_session_key);
    router.handle(api, key_backup::delete_keys);
    router.handle(api, key_backup::delete_room_keys);
    router.handle(api, key_backup::delete_session_key);
    let signatures_api = Arc::clone(api);
    router.route_json::<upload_signatures::v3::Request, _, _>(move |context, request| {
        cross_signing::upload_signatures(Arc::clone(&signatures_api), context, request)
    });
    router.handle(api, to_device::send);
    router.handle(api, push_rules::get_all);
    router.handle(api, pushers::list);
    router.handle(api, pushers::set);
    router.handle(api, notifications::list);
    router.handle(api, presence::set);
    router.handle(api, presence::get);
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
    router
        .handle(api, directory::get_public_rooms)
        .accept_token::<get_public_rooms::v3::Request>();
    router.handle(api, directory::search_public_rooms);
    router.handle(api, directory::get_visibility);
    router.handle(api, directory::set_visibility);
    router.handle(api, user_directory::search);
    router.handle(api, report::report_event);
    router.handle(api, report::report_room);
    report::admin_routes(api, router);
    router.handle(api, timestamp::event_at);
    router.handle(api, openid::request_token);
    router.handle(api, openid::userinfo);
    router.handle(api, threepid::list);
    router.handle(api, space::get);
    router.handle(api, knock::knock);
    // Answers `{}` when TURN is not configured, which ruma's type cannot say.
    let turn_api = Arc::clone(api);
    router.route_json::<get_turn_server_info::v3::Request, _, _>(move |context, request| {
        voip::turn_server(Arc::clone(&turn_api), context, request)
    });
    device::routes(api, router);
    profile::routes(api, router);
    alias::routes(api, router);
    upgrade::routes(api, router);
}
