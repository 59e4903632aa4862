//! The message bus between roles: publish/subscribe, durable consumers with
//! acknowledgements, and request/reply.
//!
//! Invariant: roles see only `dyn Bus`. Subjects are named in [`subjects`]
//! and payloads are the types of [`messages`], nothing else. The in-process
//! implementation is [`memory::MemoryBus`]; `myelin-bus-nats` maps the same
//! trait onto NATS JetStream, and both run [`conformance`].

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;
pub mod messages;
pub mod subjects;
pub mod topics;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

pub use subjects::StreamSpec;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The bus cannot be reached; the caller may retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// Nobody serves the subject of a request.
    #[error("no responder for {0}")]
    NoResponders(String),
    #[error("request timed out")]
    Timeout,
    #[error("invalid bus message: {0}")]
    Invalid(String),
}

pub type BusResult<T> = Result<T, BusError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub payload: Bytes,
}

/// Acknowledges one durable delivery.
#[async_trait]
pub trait Acker: Send {
    /// Done: never deliver again.
    async fn ack(self: Box<Self>) -> BusResult<()>;
    /// Failed: deliver again soon.
    async fn nack(self: Box<Self>) -> BusResult<()>;
}

pub struct Delivery {
    pub message: Message,
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    pub async fn ack(self) -> BusResult<()> {
        self.acker.ack().await
    }

    pub async fn nack(self) -> BusResult<()> {
        self.acker.nack().await
    }
}

/// Answers one request.
#[async_trait]
pub trait Responder: Send {
    async fn respond(self: Box<Self>, payload: Bytes) -> BusResult<()>;
}

pub struct Request {
    pub message: Message,
    pub responder: Box<dyn Responder>,
}

impl Request {
    pub async fn respond(self, payload: Bytes) -> BusResult<()> {
        self.responder.respond(payload).await
    }
}

/// A stream of bus items that ends when the bus closes it.
pub struct Incoming<T> {
    inner: BoxStream<'static, T>,
}

impl<T> Incoming<T> {
    pub fn new(inner: BoxStream<'static, T>) -> Self {
        Incoming { inner }
    }

    pub async fn next(&mut self) -> Option<T> {
        self.inner.next().await
    }
}

pub type Subscription = Incoming<Message>;
pub type Consumer = Incoming<BusResult<Delivery>>;
pub type RequestStream = Incoming<Request>;

#[async_trait]
pub trait Bus: Send + Sync {
    /// Stores the message in the stream that owns `subject` and delivers it
    /// to live subscribers; returns once it is stored.
    async fn publish(&self, subject: &str, payload: Bytes) -> BusResult<()>;

    /// Hands the message over like [`Bus::publish`] (a stream that owns
    /// `subject` still stores it) but does not wait for the stream to
    /// confirm it, so it may be lost. For announcements whose truth lives
    /// in the store, where the confirmation would cost a round trip per
    /// message and buy nothing.
    async fn announce(&self, subject: &str, payload: Bytes) -> BusResult<()>;

    /// Live messages on subjects matching `pattern` (`*` one token, `>` the
    /// rest) from now on; no replay, no acknowledgement.
    async fn subscribe(&self, pattern: &str) -> BusResult<Subscription>;

    /// At-least-once delivery, in stream order, of the stream's messages on
    /// subjects matching `filter`, starting after the last one this durable
    /// name acknowledged. Consumers sharing a name share the work; a message
    /// not acknowledged within `ack_wait` is delivered again.
    async fn consume(
        &self,
        stream: &StreamSpec,
        durable_name: &str,
        filter: &str,
        ack_wait: Duration,
    ) -> BusResult<Consumer>;

    /// Sends a request to one server of `subject` and waits for its answer.
    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> BusResult<Bytes>;

    /// Serves requests on subjects matching `pattern`; each request goes to
    /// one member of `queue_group`.
    async fn serve(&self, pattern: &str, queue_group: &str) -> BusResult<RequestStream>;

    /// Cheap round trip for `/ready`.
    async fn ping(&self) -> BusResult<()>;
}

/// Whether a concrete subject matches a NATS-style pattern.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern_token in pattern.split('.') {
        if pattern_token == ">" {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(token) if pattern_token == "*" || pattern_token == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }
}
