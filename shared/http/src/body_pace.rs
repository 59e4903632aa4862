//! How fast a request body must arrive. A client that declares a large body
//! and then sends nothing (or a byte now and then) would otherwise hold its
//! connection, and a file descriptor, for as long as it likes.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::MatrixError;
use crate::body::BodyStream;

/// The pace a request body is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// No chunk for this long ends the body.
    pub idle_timeout: Duration,
    /// After `grace`, fewer bytes per second than this on average end it
    /// (0: no floor).
    pub min_bytes_per_second: u64,
    pub grace: Duration,
}

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace {
            idle_timeout: Duration::from_secs(30),
            min_bytes_per_second: 1024,
            grace: Duration::from_secs(30),
        }
    }
}

impl BodyPace {
    /// Whether `received` bytes in `elapsed` is below the floor.
    fn too_slow(&self, received: u64, elapsed: Duration) -> bool {
        if self.min_bytes_per_second == 0 || elapsed <= self.grace {
            return false;
        }
        let expected = self.min_bytes_per_second as f64 * elapsed.as_secs_f64();
        (received as f64) < expected
    }
}

/// `chunks` held to `pace`: a stall or a crawl yields one 408 error and
/// ends the stream. The clock starts when the body is first read, so time
/// the server spends before reading it is not held against the client.
pub fn paced<S>(chunks: S, pace: BodyPace) -> BodyStream
where
    S: futures::Stream<Item = Result<Bytes, MatrixError>> + Send + 'static,
{
    struct State<S> {
        chunks: std::pin::Pin<Box<S>>,
        started: Option<Instant>,
        received: u64,
        done: bool,
    }
    let state = State {
        chunks: Box::pin(chunks),
        started: None,
        received: 0,
        done: false,
    };
    futures::stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        let started = *state.started.get_or_insert_with(Instant::now);
        let next = tokio::time::timeout(pace.idle_timeout, state.chunks.next()).await;
        let item = match next {
            Err(_) => {
                state.done = true;
                Err(MatrixError::body_timeout(format!(
                    "No part of the request body arrived for {} s",
                    pace.idle_timeout.as_secs_f64()
                )))
            }
            Ok(None) => return None,
            Ok(Some(Err(error))) => {
                state.done = true;
                Err(error)
            }
            Ok(Some(Ok(chunk))) => {
                state.received = state.received.saturating_add(chunk.len() as u64);
                if pace.too_slow(state.received, started.elapsed()) {
                    state.done = true;
                    Err(MatrixError::body_timeout(format!(
                        "The request body arrives slower than {} bytes per second",
                        pace.min_bytes_per_second
                    )))
                } else {
                    Ok(chunk)
                }
            }
        };
        Some((item, state))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(idle_ms: u64, floor: u64, grace_ms: u64) -> BodyPace {
        BodyPace {
            idle_timeout: Duration::from_millis(idle_ms),
            min_bytes_per_second: floor,
            grace: Duration::from_millis(grace_ms),
        }
    }

    /// A body that sends `size` bytes every `every`, `count` times.
    fn trickle(size: usize, every: Duration, count: usize) -> BodyStream {
        futures::stream::iter(0..count)
            .then(move |_| async move {
                tokio::time::sleep(every).await;
                Ok(Bytes::from(vec![b'x'; size]))
            })
            .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_408_after_the_idle_timeout() {
        let stalled = futures::stream::pending::<Result<Bytes, MatrixError>>();
        let mut body = paced(stalled, pace(2_000, 0, 0));
        let started = Instant::now();
        let refused = body.next().await.expect("an item").expect_err("timed out");
        assert_eq!(refused.status.as_u16(), 408);
        assert_eq!(refused.errcode, "M_UNKNOWN");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(body.next().await.is_none(), "nothing after the refusal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crawling_body_ends_after_the_grace_period_and_a_steady_one_passes() {
        // 100 bytes a second against a floor of 1000: refused once the
        // 5 s grace is over, never before.
        let mut crawling = paced(
            trickle(100, Duration::from_secs(1), 60),
            pace(2_000, 1000, 5_000),
        );
        let mut passed = 0;
        let refused = loop {
            match crawling.next().await.expect("an item") {
                Ok(_) => passed += 1,
                Err(error) => break error,
            }
        };
        assert_eq!(refused.status.as_u16(), 408);
        assert_eq!(passed, 5, "every chunk within the grace period passes");

        let steady = paced(
            trickle(2000, Duration::from_secs(1), 20),
            pace(2_000, 1000, 5_000),
        );
        let whole = crate::body::read_to_end(steady)
            .await
            .expect("a steady body");
        assert_eq!(whole.len(), 40_000);
    }
}
