//! The NATS JetStream implementation of `myelin_bus::Bus`.
//!
//! Invariant: the only crate that links async-nats; roles see `dyn Bus`.
//!
//! Every subject is published as `{prefix}.{subject}` and every stream is
//! named `{PREFIX}_{name}`, so deployments and test runs can share one
//! server; callers never see the prefix. Streams store, core NATS carries
//! live traffic: live subscribers and request/reply use plain subscriptions,
//! which also see the messages published into streams.

mod streams;

pub use streams::RETENTION;

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, AckKind, ContextBuilder};
use async_nats::{Client, ConnectOptions, Event, RequestErrorKind, SubscribeErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use myelin_bus::{
    Acker, Bus, BusError, BusResult, Consumer, Delivery, Incoming, Message, Request, RequestStream,
    Responder, StreamSpec, Subscription,
};
use serde::de::IgnoredAny;
use tokio::time::Instant;

/// How long a publish waits for its PubAck, an ack for its confirmation and
/// a reply for its flush; also bounds JetStream API calls. Past it, NATS
/// counts as unavailable rather than letting callers hang.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages asked for per pull. Kept small: prefetched messages age towards
/// `ack_wait` while they wait, and sharers of a durable name split the work
/// more evenly.
const PULL_BATCH: usize = 10;

/// Idle heartbeat of a pull; a missed one means the pull is lost.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

/// Pause before reopening a pull consumer that failed, doubling up to the max.
const REOPEN_DELAY_MIN: Duration = Duration::from_millis(250);
const REOPEN_DELAY_MAX: Duration = Duration::from_secs(10);

/// Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct NatsBus {
    client: Client,
    jetstream: jetstream::Context,
    prefix: String,
}

impl NatsBus {
    /// Connects and gets or creates every stream of
    /// `myelin_bus::subjects::ALL_STREAMS` under `prefix`. Fails with
    /// `Unavailable` if a stream exists with other subjects.
    pub async fn connect(url: &str, prefix: &str) -> BusResult<NatsBus> {
        check_prefix(prefix)?;
        let client = ConnectOptions::new()
            .name("myelin")
            .event_callback(|event| async move { log_event(&event) })
            .connect(url)
            .await
            // The URL may carry credentials: keep it out of the message.
            .map_err(|error| BusError::Unavailable(format!("cannot connect to NATS: {error}")))?;
        let jetstream = ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client.clone());
        streams::ensure_all(&jetstream, prefix).await?;
        Ok(NatsBus {
            client,
            jetstream,
            prefix: prefix.to_owned(),
        })
    }

    /// Deletes this prefix's streams and everything in them; for tests and
    /// tearing a deployment down.
    pub async fn delete_streams(&self) -> BusResult<()> {
        streams::delete_all(&self.jetstream, &self.prefix).await
    }

    fn prefixed(&self, subject: &str) -> String {
        format!("{}.{subject}", self.prefix)
    }

    /// Hands `payload` to the connection for `full` (the prefixed `subject`).
    async fn publish_core(&self, subject: &str, full: String, payload: Bytes) -> BusResult<()> {
        match tokio::time::timeout(ACK_TIMEOUT, self.client.publish(full, payload)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                use async_nats::client::PublishErrorKind;
                match error.kind() {
                    PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::InvalidSubject => Err(
                        BusError::Invalid(format!("cannot publish {subject}: {error}")),
                    ),
                    PublishErrorKind::Send => {
                        Err(unavailable(&format!("cannot publish {subject}"), error))
                    }
                }
            }
            Err(_elapsed) => Err(BusError::Unavailable(format!(
                "NATS did not take {subject} within {ACK_TIMEOUT:?}"
            ))),
        }
    }

    /// Fails at once while disconnected, instead of queueing work that may
    /// be sent long after the caller gave up.
    fn check_connected(&self) -> BusResult<()> {
        match self.client.connection_state() {
            State::Disconnected => Err(BusError::Unavailable(
                "disconnected from NATS, reconnecting".to_owned(),
            )),
            State::Connected | State::Pending => Ok(()),
        }
    }
}

