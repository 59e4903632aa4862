//! The delivery loop: on every bell (and every few seconds without one),
//! each pusher of the held partitions is sent what it owes, oldest first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use myelin_bus::subjects;
use myelin_bus::topics::{self, PushersChanged, ReceiptChanged};
use myelin_process::Shutdown;
use myelin_store::{PushDue, PusherProgress, StoreResult};
use myelin_types::{Partition, StreamPosition};

use crate::PusherRole;
use crate::notification::{self, Names, PusherTarget};

/// Passes run this often even without a bell, for retries and lost bells.
const BACKSTOP: Duration = Duration::from_secs(5);
/// Notifications sent to one pusher in one pass; the next pass goes on.
const BATCH: usize = 10;
/// Pushers served at once.
const CONCURRENT_PUSHERS: usize = 8;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(10 * 60);
/// A gateway failing this long skips what it missed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A pusher: user, app ID and pushkey.
type PusherKey = (String, String, String);

/// How each pusher's delivery stands, in this process.
#[derive(Default)]
pub(crate) struct Standing {
    /// Checked up to here and found nothing owed (kept in memory only, so
    /// the store is written when something is delivered).
    checked_upto: StreamPosition,
    retry_at: Option<Instant>,
    delay: Duration,
    failing_since: Option<Instant>,
}

pub(crate) type Backoffs = HashMap<PusherKey, Standing>;

fn key_of(progress: &PusherProgress) -> PusherKey {
    let pusher = &progress.pusher;
    (
        pusher.user_id.clone(),
        pusher.app_id.clone(),
        pusher.pushkey.clone(),
    )
}

impl Standing {
    fn failed(&mut self, now: Instant) {
        self.delay = if self.delay.is_zero() {
            FIRST_RETRY
        } else {
            (self.delay * 2).min(LONGEST_RETRY)
        };
        self.retry_at = Some(now + self.delay);
        self.failing_since.get_or_insert(now);
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
        self.retry_at = None;
        self.failing_since = None;
    }

    fn gave_up(&self, now: Instant) -> bool {
        self.failing_since
            .is_some_and(|since| now.duration_since(since) >= GIVE_UP_AFTER)
    }
}

/// What serving one pusher in a pass came to.
enum Served {
    /// Owes nothing more up to the pass's position, or must wait.
    Done,
    /// Sent a full batch; more may be owed.
    More,
}

impl PusherRole {
    fn backoffs(&self) -> std::sync::MutexGuard<'_, crate::Backoffs> {
        self.backoffs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn resting(&self) -> bool {
        self.idle_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    fn holds_user(&self, user_id: &str) -> bool {
        self.held().contains(&Partition::of_user(user_id).0)
    }

    /// Subscribes to the bells and returns the task that listens to them:
    /// subscribed before the first pass, so nothing falls in between.
    pub(crate) async fn listen_for_bells(
        self: Arc<Self>,
    ) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
        let mut persisted = self.bus.subscribe(subjects::ALL_PERSISTED_EVENTS).await?;
        let mut receipts = topics::RECEIPTS.subscribe(self.bus.as_ref()).await?;
        let mut pushers = topics::PUSHERS.subscribe(self.bus.as_ref()).await?;
        Ok(async move {
            loop {
                tokio::select! {
                    message = persisted.next() => {
                        if message.is_none() { break; }
                        self.wake.notify_one();
                    }
                    change = receipts.next() => {
                        let Some(ReceiptChanged { user_id, .. }) = change else { break };
                        if self.holds_user(&user_id) {
                            self.read_since
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .insert(user_id);
                            self.wake.notify_one();
                        }
                    }
                    change = pushers.next() => {
                        let Some(PushersChanged { user_id }) = change else { break };
                        if self.holds_user(&user_id) {
                            self.stop_resting();
                            self.wake.notify_one();
                        }
                    }
                }
            }
            tracing::warn!(
                "the bus closed a subscription of the pusher; passes go on every few seconds"
            );
        })
    }

