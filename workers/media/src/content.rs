//! Finding the bytes behind a media ID of this server, with the Matrix
//! error for every way that can fail.

use bytes::Bytes;
use http::StatusCode;
use myelin_http::MatrixError;
use myelin_store::{MediaContent, MediaRecord};

use crate::{Media, media_ids};

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

impl Media {
    pub(crate) fn content_uri(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }

    /// The record and content of a finished upload of this server.
    pub(crate) async fn local_content(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<(MediaRecord, MediaContent), MatrixError> {
        // Media of other servers needs federation, which comes later; until
        // then it is simply not here.
        if server_name != self.server_name || !media_ids::is_valid(media_id) {
            return Err(MatrixError::not_found("Media not found"));
        }
        let record = self
            .media_store
            .media(media_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("Media not found"))?;
        match (&record.content, record.pending_expires_ts) {
            (Some(content), _) => {
                let content = content.clone();
                Ok((record, content))
            }
            // A reservation still waiting: clients may wait, but need not be
            // kept waiting here.
            (None, Some(expires)) if expires > now_ms() => Err(not_yet_uploaded()),
            (None, _) => Err(MatrixError::not_found("Media not found")),
        }
    }

    /// The bytes of a blob the store points at.
    pub(crate) async fn blob(&self, sha256: &str) -> Result<Bytes, MatrixError> {
        match self.files.read(sha256).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => {
                tracing::error!(sha256, "a media row points at a missing file");
                Err(MatrixError::not_found("Media not found"))
            }
            Err(error) => Err(files_unavailable(error)),
        }
    }
}
