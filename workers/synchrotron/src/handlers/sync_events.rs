//! `GET /_matrix/client/v3/sync`: initial and incremental sync, long-polling
//! until one of the streams has something for the user or the timeout passes.

use std::sync::Arc;
use std::time::Duration;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::SyncFilter;
use myelin_types::SyncToken;
use ruma::api::client::sync::sync_events;

use crate::Synchrotron;
use crate::streams::SyncRequest;

/// Longest long-poll we hold, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// A long-poll woken by news that comes in bursts (an encrypting client's
/// room keys by to-device, then its message) waits this long before it
/// reads, so the burst goes out in one response instead of one each. Other
/// news is read at once: it is what delivery latency is made of.
const WAKE_SETTLE: Duration = Duration::from_millis(8);

pub(crate) async fn sync(
    sync: Arc<Synchrotron>,
    context: RequestContext,
    request: sync_events::v3::Request,
) -> Result<sync_events::v3::Response, MatrixError> {
    let user = context.user()?.clone();
    let since = match &request.since {
        Some(token) => Some(
            token
                .parse::<SyncToken>()
                .map_err(|_| MatrixError::invalid_param("Invalid since token"))?,
        ),
        None => None,
    };
    let filter = sync.filter(&user.user_id, request.filter.as_ref()).await?;
    let _running = sync
        .sync_started(&user.user_id, &request.set_presence)
        .await;
    let parsed = SyncRequest {
        user,
        since,
        filter,
        full_state: request.full_state,
        use_state_after: request.use_state_after,
    };
    sync.acknowledge_to_device(&parsed);
    let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    let signal = sync.waiters.signal(&parsed.user.user_id);
    // A request that will not wait must see the user's own writes, so it
    // reads the positions fresh; a long-poll is woken by every change, so
    // it may share what the others woken with it read.
    let mut fresh = parsed.since.is_none() || parsed.full_state || timeout.is_zero();
    loop {
        // Register for wake-ups before reading, so a change made while we
        // read still wakes us.
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let bursts = signal.bursts();
        let (response, has_news) = sync.collect(&parsed, fresh).await?;
        let stopping = sync.stopping.load(std::sync::atomic::Ordering::SeqCst);
        if has_news
            || stopping
            || parsed.since.is_none()
            || parsed.full_state
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(response);
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            let (response, _) = sync.collect(&parsed, true).await?;
            return Ok(response);
        }
        if signal.bursts() != bursts {
            tokio::time::sleep(WAKE_SETTLE).await;
        }
        fresh = false;
    }
}

impl Synchrotron {
    async fn filter(
        &self,
        user_id: &str,
        filter: Option<&sync_events::v3::Filter>,
    ) -> Result<SyncFilter, MatrixError> {
        let definition = match filter {
            None => return Ok(SyncFilter::default()),
            Some(sync_events::v3::Filter::FilterDefinition(definition)) => {
                serde_json::to_value(definition)
                    .map_err(|error| MatrixError::bad_json(error.to_string()))?
            }
            Some(sync_events::v3::Filter::FilterId(filter_id)) => {
                let stored = self
                    .store
                    .filter(user_id, filter_id)
                    .await?
                    .ok_or_else(|| MatrixError::invalid_param("No such filter"))?;
                serde_json::from_str(&stored)
                    .map_err(|error| MatrixError::internal(error.to_string()))?
            }
            Some(_) => return Ok(SyncFilter::default()),
        };
        Ok(SyncFilter::from_json(&definition))
    }
}
