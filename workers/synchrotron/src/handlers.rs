//! Handlers, one named `async fn` per endpoint.

mod sync_events;

use std::sync::Arc;

use myelin_http::Router;

use crate::Synchrotron;

pub(crate) fn routes(sync: &Arc<Synchrotron>, router: &mut Router) {
    router.handle(sync, sync_events::sync);
}
