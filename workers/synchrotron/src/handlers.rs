//! Handlers, one module per ruma API module.

mod sync_events;

use std::sync::Arc;

use myelin_http::Router;

use crate::Synchrotron;

pub(crate) fn routes(sync: &Arc<Synchrotron>, router: &mut Router) {
    sync_events::routes(sync, router);
}
