//! Sending: each queued destination gets its queue in transactions of at
//! most 50 PDUs, one in flight at a time, retried with backoff.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use myelin_bus::messages::{self, PersistedEvent};
use myelin_bus::subjects;
use myelin_bus::topics::{self, ServerSeen};
use myelin_process::Shutdown;
use myelin_store::StoreResult;
use rand::Rng;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId};
use serde_json::value::RawValue;

use crate::FederationSender;

/// Passes run this often even without a bell, for retries and lost bells.
const BACKSTOP: Duration = Duration::from_secs(2);
/// The spec's limits on one transaction.
const PDUS_PER_TRANSACTION: usize = 50;
const EDUS_PER_TRANSACTION: usize = 100;
/// Destinations sent to at once by one process.
const CONCURRENT_DESTINATIONS: usize = 32;
/// A destination that has not answered by then has failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

impl FederationSender {
    /// Subscribes to persisted-event bells and returns the task that
    /// listens to them: subscribed before the first pass.
    pub(crate) async fn listen_for_bells(
        self: Arc<Self>,
    ) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
        let mut persisted = self.bus.subscribe(subjects::ALL_PERSISTED_EVENTS).await?;
        let mut seen = topics::SERVER_SEEN.subscribe(self.bus.as_ref()).await?;
        let mut typing = topics::TYPING.subscribe(self.bus.as_ref()).await?;
        let mut receipts = topics::RECEIPTS.subscribe(self.bus.as_ref()).await?;
        let mut device_lists = topics::DEVICE_LISTS.subscribe(self.bus.as_ref()).await?;
        let mut presence = topics::PRESENCE.subscribe(self.bus.as_ref()).await?;
        let mut queued = topics::FEDERATION_QUEUED
            .subscribe(self.bus.as_ref())
            .await?;
        Ok(async move {
            loop {
                tokio::select! {
                    change = typing.next() => {
                        let Some(change) = change else { break };
                        self.queue_typing(change).await;
                    }
                    change = receipts.next() => {
                        // The pass reads it from the receipts stream.
                        if change.is_none() { break; }
                        self.wake.notify_one();
                    }
                    change = device_lists.next() => {
                        // The pass reads it from the device-list stream.
                        if change.is_none() { break; }
                        self.wake.notify_one();
                    }
                    change = presence.next() => {
                        let Some(change) = change else { break };
                        self.queue_presence(change).await;
                    }
                    message = queued.next() => {
                        if message.is_none() { break; }
                        self.wake.notify_one();
                    }
                    message = persisted.next() => {
                        let Some(message) = message else { break };
                        // Only this server's events go out: another's are
                        // passed over by the next pass that has work, or
                        // the backstop's.
                        if self.rings_for_own_event(&message.payload) {
                            self.wake.notify_one();
                        }
                    }
                    server = seen.next() => {
                        let Some(ServerSeen { server_name }) = server else { break };
                        // It is up: what waits for it goes now.
                        if let Some(until) = self.waiting().get_mut(&server_name) {
                            *until = 0;
                            self.wake.notify_one();
                        }
                    }
                }
            }
        })
    }

    /// Whether a persisted-event bell is for an event of this server's
    /// users; an unreadable one is taken to be.
    fn rings_for_own_event(&self, payload: &[u8]) -> bool {
        messages::decode::<PersistedEvent>(payload)
            .map_or(true, |event| self.is_local(&event.sender))
    }

    pub(crate) async fn send_loop(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(BACKSTOP) => {}
                _ = shutdown.wait() => return,
            }
            let pass = self.pass.read().await;
            let mut queued_to = BTreeSet::new();
            loop {
                match self.queue_new_events(&mut queued_to).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(%error, "could not queue events for other servers");
                        break;
                    }
                }
            }
            // What this pass queued goes out first, without a read of the
            // queues; then what others queued. The other streams are read
            // last: an EDU they queue rings for another pass, which sends it.
            let now = myelin_types::now_millis();
            for destination in &queued_to {
                Arc::clone(&self).start_destination(destination, now);
            }
            if let Err(error) = Arc::clone(&self).start_due_destinations(&queued_to).await {
                tracing::warn!(%error, "could not read the federation queues");
            }
            if let Err(error) = self.queue_device_list_changes().await {
                tracing::warn!(%error, "could not queue device-list changes for other servers");
            }
            if let Err(error) = self.queue_receipt_changes().await {
                tracing::warn!(%error, "could not queue read receipts for other servers");
            }
            drop(pass);
        }
    }

    /// Starts a sender task for every queued destination but those in
    /// `started`, which this pass started already.
    async fn start_due_destinations(
        self: Arc<Self>,
        started: &BTreeSet<String>,
    ) -> StoreResult<()> {
        let partitions: Vec<u16> = self.held().keys().copied().collect();
        if partitions.is_empty() {
            return Ok(());
        }
        let now = myelin_types::now_millis();
        for destination in self.store.queued_destinations(&partitions).await? {
            if !started.contains(&destination) {
                Arc::clone(&self).start_destination(&destination, now);
            }
        }
        Ok(())
    }

    /// Starts a sender task for a queued destination, unless it is being
    /// sent to or waiting after a failure.
    fn start_destination(self: Arc<Self>, destination: &str, now: i64) {
        if self
            .waiting_until(destination)
            .is_some_and(|until| until > now)
        {
            return;
        }
        {
            let mut sending = self.sending();
            if let Some(asked_again) = sending.get_mut(destination) {
                // Its sender reads the queue once more before it stops:
                // what was queued as it found the queue empty goes now,
                // not with the next bell.
                *asked_again = true;
                return;
            }
            if sending.len() >= CONCURRENT_DESTINATIONS {
                return;
            }
            sending.insert(destination.to_owned(), false);
        }
        let destination = destination.to_owned();
        tokio::spawn(async move {
            loop {
                self.drain(&destination).await;
                let mut sending = self.sending();
                if sending.get(&destination) == Some(&true) {
                    sending.insert(destination.clone(), false);
                    continue;
                }
                sending.remove(&destination);
                break;
            }
        });
    }

    /// Sends the destination's queue until it is empty or a send fails.
    async fn drain(&self, destination: &str) {
        let Ok(server) = OwnedServerName::try_from(destination) else {
            tracing::warn!(%destination, "a queued destination is not a server name");
            return;
        };
        if let Err(error) = self.load_retry(destination).await {
            tracing::warn!(%error, %destination, "cannot read how a destination's retries stand");
            return;
        }
        if self
            .waiting_until(destination)
            .is_some_and(|until| until > myelin_types::now_millis())
        {
            return;
        }
        loop {
            if !self.holds(destination) {
                // The partition moved on; its new holder sends from here.
                return;
            }
            match self.send_next(&server).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(why) => {
                    self.transactions.with_label_values(&["failed"]).inc();
                    if let Err(error) = self.note_failure(destination).await {
                        tracing::warn!(%error, %destination, "cannot record a failed transaction");
                    }
                    tracing::info!(%destination, %why, "a transaction failed; retrying later");
                    return;
                }
            }
        }
    }

    /// Sends the next transaction; `Ok(false)` when nothing is queued.
    async fn send_next(&self, server: &OwnedServerName) -> Result<bool, String> {
        let destination = server.as_str();
        let store_error = |error: myelin_store::StoreError| error.to_string();
        let batch = self
            .store
            .outbox_batch(destination, PDUS_PER_TRANSACTION, EDUS_PER_TRANSACTION)
            .await
            .map_err(store_error)?;
        if batch.entries.is_empty() && batch.edus.is_empty() {
            return Ok(false);
        }
        let ids: Vec<String> = batch
            .entries
            .iter()
            .map(|entry| entry.event_id.clone())
            .collect();
        // The events are read while the new transaction is recorded.
        let (txn_id, stored) = match batch.txn_id {
            Some(txn_id) => (
                txn_id,
                self.store.events_by_id(&ids).await.map_err(store_error)?,
            ),
            None => {
                let txn_id = new_transaction_id();
                let edu_seqs: Vec<i64> = batch.edus.iter().map(|edu| edu.seq).collect();
                let ((), stored) = tokio::try_join!(
                    self.store.begin_transaction(
                        destination,
                        &txn_id,
                        batch.entries.last().map(|entry| entry.seq),
                        &edu_seqs,
                    ),
                    self.store.events_by_id(&ids),
                )
                .map_err(store_error)?;
                (txn_id, stored)
            }
        };
        // In queue order; an event no longer stored is left out.
        let mut pdus: Vec<Box<RawValue>> = Vec::with_capacity(ids.len());
        for event_id in &ids {
            if let Some(event) = stored.iter().find(|event| &event.event_id == event_id)
                && let Ok(raw) = RawValue::from_string(event.pdu_json.clone())
            {
                pdus.push(raw);
            }
        }
        let request = send_transaction_message::v1::Request::new(
            OwnedTransactionId::from(txn_id.as_str()),
            self.client.server_name().to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        let mut request = request;
        request.pdus = pdus;
        request.edus = batch
            .edus
            .iter()
            .filter_map(|edu| RawValue::from_string(edu.edu_json.clone()).ok())
            .map(ruma::serde::Raw::from_json)
            .collect();
        let answer = tokio::time::timeout(TRANSACTION_TIMEOUT, self.client.send(server, request))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|error| error.to_string())?;
        for (event_id, outcome) in &answer.pdus {
            if let Err(why) = outcome {
                // The destination will not take it; retrying would not help.
                tracing::info!(%destination, %event_id, %why, "a server refused an event");
            }
        }
        self.store
            .end_transaction(destination, &txn_id)
            .await
            .map_err(store_error)?;
        self.waiting().insert(destination.to_owned(), 0);
        self.transactions.with_label_values(&["sent"]).inc();
        Ok(true)
    }

    /// Reads a destination's standing the first time this process sends to
    /// it (a restart keeps the wait a failure started).
    async fn load_retry(&self, destination: &str) -> StoreResult<()> {
        if self.waiting().contains_key(destination) {
            return Ok(());
        }
        let retry_at = self
            .store
            .destination_retry(destination)
            .await?
            .and_then(|retry| retry.retry_at)
            .unwrap_or(0);
        self.waiting().insert(destination.to_owned(), retry_at);
        Ok(())
    }

    async fn note_failure(&self, destination: &str) -> StoreResult<()> {
        let failures = self
            .store
            .destination_retry(destination)
            .await?
            .map_or(0, |retry| retry.failures)
            + 1;
        let policy = self.retry_policy;
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX).min(64);
        let wait =
            (policy.min_ms as f64 * policy.multiplier.powi(exponent)).min(policy.max_ms as f64);
        // Jitter spreads the retries of many destinations that failed together.
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let wait_ms = (wait * jitter).min(policy.max_ms as f64) as i64;
        let retry_at = myelin_types::now_millis() + wait_ms;
        self.store
            .set_destination_retry(destination, failures, Some(retry_at))
            .await?;
        self.waiting().insert(destination.to_owned(), retry_at);
        Ok(())
    }

    fn holds(&self, destination: &str) -> bool {
        self.held()
            .contains_key(&myelin_types::Partition::of_server(destination).0)
    }

    /// Until when (ms) sends to `destination` wait after failures.
    pub(crate) fn waiting_until(&self, destination: &str) -> Option<i64> {
        self.waiting().get(destination).copied()
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The destinations being sent to, each with whether a pass found it
    /// queued meanwhile.
    fn sending(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, bool>> {
        self.sending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A transaction ID no retry of another transaction can share.
fn new_transaction_id() -> String {
    let suffix: u64 = rand::thread_rng().r#gen();
    format!("{}-{suffix:016x}", myelin_types::now_millis())
}
