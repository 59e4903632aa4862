//! Bodies that need not sit in memory whole: a request body read as it
//! arrives, and a response body produced while it is sent. Most routes get
//! and give whole bodies; streamed routes (media uploads and downloads, the
//! gateway's proxying) use these so a 50 MB file is never held at once.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::MatrixError;

/// A request body in chunks as they arrive. The listener's body limit is
/// applied while it is read: past it the stream yields `M_TOO_LARGE`.
pub type BodyStream = BoxStream<'static, Result<Bytes, MatrixError>>;

/// A response body: whole, or a stream of chunks (which the connection
/// ends early on an error, as the status line is already sent).
pub enum ResponseBody {
    Full(Bytes),
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

impl ResponseBody {
    /// The whole body (for tests and callers inside the process).
    pub async fn collect(self) -> std::io::Result<Bytes> {
        match self {
            ResponseBody::Full(bytes) => Ok(bytes),
            ResponseBody::Stream(mut chunks) => {
                let mut collected = BytesMut::new();
                while let Some(chunk) = chunks.next().await {
                    collected.extend_from_slice(&chunk?);
                }
                Ok(collected.freeze())
            }
        }
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::Full(bytes)
    }
}

/// A body that is already whole, as a stream of one chunk.
pub fn body_stream(bytes: Bytes) -> BodyStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// Reads a body stream to its end.
pub async fn read_to_end(mut body: BodyStream) -> Result<Bytes, MatrixError> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        collected.extend_from_slice(&chunk?);
    }
    Ok(collected.freeze())
}

/// `chunks` cut off at `limit` bytes: past it the stream yields one
/// `M_TOO_LARGE` error and ends.
pub fn limited<S>(chunks: S, limit: u64) -> BodyStream
where
    S: futures::Stream<Item = Result<Bytes, MatrixError>> + Send + 'static,
{
    let state = (Box::pin(chunks), 0u64, false);
    futures::stream::unfold(state, move |(mut chunks, seen, done)| async move {
        if done {
            return None;
        }
        match chunks.next().await? {
            Ok(chunk) => {
                let seen = seen.saturating_add(chunk.len() as u64);
                if seen > limit {
                    let error = MatrixError::too_large(format!(
                        "Request body is larger than {limit} bytes"
                    ));
                    Some((Err(error), (chunks, seen, true)))
                } else {
                    Some((Ok(chunk), (chunks, seen, false)))
                }
            }
            Err(error) => Some((Err(error), (chunks, seen, true))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> BodyStream {
        let items: Vec<Result<Bytes, MatrixError>> = sizes
            .iter()
            .map(|size| Ok(Bytes::from(vec![b'x'; *size])))
            .collect();
        futures::stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn a_limited_body_passes_up_to_the_limit_and_stops_past_it() {
        let whole = read_to_end(limited(chunks(&[3, 4, 3]), 10)).await;
        assert_eq!(whole.map(|bytes| bytes.len()).ok(), Some(10));

        let mut over = limited(chunks(&[6, 6, 6]), 10);
        assert_eq!(over.next().await.map(|chunk| chunk.is_ok()), Some(true));
        let refused = over.next().await.expect("an item").expect_err("too large");
        assert_eq!(refused.errcode, "M_TOO_LARGE");
        assert!(over.next().await.is_none(), "nothing after the refusal");
    }

    #[tokio::test]
    async fn whole_and_streamed_bodies_collect_to_the_same_bytes() {
        let full = ResponseBody::from(Bytes::from_static(b"abc"));
        assert_eq!(full.collect().await.ok(), Some(Bytes::from_static(b"abc")));
        let parts: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"bc"))];
        let streamed = ResponseBody::Stream(futures::stream::iter(parts).boxed());
        assert_eq!(
            streamed.collect().await.ok(),
            Some(Bytes::from_static(b"abc"))
        );
        assert_eq!(
            read_to_end(body_stream(Bytes::from_static(b"xyz")))
                .await
                .ok(),
            Some(Bytes::from_static(b"xyz"))
        );
    }
}
