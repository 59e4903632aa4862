//! Media and thumbnail metadata.

use async_trait::async_trait;
use myelin_store::{
    FillOutcome, MediaContent, MediaRecord, MediaStore, NewMedia, StoreResult, ThumbnailRecord,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, map_error};

const MEDIA_COLUMNS: &str = "media_id, uploader, created_ts, content_type, upload_name, size, \
     sha256, pending_expires_ts, authenticated";

fn media_from_row(row: &Row<'_>) -> rusqlite::Result<MediaRecord> {
    let sha256: Option<String> = row.get(6)?;
    let content = match sha256 {
        Some(sha256) => Some(MediaContent {
            content_type: row.get(3)?,
            upload_name: row.get(4)?,
            size: row.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
            sha256,
        }),
        None => None,
    };
    Ok(MediaRecord {
        media_id: row.get(0)?,
        uploader: row.get(1)?,
        created_ts: row.get(2)?,
        authenticated: row.get(8)?,
        content,
        pending_expires_ts: row.get(7)?,
    })
}

fn thumbnail_from_row(row: &Row<'_>) -> rusqlite::Result<ThumbnailRecord> {
    Ok(ThumbnailRecord {
        media_id: row.get(0)?,
        width: row.get(1)?,
        height: row.get(2)?,
        method: row.get(3)?,
        content_type: row.get(4)?,
        size: row.get::<_, i64>(5)?.max(0) as u64,
        sha256: row.get(6)?,
    })
}

