//! What a role is to the process that runs it.

use std::sync::Arc;

use async_trait::async_trait;
use myelin_http::Router;
use tokio::sync::watch;

/// Fires once when the process starts draining.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (sender, Shutdown(receiver))
    }

    pub async fn wait(&mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// A unit of the server that runs alone in its worker binary or beside the
/// others in `myelin`.
#[async_trait]
pub trait Role: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Adds the endpoints this role answers.
    fn routes(self: Arc<Self>, _router: &mut Router) {}

    /// Background work (bus consumers). Returns when `shutdown` fires.
    async fn run(self: Arc<Self>, mut shutdown: Shutdown) -> anyhow::Result<()> {
        shutdown.wait().await;
        Ok(())
    }

    /// Whether the role's own dependencies (partitions, consumers) are in place.
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}
