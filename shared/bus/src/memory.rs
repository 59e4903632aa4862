//! The in-process bus of the single-process server: tokio channels plus an
//! in-memory log per stream with acknowledgements.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::subjects::ALL_STREAMS;
use crate::{
    Acker, Bus, BusError, BusResult, Consumer, Delivery, Incoming, Message, Request, RequestStream,
    Responder, StreamSpec, Subscription, subject_matches,
};

#[derive(Default)]
struct DurableState {
    /// Next log index never delivered to this durable name.
    next_index: usize,
    /// Delivered, not yet acknowledged: log index -> redelivery deadline.
    unacked: BTreeMap<usize, Instant>,
}

/// Messages kept for durable names that do not exist yet; beyond that the
/// log holds only what some durable name still has to see.
const RETAINED_WITHOUT_CONSUMERS: usize = 1024;

#[derive(Default)]
struct StreamLog {
    /// Log index of `messages[0]`; indices never change as the front is trimmed.
    first: usize,
    messages: VecDeque<Message>,
    durables: HashMap<String, DurableState>,
}

impl StreamLog {
    fn end(&self) -> usize {
        self.first + self.messages.len()
    }

    fn push(&mut self, message: Message) {
        self.messages.push_back(message);
        let floor = self
            .durables
            .values()
            .map(|durable| {
                durable
                    .unacked
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(durable.next_index)
                    .min(durable.next_index)
            })
            .min()
            .unwrap_or_else(|| self.end().saturating_sub(RETAINED_WITHOUT_CONSUMERS));
        while self.first < floor && self.messages.pop_front().is_some() {
            self.first += 1;
        }
    }
}

struct Server {
    pattern: String,
    sender: mpsc::UnboundedSender<Request>,
}

#[derive(Default)]
struct State {
    subscribers: Vec<(String, mpsc::UnboundedSender<Message>)>,
    streams: HashMap<&'static str, StreamLog>,
    servers: Vec<Server>,
    next_server: usize,
}

/// Cheap to clone; clones share one bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    appended: Arc<Notify>,
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> BusResult<()> {
        let message = Message {
            subject: subject.to_owned(),
            payload,
        };
        {
            let mut state = self.lock();
            if let Some(spec) = ALL_STREAMS.iter().find(|spec| {
                spec.subjects
                    .iter()
                    .any(|pattern| subject_matches(pattern, subject))
            }) {
                state
                    .streams
                    .entry(spec.name)
                    .or_default()
                    .push(message.clone());
            }
            state.subscribers.retain(|(pattern, sender)| {
                !subject_matches(pattern, subject) || sender.send(message.clone()).is_ok()
            });
        }
        self.appended.notify_waiters();
        Ok(())
    }

    /// Nothing to confirm in process: the same as `publish`.
    async fn announce(&self, subject: &str, payload: Bytes) -> BusResult<()> {
        self.publish(subject, payload).await
    }

    async fn subscribe(&self, pattern: &str) -> BusResult<Subscription> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().subscribers.push((pattern.to_owned(), sender));
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (message, receiver))
        });
        Ok(Incoming::new(Box::pin(stream)))
    }

    async fn consume(
        &self,
        stream: &StreamSpec,
        durable_name: &str,
        filter: &str,
        ack_wait: Duration,
    ) -> BusResult<Consumer> {
        let cursor = DurableCursor {
            bus: self.clone(),
            stream: stream.name,
            durable: durable_name.to_owned(),
            filter: filter.to_owned(),
            ack_wait,
        };
        let stream = futures::stream::unfold(cursor, |cursor| async move {
            let delivery = cursor.next_delivery().await;
            Some((Ok(delivery), cursor))
        });
        Ok(Incoming::new(Box::pin(stream)))
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> BusResult<Bytes> {
        let (answer_sender, answer) = oneshot::channel();
        let request = Request {
            message: Message {
                subject: subject.to_owned(),
                payload,
            },
            responder: Box::new(MemoryResponder(answer_sender)),
        };
        {
            let mut state = self.lock();
            state.servers.retain(|server| !server.sender.is_closed());
            let matching: Vec<usize> = (0..state.servers.len())
                .filter(|&index| subject_matches(&state.servers[index].pattern, subject))
                .collect();
            if matching.is_empty() {
                return Err(BusError::NoResponders(subject.to_owned()));
            }
            state.next_server = state.next_server.wrapping_add(1);
            let chosen = matching[state.next_server % matching.len()];
            state.servers[chosen]
                .sender
                .send(request)
                .map_err(|_| BusError::NoResponders(subject.to_owned()))?;
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(BusError::NoResponders(subject.to_owned())),
            Err(_) => Err(BusError::Timeout),
        }
    }

    /// In one process every server is in the one queue group there is.
    async fn serve(&self, pattern: &str, _queue_group: &str) -> BusResult<RequestStream> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().servers.push(Server {
            pattern: pattern.to_owned(),
            sender,
        });
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|request| (request, receiver))
        });
        Ok(Incoming::new(Box::pin(stream)))
    }

    async fn ping(&self) -> BusResult<()> {
        Ok(())
    }
}

