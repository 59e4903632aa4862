//! Every signed request from another server tells this server's senders
//! that it is up, so a queue backing off from it sends at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use myelin_federation::XMatrixVerifier;
use myelin_http::{MatrixError, ServerRequestVerifier};
use ruma::{OwnedServerName, ServerName};

/// A server is announced as seen at most this often per replica.
const SEEN_EVERY: Duration = Duration::from_secs(10);
/// The most servers remembered; all are forgotten when it fills.
const MAX_REMEMBERED: usize = 10_000;

/// When each server was last announced as seen by this replica.
pub(crate) struct SeenServers {
    bus: Arc<dyn myelin_bus::Bus>,
    announced_at: Mutex<HashMap<OwnedServerName, Instant>>,
}

impl SeenServers {
    pub(crate) fn new(bus: Arc<dyn myelin_bus::Bus>) -> Self {
        SeenServers {
            bus,
            announced_at: Mutex::default(),
        }
    }

    /// Tells the senders `server` is up, unless told lately.
    fn note(&self, server: &ServerName) {
        {
            let mut announced = self
                .announced_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if announced
                .get(server)
                .is_some_and(|at| now.duration_since(*at) < SEEN_EVERY)
            {
                return;
            }
            if announced.len() >= MAX_REMEMBERED {
                announced.clear();
            }
            announced.insert(server.to_owned(), now);
        }
        let bus = Arc::clone(&self.bus);
        let message = myelin_bus::topics::ServerSeen {
            server_name: server.to_string(),
        };
        tokio::spawn(async move {
            if let Err(error) = myelin_bus::topics::SERVER_SEEN
                .announce(bus.as_ref(), &message)
                .await
            {
                tracing::debug!(%error, "could not announce a server as seen");
            }
        });
    }
}

/// Checks `X-Matrix` signatures, and notes each server that passes as seen.
pub(crate) struct NotingVerifier {
    pub(crate) signatures: XMatrixVerifier,
    pub(crate) seen: Arc<SeenServers>,
}

impl ServerRequestVerifier for NotingVerifier {
    fn verify<'a>(
        &'a self,
        request: &'a http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<OwnedServerName, MatrixError>> {
        Box::pin(async move {
            let origin = self.signatures.verify(request).await?;
            self.seen.note(&origin);
            Ok(origin)
        })
    }
}