    pub(crate) async fn deliver(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(BACKSTOP) => {}
            }
            loop {
                match self.pass().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(%error, "a push delivery pass failed");
                        break;
                    }
                }
            }
        }
    }

    /// One look at every pusher held; `true` when some may owe more.
    async fn pass(self: &Arc<Self>) -> StoreResult<bool> {
        let _pass = self.pass.read().await;
        let partitions: Vec<u16> = self.held().iter().copied().collect();
        if partitions.is_empty() || self.resting() {
            return Ok(false);
        }
        let pushers = self.store.http_pushers(&partitions).await?;
        if pushers.is_empty() {
            *self
                .idle_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now() + BACKSTOP);
            return Ok(false);
        }
        let upto = self.store.max_position().await?;
        let read_since = std::mem::take(
            &mut *self
                .read_since
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // Forget the standing of pushers that are gone or moved away.
        let present: std::collections::HashSet<PusherKey> = pushers.iter().map(key_of).collect();
        self.backoffs().retain(|key, _| present.contains(key));
        let outcomes: Vec<StoreResult<Served>> = futures::stream::iter(pushers)
            .map(|progress| {
                let badge = read_since.contains(&progress.pusher.user_id);
                self.serve(progress, upto, badge)
            })
            .buffer_unordered(CONCURRENT_PUSHERS)
            .collect()
            .await;
        let mut more = false;
        for outcome in outcomes {
            match outcome {
                Ok(Served::More) => more = true,
                Ok(Served::Done) => {}
                Err(error) => tracing::warn!(%error, "cannot serve a pusher"),
            }
        }
        Ok(more)
    }

    /// Sends one pusher what it owes up to `upto`, or only its new badge.
    async fn serve(
        &self,
        progress: PusherProgress,
        upto: StreamPosition,
        badge: bool,
    ) -> StoreResult<Served> {
        let Some(gateways) = &self.gateways else {
            return Ok(Served::Done);
        };
        let key = key_of(&progress);
        let now = Instant::now();
        let after = {
            let mut backoffs = self.backoffs();
            let standing = backoffs.entry(key.clone()).or_default();
            if standing.retry_at.is_some_and(|at| at > now) {
                return Ok(Served::Done);
            }
            standing.checked_upto.max(progress.delivered_upto)
        };
        let Some(target) = PusherTarget::of(&progress.pusher) else {
            return Ok(Served::Done);
        };
        let user_id = progress.pusher.user_id.as_str();
        let owed = if after < upto {
            self.store.pushes_due(user_id, after, upto, BATCH).await?
        } else {
            Vec::new()
        };
        if owed.is_empty() {
            self.backoffs().entry(key).or_default().checked_upto = upto;
            if badge {
                let unread = self.store.unread_rooms(user_id).await?;
                match gateways
                    .send(&target.url, notification::badge(&target, unread))
                    .await
                {
                    Ok(_) => self.deliveries.with_label_values(&["badge"]).inc(),
                    Err(error) => tracing::debug!(%error, "a badge update was not delivered"),
                }
            }
            return Ok(Served::Done);
        }
        let full_batch = owed.len() == BATCH;
        for due in owed {
            if !self.holds_user(user_id) {
                return Ok(Served::Done);
            }
            let unread = self.store.unread_rooms(user_id).await?;
            let names = self.names(&due).await;
            let sent = notification::of_event(
                &target,
                user_id,
                &due,
                unread,
                self.config.push.include_content,
                names,
            );
            match gateways.send(&target.url, sent).await {
                Ok(rejected) if rejected.contains(&progress.pusher.pushkey) => {
                    self.deliveries.with_label_values(&["rejected"]).inc();
                    tracing::info!(user_id, app_id = %key.1, "the gateway rejected a pushkey; removing its pusher");
                    self.store.delete_pusher(&key.0, &key.1, &key.2).await?;
                    return Ok(Served::Done);
                }
                Ok(_) => {
                    self.deliveries.with_label_values(&["sent"]).inc();
                    self.delivered(&key, due.event.position).await?;
                }
                Err(error) => {
                    self.deliveries.with_label_values(&["failed"]).inc();
                    let gave_up = {
                        let mut backoffs = self.backoffs();
                        let standing = backoffs.entry(key.clone()).or_default();
                        standing.failed(Instant::now());
                        standing.gave_up(Instant::now())
                    };
                    if gave_up {
                        tracing::warn!(%error, user_id, "a push gateway failed for a day; skipping a notification");
                        self.delivered(&key, due.event.position).await?;
                    } else {
                        tracing::debug!(%error, user_id, "push delivery failed; will retry");
                    }
                    return Ok(Served::Done);
                }
            }
        }
        Ok(if full_batch {
            Served::More
        } else {
            Served::Done
        })
    }

    async fn delivered(&self, key: &PusherKey, position: StreamPosition) -> StoreResult<()> {
        self.store
            .advance_pusher(&key.0, &key.1, &key.2, position)
            .await?;
        let mut backoffs = self.backoffs();
        let standing = backoffs.entry(key.clone()).or_default();
        standing.succeeded();
        standing.checked_upto = standing.checked_upto.max(position);
        Ok(())
    }

    /// The room's name and the sender's display name, when the event's
    /// content may be shown.
    async fn names(&self, due: &PushDue) -> Names {
        if !self.config.push.include_content {
            return Names::default();
        }
        let content = |found: Option<myelin_store::StoredEvent>, field: &str| {
            let event: serde_json::Value =
                serde_json::from_str(&found?.pdu_json).unwrap_or_default();
            event["content"][field].as_str().map(str::to_owned)
        };
        let room = &due.event.room_id;
        let name = self.store.state_event(room, "m.room.name", "").await;
        let sender = self
            .store
            .state_event(room, "m.room.member", &due.event.sender)
            .await;
        Names {
            room_name: content(name.ok().flatten(), "name"),
            sender_display_name: content(sender.ok().flatten(), "displayname"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling_and_give_up_after_a_day() {
        let start = Instant::now();
        let mut standing = Standing::default();
        standing.failed(start);
        assert_eq!(standing.delay, FIRST_RETRY);
        for _ in 0..20 {
            standing.failed(start);
        }
        assert_eq!(standing.delay, LONGEST_RETRY);
        assert!(!standing.gave_up(start + Duration::from_secs(60)));
        assert!(standing.gave_up(start + GIVE_UP_AFTER));
        standing.succeeded();
        assert!(standing.retry_at.is_none() && standing.failing_since.is_none());
    }
}