struct DurableCursor {
    bus: MemoryBus,
    stream: &'static str,
    durable: String,
    filter: String,
    ack_wait: Duration,
}

impl DurableCursor {
    async fn next_delivery(&self) -> Delivery {
        loop {
            let appended = self.bus.appended.notified();
            let wake_at = {
                let mut state = self.bus.lock();
                let log = state.streams.entry(self.stream).or_default();
                let now = Instant::now();
                let (first, end) = (log.first, log.end());
                let durable = log.durables.entry(self.durable.clone()).or_default();
                // A new durable name starts at the oldest message still kept.
                durable.next_index = durable.next_index.max(first);
                let overdue = durable
                    .unacked
                    .iter()
                    .find(|(_, deadline)| **deadline <= now);
                let index = match overdue {
                    Some((&index, _)) => Some(index),
                    None => {
                        while durable.next_index < end
                            && !subject_matches(
                                &self.filter,
                                &log.messages[durable.next_index - first].subject,
                            )
                        {
                            durable.next_index += 1;
                        }
                        (durable.next_index < end).then(|| {
                            durable.next_index += 1;
                            durable.next_index - 1
                        })
                    }
                };
                if let Some(index) = index {
                    durable.unacked.insert(index, now + self.ack_wait);
                    let Some(message) = index
                        .checked_sub(first)
                        .and_then(|at| log.messages.get(at))
                        .cloned()
                    else {
                        // Trimmed while unacknowledged cannot happen: the floor keeps it.
                        durable.unacked.remove(&index);
                        continue;
                    };
                    return Delivery {
                        message,
                        acker: Box::new(MemoryAcker {
                            bus: self.bus.clone(),
                            stream: self.stream,
                            durable: self.durable.clone(),
                            index,
                        }),
                    };
                }
                durable.unacked.values().min().copied()
            };
            match wake_at {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline, appended).await;
                }
                None => appended.await,
            }
        }
    }
}

struct MemoryAcker {
    bus: MemoryBus,
    stream: &'static str,
    durable: String,
    index: usize,
}

impl MemoryAcker {
    fn settle(&self, redeliver_at: Option<Instant>) {
        let mut state = self.bus.lock();
        let Some(durable) = state
            .streams
            .get_mut(self.stream)
            .and_then(|log| log.durables.get_mut(&self.durable))
        else {
            return;
        };
        match redeliver_at {
            Some(deadline) => {
                durable.unacked.insert(self.index, deadline);
            }
            None => {
                durable.unacked.remove(&self.index);
            }
        }
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        self.settle(None);
        Ok(())
    }

    async fn nack(self: Box<Self>) -> BusResult<()> {
        self.settle(Some(Instant::now()));
        self.bus.appended.notify_waiters();
        Ok(())
    }
}

struct MemoryResponder(oneshot::Sender<Bytes>);

#[async_trait]
impl Responder for MemoryResponder {
    async fn respond(self: Box<Self>, payload: Bytes) -> BusResult<()> {
        // The requester may have timed out and gone; that is not our error.
        let _ = self.0.send(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_bus_conforms() {
        crate::conformance::run_all(&super::MemoryBus::new()).await;
    }

    #[tokio::test]
    async fn the_log_keeps_only_what_someone_may_still_read() {
        use crate::Bus;
        let bus = super::MemoryBus::new();
        for n in 0..(super::RETAINED_WITHOUT_CONSUMERS + 500) {
            bus.publish("persisted.1", bytes::Bytes::from(n.to_string()))
                .await
                .expect("publish");
        }
        let kept = |bus: &super::MemoryBus| {
            bus.lock()
                .streams
                .get("PERSISTED_EVENTS")
                .map(|log| log.messages.len())
        };
        assert_eq!(kept(&bus), Some(super::RETAINED_WITHOUT_CONSUMERS));
        let mut consumer = bus
            .consume(
                &crate::subjects::PERSISTED_EVENTS,
                "d",
                "persisted.>",
                std::time::Duration::from_secs(30),
            )
            .await
            .expect("consume");
        let oldest = consumer.next().await.expect("open").expect("delivery");
        assert_eq!(
            &oldest.message.payload[..],
            b"500",
            "starts at the oldest message kept"
        );
        oldest.ack().await.expect("ack");
        bus.publish("persisted.1", bytes::Bytes::from_static(b"new"))
            .await
            .expect("publish");
        assert_eq!(
            kept(&bus),
            Some(super::RETAINED_WITHOUT_CONSUMERS),
            "the durable name still has the rest to read"
        );
    }
}
