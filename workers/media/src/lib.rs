#![doc = include_str!("../README.md")]

mod content;
mod federation;
mod files;
mod handlers;
mod headers;
mod media_ids;
mod preview;
mod query;
mod thumbnailer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use myelin_http::Router;
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::MediaStore;

use crate::files::MediaFiles;

/// Synapse's default when `media_store_path` is not set: beside the
/// working directory, as the SQLite database is.
const DEFAULT_MEDIA_STORE: &str = "media_store";
/// Fetches of other servers' media at once, per process.
const REMOTE_FETCHES: usize = 4;
/// How often reservations from `/create` that were never used are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// How often the media directory is swept for files no row names.
const SWEEP_INTERVAL: Duration = Duration::from_secs(6 * 60 * 60);
/// How old such a file must be: an upload's row names its file moments
/// after the file is written.
const SWEEP_GRACE: Duration = Duration::from_secs(60 * 60);

pub struct Media {
    media_store: Arc<dyn MediaStore>,
    /// Fetches other servers' media.
    federation: Arc<myelin_federation::FederationClient>,
    /// Checks other servers' signatures on the federation media routes.
    server_keys: Arc<myelin_federation::KeyRing>,
    config: Arc<myelin_config::Config>,
    files: MediaFiles,
    server_name: String,
    max_upload_bytes: u64,
    /// `media_retention.remote_media_lifetime`, in ms.
    remote_media_lifetime_ms: Option<u64>,
    /// Whether new media is marked to be served only with an access token.
    authenticated_media: bool,
    /// URL previews, when the config turns them on.
    previews: Option<preview::Previews>,
    /// Permits for thumbnail decoding, one per core.
    thumbnailing: tokio::sync::Semaphore,
    /// Permits for fetching other servers' media: each may hold a file of
    /// up to `max_upload_size` in memory.
    remote_fetches: tokio::sync::Semaphore,
}

pub fn role(deps: &Deps) -> Arc<Media> {
    let root = deps
        .config
        .media_store_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MEDIA_STORE));
    Arc::new(Media {
        media_store: deps.store.clone(),
        federation: Arc::clone(&deps.federation),
        server_keys: Arc::clone(&deps.server_keys),
        config: Arc::clone(&deps.config),
        files: MediaFiles::new(root),
        server_name: deps.config.server_name.clone(),
        max_upload_bytes: deps.config.max_upload_bytes(),
        remote_media_lifetime_ms: deps.config.remote_media_lifetime_ms(),
        authenticated_media: deps.config.enable_authenticated_media,
        previews: preview::Previews::from_config(&deps.config),
        thumbnailing: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, usize::from),
        ),
        remote_fetches: tokio::sync::Semaphore::new(REMOTE_FETCHES),
    })
}

#[async_trait]
impl Role for Media {
    fn name(&self) -> &'static str {
        "media"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        handlers::routes(&self, router);
        router.set_server_verifier(Arc::new(myelin_federation::XMatrixVerifier::new(
            self.server_keys.server_name(),
            Arc::clone(&self.config),
            Arc::clone(&self.server_keys),
        )));
        let media = Arc::clone(&self);
        router
            .route_streamed::<ruma::api::federation::authenticated_media::get_content::v1::Request, _, _>(
                move |context, request| federation::download(Arc::clone(&media), context, request),
            )
            .handle(&self, federation::thumbnail);
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) -> anyhow::Result<()> {
        // The first sweep comes a random while after start, so replicas
        // started together do not all walk the directory at once.
        let first_sweep = Duration::from_secs(60 + rand::random::<u64>() % SWEEP_GRACE.as_secs());
        let mut next_sweep = tokio::time::Instant::now() + first_sweep;
        loop {
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep += SWEEP_INTERVAL;
                self.sweep_unnamed_files().await;
            }
            match self
                .media_store
                .purge_expired_pending_media(content::now_ms())
                .await
            {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "forgot unused media IDs from /create"),
                Err(error) => tracing::warn!(%error, "cannot purge unused media IDs"),
            }
            self.expire_remote_media().await;
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                () = tokio::time::sleep(PURGE_INTERVAL) => {}
            }
        }
    }

    async fn ready(&self) -> Result<(), String> {
        self.files.check_writable().await.map_err(|error| {
            format!(
                "media store {} is not writable: {error}",
                self.files.root().display()
            )
        })
    }
}

impl Media {
    /// Forgets other servers' media kept longer than
    /// `media_retention.remote_media_lifetime`; the sweep removes the files.
    async fn expire_remote_media(&self) {
        let Some(lifetime) = self.remote_media_lifetime_ms else {
            return;
        };
        let cutoff = content::now_ms().saturating_sub(i64::try_from(lifetime).unwrap_or(i64::MAX));
        match self.media_store.forget_remote_media(cutoff).await {
            Ok(0) => {}
            Ok(forgotten) => {
                tracing::info!(forgotten, "forgot other servers' media past its lifetime");
            }
            Err(error) => tracing::warn!(%error, "cannot expire other servers' media"),
        }
    }

    async fn sweep_unnamed_files(&self) {
        let store = Arc::clone(&self.media_store);
        let swept = self
            .files
            .sweep_unnamed(SWEEP_GRACE, |sha256| {
                let store = Arc::clone(&store);
                async move { store.blob_in_use(&sha256).await }
            })
            .await;
        match swept {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed media files no upload names"),
            Err(error) => tracing::warn!(%error, "cannot sweep the media directory"),
        }
    }
}
