//! Finding the bytes behind a media ID of this server, with the Matrix
//! error for every way that can fail.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use myelin_http::MatrixError;
use myelin_store::{MediaContent, MediaRecord, NewMedia};
use tokio::time::Instant;

use crate::handlers::Auth;
use crate::{Media, media_ids};

/// Bytes read from a file per chunk of a download.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// How long a download waits for a reserved upload when the client does not
/// say (`timeout_ms`; the spec's default).
const DEFAULT_UPLOAD_WAIT: Duration = Duration::from_secs(20);
/// The longest a client may make a download wait for an upload.
pub(crate) const MAX_UPLOAD_WAIT: Duration = Duration::from_secs(60);
/// Between looks at the store while waiting, doubling from the first to
/// the last: the upload may reach any replica, and the store is what they
/// share.
const UPLOAD_POLL_FIRST: Duration = Duration::from_millis(250);
const UPLOAD_POLL_LAST: Duration = Duration::from_secs(2);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn not_yet_uploaded() -> MatrixError {
    MatrixError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "M_NOT_YET_UPLOADED",
        "Content has not yet been uploaded",
    )
}

/// The store failed to read or write a file: the client may retry.
pub(crate) fn files_unavailable(error: std::io::Error) -> MatrixError {
    tracing::error!(%error, "media store IO failed");
    MatrixError::unavailable("The media store is unavailable; try again later")
}

/// How a download or thumbnail request wants its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fetch {
    /// How long to wait for a reserved upload (`timeout_ms`, capped).
    pub wait: Duration,
    /// It came on a legacy route, without an access token.
    pub without_token: bool,
}

impl Fetch {
    pub(crate) fn of<B>(
        request: &http::Request<B>,
        params: &BTreeMap<String, String>,
    ) -> Result<Fetch, MatrixError> {
        Ok(Fetch {
            wait: upload_wait(params)?,
            without_token: request.extensions().get::<Auth>() == Some(&Auth::None),
        })
    }
}

fn upload_wait(params: &BTreeMap<String, String>) -> Result<Duration, MatrixError> {
    let Some(value) = params.get("timeout_ms") else {
        return Ok(DEFAULT_UPLOAD_WAIT);
    };
    let millis: u64 = value.parse().map_err(|_| {
        MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "timeout_ms must be a whole number of milliseconds",
        )
    })?;
    Ok(Duration::from_millis(millis).min(MAX_UPLOAD_WAIT))
}

impl Media {
    /// A media ID `uploader` records now, marked as this server's setting says.
    pub(crate) fn new_media<'a>(&self, media_id: &'a str, uploader: &'a str) -> NewMedia<'a> {
        NewMedia {
            media_id,
            uploader,
            created_ts: now_ms(),
            authenticated: self.authenticated_media,
        }
    }

    /// Records stored content under a new media ID of `uploader`'s.
    pub(crate) async fn record_upload(
        &self,
        uploader: &str,
        content: &MediaContent,
    ) -> Result<String, MatrixError> {
        let (media_id, ()) = media_ids::insert_with_new_id(|media_id| async move {
            self.media_store
                .create_media(&self.new_media(&media_id, uploader), content)
                .await
        })
        .await?;
        Ok(media_id)
    }

    pub(crate) fn content_uri(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }

    /// The record and content of a finished upload of this server. A
    /// reservation still waiting for its upload is waited on for up to
    /// `fetch.wait`. Media marked authenticated-only is not there for a
    /// request without a token while the setting is on.
    pub(crate) async fn local_content(
        &self,
        server_name: &str,
        media_id: &str,
        fetch: Fetch,
    ) -> Result<(MediaRecord, MediaContent), MatrixError> {
        // Media of other servers is fetched (`remote_content`), not here.
        if server_name != self.server_name || !media_ids::is_valid(media_id) {
            return Err(MatrixError::not_found("Media not found"));
        }
        let deadline = Instant::now() + fetch.wait;
        let mut pause = UPLOAD_POLL_FIRST;
        loop {
            let record = self
                .media_store
                .media(media_id)
                .await?
                .filter(|record| {
                    !(fetch.without_token && record.authenticated && self.authenticated_media)
                })
                .ok_or_else(|| MatrixError::not_found("Media not found"))?;
            match (&record.content, record.pending_expires_ts) {
                (Some(content), _) => {
                    let content = content.clone();
                    return Ok((record, content));
                }
                (None, Some(expires)) if expires > now_ms() => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(not_yet_uploaded());
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(UPLOAD_POLL_LAST);
                }
                (None, _) => return Err(MatrixError::not_found("Media not found")),
            }
        }
    }

    /// The file of a blob the store points at, open, and its length.
    pub(crate) async fn open_blob(
        &self,
        sha256: &str,
    ) -> Result<(tokio::fs::File, u64), MatrixError> {
        pointed_at(self.files.open(sha256).await, sha256)
    }

    /// The bytes of a blob the store points at.
    pub(crate) async fn blob(&self, sha256: &str) -> Result<Bytes, MatrixError> {
        pointed_at(self.files.read(sha256).await, sha256)
    }
}

/// A blob a media row names: missing is a damaged store, seen as 404.
fn pointed_at<T>(found: std::io::Result<Option<T>>, sha256: &str) -> Result<T, MatrixError> {
    match found {
        Ok(Some(blob)) => Ok(blob),
        Ok(None) => {
            tracing::error!(sha256, "a media row points at a missing file");
            Err(MatrixError::not_found("Media not found"))
        }
        Err(error) => Err(files_unavailable(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(query: &[(&str, &str)]) -> Result<Duration, MatrixError> {
        let params = query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        upload_wait(&params)
    }

    #[test]
    fn upload_waits_follow_timeout_ms_within_bounds() {
        assert_eq!(wait_for(&[]).ok(), Some(DEFAULT_UPLOAD_WAIT));
        assert_eq!(wait_for(&[("timeout_ms", "0")]).ok(), Some(Duration::ZERO));
        assert_eq!(
            wait_for(&[("timeout_ms", "1500")]).ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait_for(&[("timeout_ms", "86400000")]).ok(),
            Some(MAX_UPLOAD_WAIT)
        );
        for bad in ["-1", "soon", "1.5", ""] {
            let error = wait_for(&[("timeout_ms", bad)]).expect_err(bad);
            assert_eq!(error.errcode, "M_INVALID_PARAM", "{bad}");
        }
    }
}