#[async_trait]
impl MediaStore for SqliteStore {
    async fn create_media(&self, media: &NewMedia<'_>, content: &MediaContent) -> StoreResult<()> {
        let (media_id, uploader, content) = (
            media.media_id.to_owned(),
            media.uploader.to_owned(),
            content.clone(),
        );
        let (created_ts, authenticated) = (media.created_ts, media.authenticated);
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO media (media_id, uploader, created_ts, authenticated, content_type, \
                 upload_name, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    media_id,
                    uploader,
                    created_ts,
                    authenticated,
                    content.content_type,
                    content.upload_name,
                    content.size as i64,
                    content.sha256,
                ])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn create_pending_media(
        &self,
        media: &NewMedia<'_>,
        expires_ts: i64,
        max_pending: u64,
    ) -> StoreResult<bool> {
        let (media_id, uploader) = (media.media_id.to_owned(), media.uploader.to_owned());
        let (created_ts, authenticated) = (media.created_ts, media.authenticated);
        // The single writer makes the count and the insert one step.
        self.write(move |tx| {
            let pending: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM media WHERE uploader = ?1 \
                     AND pending_expires_ts IS NOT NULL AND pending_expires_ts > ?2",
                )
                .and_then(|mut statement| {
                    statement.query_row(params![uploader, created_ts], |row| row.get(0))
                })
                .map_err(map_error)?;
            if u64::try_from(pending).unwrap_or(0) >= max_pending {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO media (media_id, uploader, created_ts, authenticated, \
                 pending_expires_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    media_id,
                    uploader,
                    created_ts,
                    authenticated,
                    expires_ts
                ])
            })
            .map_err(map_error)?;
            Ok(true)
        })
        .await
    }

    async fn fill_pending_media(
        &self,
        media_id: &str,
        uploader: &str,
        now_ts: i64,
        content: &MediaContent,
    ) -> StoreResult<FillOutcome> {
        let (media_id, uploader, content) =
            (media_id.to_owned(), uploader.to_owned(), content.clone());
        self.write(move |tx| {
            let filled = tx
                .prepare_cached(
                    "UPDATE media SET content_type = ?3, upload_name = ?4, size = ?5, \
                     sha256 = ?6, pending_expires_ts = NULL \
                     WHERE media_id = ?1 AND uploader = ?2 AND sha256 IS NULL \
                     AND pending_expires_ts > ?7",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        media_id,
                        uploader,
                        content.content_type,
                        content.upload_name,
                        content.size as i64,
                        content.sha256,
                        now_ts,
                    ])
                })
                .map_err(map_error)?;
            if filled == 1 {
                return Ok(FillOutcome::Filled);
            }
            let existing: Option<(String, bool)> = tx
                .prepare_cached(
                    "SELECT uploader, sha256 IS NOT NULL FROM media WHERE media_id = ?1",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row([&media_id], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(map_error)?;
            Ok(classify_unfilled(existing, &uploader))
        })
        .await
    }

    async fn media(&self, media_id: &str) -> StoreResult<Option<MediaRecord>> {
        let media_id = media_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = ?1"
            ))
            .and_then(|mut statement| statement.query_row([media_id], media_from_row))
            .optional()
        })
        .await
    }

    async fn pending_media_count(&self, uploader: &str, now_ts: i64) -> StoreResult<u64> {
        let uploader = uploader.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM media WHERE uploader = ?1 \
                 AND pending_expires_ts IS NOT NULL AND pending_expires_ts > ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![uploader, now_ts], |row| row.get::<_, i64>(0))
            })
            .map(|count| count.max(0) as u64)
        })
        .await
    }

    async fn purge_expired_pending_media(&self, now_ts: i64) -> StoreResult<u64> {
        self.write(move |tx| {
            let purged = tx
                .prepare_cached(
                    "DELETE FROM media WHERE sha256 IS NULL AND pending_expires_ts <= ?1",
                )
                .and_then(|mut statement| statement.execute([now_ts]))
                .map_err(map_error)?;
            Ok(purged as u64)
        })
        .await
    }

    async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> StoreResult<Option<ThumbnailRecord>> {
        let (media_id, method) = (media_id.to_owned(), method.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT media_id, width, height, method, content_type, size, sha256 \
                 FROM media_thumbnails \
                 WHERE media_id = ?1 AND width = ?2 AND height = ?3 AND method = ?4",
            )
            .and_then(|mut statement| {
                statement.query_row(params![media_id, width, height, method], thumbnail_from_row)
            })
            .optional()
        })
        .await
    }

    async fn put_thumbnail(&self, thumbnail: &ThumbnailRecord) -> StoreResult<()> {
        let thumbnail = thumbnail.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO media_thumbnails \
                 (media_id, width, height, method, content_type, size, sha256) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (media_id, width, height, method) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    thumbnail.media_id,
                    thumbnail.width,
                    thumbnail.height,
                    thumbnail.method,
                    thumbnail.content_type,
                    thumbnail.size as i64,
                    thumbnail.sha256,
                ])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn thumbnails(&self, media_id: &str) -> StoreResult<Vec<ThumbnailRecord>> {
        let media_id = media_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT media_id, width, height, method, content_type, size, sha256 \
                 FROM media_thumbnails WHERE media_id = ?1 ORDER BY width, height, method",
            )?;
            let rows = statement.query_map([media_id], thumbnail_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        let sha256 = sha256.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = ?1) \
                 OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = ?1) \
                 OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = ?1)",
            )?
            .query_row([sha256], |row| row.get(0))
        })
        .await
    }

    async fn remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StoreResult<Option<MediaContent>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT content_type, upload_name, size, sha256 FROM remote_media \
                 WHERE origin = ?1 AND media_id = ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![origin, media_id], |row| {
                    Ok(MediaContent {
                        content_type: row.get(0)?,
                        upload_name: row.get(1)?,
                        size: row.get::<_, i64>(2)?.max(0) as u64,
                        sha256: row.get(3)?,
                    })
                })
            })
            .optional()
        })
        .await
    }

    async fn forget_remote_media(&self, fetched_before: i64) -> StoreResult<u64> {
        self.write(move |tx| {
            let forgotten = tx
                .prepare_cached("DELETE FROM remote_media WHERE fetched_ts < ?1")
                .and_then(|mut statement| statement.execute([fetched_before]))
                .map_err(map_error)?;
            Ok(forgotten as u64)
        })
        .await
    }

    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        content: &MediaContent,
        fetched_ts: i64,
    ) -> StoreResult<()> {
        let (origin, media_id, content) = (origin.to_owned(), media_id.to_owned(), content.clone());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO remote_media \
                 (origin, media_id, content_type, upload_name, size, sha256, fetched_ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (origin, media_id) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    origin,
                    media_id,
                    content.content_type,
                    content.upload_name,
                    content.size as i64,
                    content.sha256,
                    fetched_ts,
                ])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }
}

/// Why an upload did not fill a reserved ID, from the row as it is now
/// (owner, whether content is there).
fn classify_unfilled(existing: Option<(String, bool)>, uploader: &str) -> FillOutcome {
    match existing {
        None => FillOutcome::NotFound,
        Some((owner, _)) if owner != uploader => FillOutcome::NotOwner,
        Some((_, true)) => FillOutcome::AlreadyUploaded,
        // Still empty, so the reservation ran out.
        Some((_, false)) => FillOutcome::NotFound,
    }
}