fn check_prefix(prefix: &str) -> BusResult<()> {
    let legal = !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>')
        });
    if legal {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "bus prefix {prefix:?} is not a literal NATS subject"
        )))
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => tracing::warn!("disconnected from NATS, reconnecting"),
        other => tracing::warn!("NATS: {other}"),
    }
}

/// The subject as the caller published it.
fn unprefixed(prefix: &str, subject: &str) -> String {
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(subject)
        .to_owned()
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

fn subscribe_error(pattern: &str, error: &async_nats::SubscribeError) -> BusError {
    match error.kind() {
        SubscribeErrorKind::InvalidSubject | SubscribeErrorKind::InvalidQueueName => {
            BusError::Invalid(format!("cannot subscribe to {pattern}: {error}"))
        }
        SubscribeErrorKind::Other => unavailable(&format!("cannot subscribe to {pattern}"), error),
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> BusResult<()> {
        self.check_connected()?;
        let full = self.prefixed(subject);
        if streams::owning_stream(subject).is_some() {
            let stored = async { self.jetstream.publish(full, payload).await?.await };
            match tokio::time::timeout(ACK_TIMEOUT, stored).await {
                Ok(Ok(_ack)) => Ok(()),
                Ok(Err(error)) => {
                    use async_nats::jetstream::context::PublishErrorKind;
                    match error.kind() {
                        PublishErrorKind::MaxPayloadExceeded => Err(BusError::Invalid(format!(
                            "cannot publish {subject}: {error}"
                        ))),
                        _ => Err(unavailable(&format!("cannot store {subject}"), error)),
                    }
                }
                Err(_elapsed) => Err(BusError::Unavailable(format!(
                    "NATS did not confirm storing {subject} within {ACK_TIMEOUT:?}"
                ))),
            }
        } else {
            self.publish_core(subject, full, payload).await
        }
    }

    /// A plain NATS publish: JetStream stores it if a stream owns the
    /// subject, without a PubAck coming back.
    async fn announce(&self, subject: &str, payload: Bytes) -> BusResult<()> {
        self.check_connected()?;
        let full = self.prefixed(subject);
        self.publish_core(subject, full, payload).await
    }

    async fn subscribe(&self, pattern: &str) -> BusResult<Subscription> {
        let subscriber = self
            .client
            .subscribe(self.prefixed(pattern))
            .await
            .map_err(|error| subscribe_error(pattern, &error))?;
        let prefix = self.prefix.clone();
        let messages = subscriber.map(move |message| Message {
            subject: unprefixed(&prefix, &message.subject),
            payload: message.payload,
        });
        Ok(Incoming::new(Box::pin(messages)))
    }

    async fn consume(
        &self,
        stream: &StreamSpec,
        durable_name: &str,
        filter: &str,
        ack_wait: Duration,
    ) -> BusResult<Consumer> {
        let durable = streams::legal_name(durable_name);
        let mut cursor = PullCursor {
            jetstream: self.jetstream.clone(),
            client: self.client.clone(),
            stream: streams::stream_name(&self.prefix, stream),
            config: pull::Config {
                durable_name: Some(durable),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                deliver_policy: DeliverPolicy::All,
                filter_subject: self.prefixed(filter),
                ..Default::default()
            },
            prefix: self.prefix.clone(),
            messages: None,
            reopen_delay: REOPEN_DELAY_MIN,
            reopen_at: None,
        };
        // Open once here so a bad stream or filter fails the call itself.
        cursor.messages = Some(cursor.open().await?);
        let deliveries = futures::stream::unfold(cursor, |mut cursor| async move {
            let delivery = cursor.next().await;
            Some((delivery, cursor))
        });
        Ok(Incoming::new(Box::pin(deliveries)))
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> BusResult<Bytes> {
        self.check_connected()?;
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        let sent = self.client.send_request(self.prefixed(subject), request);
        // The client only bounds the wait for the answer, not for sending.
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(answer)) => Ok(answer.payload),
            Ok(Err(error)) => match error.kind() {
                RequestErrorKind::TimedOut => Err(BusError::Timeout),
                RequestErrorKind::NoResponders => Err(BusError::NoResponders(subject.to_owned())),
                RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => Err(
                    BusError::Invalid(format!("cannot request {subject}: {error}")),
                ),
                RequestErrorKind::Other => {
                    Err(unavailable(&format!("cannot request {subject}"), error))
                }
            },
            Err(_elapsed) => Err(BusError::Timeout),
        }
    }

    async fn serve(&self, pattern: &str, queue_group: &str) -> BusResult<RequestStream> {
        let subscriber = self
            .client
            .queue_subscribe(self.prefixed(pattern), queue_group.to_owned())
            .await
            .map_err(|error| subscribe_error(pattern, &error))?;
        let prefix = self.prefix.clone();
        let client = self.client.clone();
        let requests = subscriber.map(move |message| Request {
            message: Message {
                subject: unprefixed(&prefix, &message.subject),
                payload: message.payload,
            },
            responder: Box::new(NatsResponder {
                client: client.clone(),
                reply: message.reply,
            }),
        });
        Ok(Incoming::new(Box::pin(requests)))
    }

    /// A JetStream API round trip, so `/ready` also fails when the server is
    /// up but JetStream is not. Only an error in the answer matters.
    async fn ping(&self) -> BusResult<()> {
        self.check_connected()?;
        let answer = self
            .jetstream
            .request::<_, _, Response<IgnoredAny>>("INFO", &());
        match tokio::time::timeout(ACK_TIMEOUT, answer).await {
            Ok(Ok(Response::Ok(_account))) => Ok(()),
            Ok(Ok(Response::Err { error })) => Err(unavailable("JetStream refuses", error)),
            Ok(Err(error)) => Err(unavailable("JetStream does not answer", error)),
            Err(_elapsed) => Err(BusError::Unavailable(format!(
                "JetStream did not answer within {ACK_TIMEOUT:?}"
            ))),
        }
    }
}

/// A durable pull consumer that reopens itself: errors come out as items,
/// and a pull that ends or fails is replaced after a pause. Whatever the
/// old pull had prefetched comes back after `ack_wait`.
struct PullCursor {
    jetstream: jetstream::Context,
    client: Client,
    stream: String,
    config: pull::Config,
    prefix: String,
    messages: Option<pull::Stream>,
    reopen_delay: Duration,
    reopen_at: Option<Instant>,
}

impl PullCursor {
    async fn open(&self) -> BusResult<pull::Stream> {
        let durable = self.config.durable_name.as_deref().unwrap_or_default();
        if self.client.connection_state() == State::Disconnected {
            return Err(BusError::Unavailable(format!(
                "disconnected from NATS, cannot open consumer {durable} on {}",
                self.stream
            )));
        }
        // Create or update: a changed ack_wait takes effect on the next start.
        let consumer: PullConsumer = self
            .jetstream
            .create_consumer_on_stream(self.config.clone(), &self.stream)
            .await
            .map_err(|error| {
                unavailable(
                    &format!("cannot open consumer {durable} on {}", self.stream),
                    error,
                )
            })?;
        consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|error| {
                unavailable(
                    &format!("cannot pull from consumer {durable} on {}", self.stream),
                    error,
                )
            })
    }

    fn back_off(&mut self) {
        self.messages = None;
        self.reopen_at = Some(Instant::now() + self.reopen_delay);
        self.reopen_delay = (self.reopen_delay * 2).min(REOPEN_DELAY_MAX);
    }

    async fn next(&mut self) -> BusResult<Delivery> {
        loop {
            if let Some(at) = self.reopen_at.take() {
                tokio::time::sleep_until(at).await;
            }
            let messages = match self.messages.take() {
                Some(messages) => self.messages.insert(messages),
                None => match self.open().await {
                    Ok(messages) => {
                        self.reopen_delay = REOPEN_DELAY_MIN;
                        self.messages.insert(messages)
                    }
                    Err(error) => {
                        self.back_off();
                        return Err(error);
                    }
                },
            };
            match messages.next().await {
                Some(Ok(message)) => return Ok(self.delivery(message)),
                Some(Err(error)) => {
                    // After any error the pull's state is uncertain (a lost pull
                    // request, a deleted consumer): start afresh.
                    let reason = match error.kind() {
                        MessagesErrorKind::MissingHeartbeat => "lost contact with",
                        _ => "failed pulling from",
                    };
                    self.back_off();
                    return Err(unavailable(
                        &format!("{reason} consumer on {}", self.stream),
                        error,
                    ));
                }
                None => {
                    tracing::debug!(stream = %self.stream, "pull ended, reopening");
                    self.back_off();
                }
            }
        }
    }

    fn delivery(&self, message: jetstream::Message) -> Delivery {
        let (message, acker) = message.split();
        Delivery {
            message: Message {
                subject: unprefixed(&self.prefix, &message.subject),
                payload: message.payload,
            },
            acker: Box::new(NatsAcker(acker)),
        }
    }
}

