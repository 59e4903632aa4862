//! A request body on its way to a replica: kept whole when it is small, so
//! any attempt can send it; streamed when it is large, so the gateway never
//! holds a whole upload.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use myelin_http::{BodyStream, MatrixError};

pub(crate) enum BufferedBody {
    Whole(Bytes),
    Streaming(StreamingBody),
}

impl BufferedBody {
    /// Reads up to `limit` bytes: a body that ends within them is whole.
    pub(crate) async fn read(mut body: BodyStream, limit: usize) -> Result<Self, MatrixError> {
        let mut head = BytesMut::new();
        while head.len() <= limit {
            match body.next().await {
                None => return Ok(BufferedBody::Whole(head.freeze())),
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(error)) => return Err(error),
            }
        }
        Ok(BufferedBody::Streaming(StreamingBody {
            source: Arc::new(Mutex::new(Some(Source {
                head: Some(head.freeze()),
                rest: body,
            }))),
            refusal: Refusal::default(),
        }))
    }
}

/// What is read of a large body so far, and the rest as it arrives.
struct Source {
    head: Option<Bytes>,
    rest: BodyStream,
}

/// A large body, handed to whichever attempt first reads it. An attempt
/// that fails to connect never reads it, so the next one still can; once
/// read, no other attempt gets it.
pub(crate) struct StreamingBody {
    source: Arc<Mutex<Option<Source>>>,
    refusal: Refusal,
}

impl StreamingBody {
    /// Where the client's own failure (a broken connection, a body past
    /// the limit) is kept while the body is sent.
    pub(crate) fn refusal(&self) -> Refusal {
        self.refusal.clone()
    }

    /// The body for one attempt.
    pub(crate) fn to_send(&self) -> reqwest::Body {
        let start = Sending::Untouched(Arc::clone(&self.source), self.refusal.clone());
        let chunks = futures::stream::unfold(start, |state| async move {
            match state {
                Sending::Untouched(slot, refusal) => {
                    let taken = lock(&slot).take();
                    match taken {
                        Some(source) => next_chunk(source, refusal).await,
                        None => Some((
                            Err(std::io::Error::other(
                                "the request body went to another replica",
                            )),
                            Sending::Done,
                        )),
                    }
                }
                Sending::Reading(source, refusal) => next_chunk(source, refusal).await,
                Sending::Done => None,
            }
        });
        reqwest::Body::wrap_stream(chunks)
    }
}

enum Sending {
    Untouched(Arc<Mutex<Option<Source>>>, Refusal),
    Reading(Source, Refusal),
    Done,
}

async fn next_chunk(
    mut source: Source,
    refusal: Refusal,
) -> Option<(std::io::Result<Bytes>, Sending)> {
    if let Some(head) = source.head.take() {
        return Some((Ok(head), Sending::Reading(source, refusal)));
    }
    match source.rest.next().await? {
        Ok(chunk) => Some((Ok(chunk), Sending::Reading(source, refusal))),
        Err(error) => {
            let message = error.error.clone();
            *lock(&refusal.0) = Some(error);
            Some((Err(std::io::Error::other(message)), Sending::Done))
        }
    }
}

/// The client's failure while its body was sent, if there was one.
#[derive(Clone, Default)]
pub(crate) struct Refusal(Arc<Mutex<Option<MatrixError>>>);

impl Refusal {
    pub(crate) fn take(&self) -> Option<MatrixError> {
        lock(&self.0).take()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(items: Vec<Result<&'static [u8], MatrixError>>) -> BodyStream {
        futures::stream::iter(
            items
                .into_iter()
                .map(|item| item.map(Bytes::from_static))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    async fn sent(body: reqwest::Body) -> Result<Vec<u8>, String> {
        use http_body_util::BodyExt;
        body.collect()
            .await
            .map(|collected| collected.to_bytes().to_vec())
            .map_err(|error| error.to_string())
    }

    #[tokio::test]
    async fn small_bodies_stay_whole() {
        let body = BufferedBody::read(stream(vec![Ok(b"ab"), Ok(b"cd")]), 4).await;
        assert!(matches!(body, Ok(BufferedBody::Whole(bytes)) if bytes == "abcd"));
    }

    #[tokio::test]
    async fn large_bodies_go_to_the_first_attempt_that_reads_them() {
        let body = BufferedBody::read(stream(vec![Ok(b"abc"), Ok(b"def"), Ok(b"g")]), 2).await;
        let Ok(BufferedBody::Streaming(body)) = body else {
            panic!("a body past the limit streams");
        };
        // An attempt that never reads (it could not connect) takes nothing.
        drop(body.to_send());
        assert_eq!(sent(body.to_send()).await.as_deref(), Ok(&b"abcdefg"[..]));
        assert!(sent(body.to_send()).await.is_err(), "sent once only");
        assert!(body.refusal().take().is_none());
    }

    #[tokio::test]
    async fn the_clients_own_failure_is_kept_for_the_answer() {
        let too_large = MatrixError::too_large("Request body is larger than 5 bytes");
        let body =
            BufferedBody::read(stream(vec![Ok(b"abc"), Ok(b"def"), Err(too_large)]), 2).await;
        let Ok(BufferedBody::Streaming(body)) = body else {
            panic!("a body past the limit streams");
        };
        assert!(sent(body.to_send()).await.is_err());
        let refusal = body.refusal().take().expect("the client's failure");
        assert_eq!(refusal.errcode, "M_TOO_LARGE");
    }
}
