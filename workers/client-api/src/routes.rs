//! Every endpoint this role serves, one group per ruma module.

use std::sync::Arc;

use myelin_http::Router;

use crate::ClientApi;
use crate::handlers::{
    account, admin, discovery, filter, membership, message, room, session, state,
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
    filter::routes(api, router);
}