struct NatsAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for NatsAcker {
    /// Waits for the server to confirm, so a returned ack is never lost.
    async fn ack(self: Box<Self>) -> BusResult<()> {
        match tokio::time::timeout(ACK_TIMEOUT, self.0.double_ack_with(AckKind::Ack)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(unavailable("cannot acknowledge", error)),
            Err(_elapsed) => Err(BusError::Unavailable(format!(
                "NATS did not confirm an acknowledgement within {ACK_TIMEOUT:?}"
            ))),
        }
    }

    /// Fire and forget: a lost nak only delays redelivery until `ack_wait`.
    async fn nack(self: Box<Self>) -> BusResult<()> {
        match tokio::time::timeout(ACK_TIMEOUT, self.0.ack_with(AckKind::Nak(None))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(unavailable("cannot nack", error)),
            Err(_elapsed) => Err(BusError::Unavailable(format!(
                "NATS did not take a nack within {ACK_TIMEOUT:?}"
            ))),
        }
    }
}

struct NatsResponder {
    client: Client,
    reply: Option<async_nats::Subject>,
}

#[async_trait]
impl Responder for NatsResponder {
    async fn respond(self: Box<Self>, payload: Bytes) -> BusResult<()> {
        let Some(reply) = self.reply else {
            // Published, not requested: nobody waits for an answer.
            tracing::debug!("dropping the answer to a request without a reply subject");
            return Ok(());
        };
        let sent = async {
            self.client
                .publish(reply, payload)
                .await
                .map_err(|error| unavailable("cannot answer", error))?;
            // Answers are small and awaited; don't leave one in a buffer.
            self.client
                .flush()
                .await
                .map_err(|error| unavailable("cannot flush an answer", error))
        };
        tokio::time::timeout(ACK_TIMEOUT, sent)
            .await
            .unwrap_or_else(|_elapsed| {
                Err(BusError::Unavailable(format!(
                    "NATS did not take an answer within {ACK_TIMEOUT:?}"
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_be_literal_subjects() {
        assert!(check_prefix("myelin").is_ok());
        assert!(check_prefix("myelin.prod").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(
                matches!(check_prefix(bad), Err(BusError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn received_subjects_lose_the_prefix() {
        assert_eq!(unprefixed("run_1", "run_1.persisted.3"), "persisted.3");
        assert_eq!(unprefixed("a.b", "a.b.room_input.4"), "room_input.4");
        // Only a whole leading token is a prefix.
        assert_eq!(unprefixed("run", "run_1.persisted.3"), "run_1.persisted.3");
    }
}
