//! Media and thumbnail metadata.

use async_trait::async_trait;
use myelin_store::{
    FillOutcome, MediaContent, MediaRecord, MediaStore, NewMedia, StoreResult, ThumbnailRecord,
};
use tokio_postgres::Row;

use crate::{PostgresStore, get, map_error, tx_execute, tx_query_opt};

fn media_from_row(row: &Row) -> StoreResult<MediaRecord> {
    let sha256: Option<String> = get(row, 6)?;
    let content = match sha256 {
        Some(sha256) => Some(MediaContent {
            content_type: get(row, 3)?,
            upload_name: get(row, 4)?,
            size: get::<Option<i64>>(row, 5)?.unwrap_or(0).max(0) as u64,
            sha256,
        }),
        None => None,
    };
    Ok(MediaRecord {
        media_id: get(row, 0)?,
        uploader: get(row, 1)?,
        created_ts: get(row, 2)?,
        authenticated: get(row, 8)?,
        content,
        pending_expires_ts: get(row, 7)?,
    })
}

fn thumbnail_from_row(row: &Row) -> StoreResult<ThumbnailRecord> {
    Ok(ThumbnailRecord {
        media_id: get(row, 0)?,
        width: dimension(get(row, 1)?),
        height: dimension(get(row, 2)?),
        method: get(row, 3)?,
        content_type: get(row, 4)?,
        size: get::<i64>(row, 5)?.max(0) as u64,
        sha256: get(row, 6)?,
    })
}

fn dimension(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

#[async_trait]
impl MediaStore for PostgresStore {
    async fn create_media(&self, media: &NewMedia<'_>, content: &MediaContent) -> StoreResult<()> {
        self.execute(
            "INSERT INTO media (media_id, uploader, created_ts, authenticated, content_type, \
             upload_name, size, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &media.media_id,
                &media.uploader,
                &media.created_ts,
                &media.authenticated,
                &content.content_type,
                &content.upload_name,
                &(content.size as i64),
                &content.sha256,
            ],
        )
        .await?;
        Ok(())
    }

    async fn create_pending_media(
        &self,
        media: &NewMedia<'_>,
        expires_ts: i64,
        max_pending: u64,
    ) -> StoreResult<bool> {
        let (uploader, created_ts) = (media.uploader, media.created_ts);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        // One uploader's reservations one at a time, until commit. The
        // two-key form lives apart from the single-key locks of leases. A
        // caller queued behind a flood of its own requests gives up (and
        // its pool connection) after a few seconds.
        tx_execute(&tx, "SET LOCAL lock_timeout = '5s'", &[]).await?;
        tx_execute(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('myelin.media.pending'), hashtext($1))",
            &[&uploader],
        )
        .await?;
        let pending = tx_query_opt(
            &tx,
            "SELECT COUNT(*) FROM media WHERE uploader = $1 \
             AND pending_expires_ts IS NOT NULL AND pending_expires_ts > $2",
            &[&uploader, &created_ts],
            |row| get::<i64>(row, 0),
        )
        .await?
        .unwrap_or(0);
        if u64::try_from(pending).unwrap_or(0) >= max_pending {
            tx.rollback().await.map_err(map_error)?;
            return Ok(false);
        }
        tx_execute(
            &tx,
            "INSERT INTO media (media_id, uploader, created_ts, authenticated, \
             pending_expires_ts) VALUES ($1, $2, $3, $4, $5)",
            &[
                &media.media_id,
                &uploader,
                &created_ts,
                &media.authenticated,
                &expires_ts,
            ],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn fill_pending_media(
        &self,
        media_id: &str,
        uploader: &str,
        now_ts: i64,
        content: &MediaContent,
    ) -> StoreResult<FillOutcome> {
        // The update alone decides who fills the ID; the read after a miss
        // only explains why, and a row that changes meanwhile changes nothing.
        let filled = self
            .execute(
                "UPDATE media SET content_type = $3, upload_name = $4, size = $5, \
                 sha256 = $6, pending_expires_ts = NULL \
                 WHERE media_id = $1 AND uploader = $2 AND sha256 IS NULL \
                 AND pending_expires_ts > $7",
                &[
                    &media_id,
                    &uploader,
                    &content.content_type,
                    &content.upload_name,
                    &(content.size as i64),
                    &content.sha256,
                    &now_ts,
                ],
            )
            .await?;
        if filled == 1 {
            return Ok(FillOutcome::Filled);
        }
        let existing = self
            .query_opt(
                "SELECT uploader, sha256 IS NOT NULL FROM media WHERE media_id = $1",
                &[&media_id],
                |row| Ok((get::<String>(row, 0)?, get::<bool>(row, 1)?)),
            )
            .await?;
        Ok(match existing {
            None => FillOutcome::NotFound,
            Some((owner, _)) if owner != uploader => FillOutcome::NotOwner,
            Some((_, true)) => FillOutcome::AlreadyUploaded,
            // Still empty, so the reservation ran out.
            Some((_, false)) => FillOutcome::NotFound,
        })
    }

    async fn media(&self, media_id: &str) -> StoreResult<Option<MediaRecord>> {
        self.query_opt(
            "SELECT media_id, uploader, created_ts, content_type, upload_name, size, sha256, \
             pending_expires_ts, authenticated FROM media WHERE media_id = $1",
            &[&media_id],
            media_from_row,
        )
        .await
    }

    async fn pending_media_count(&self, uploader: &str, now_ts: i64) -> StoreResult<u64> {
        let count = self
            .query_opt(
                "SELECT COUNT(*) FROM media WHERE uploader = $1 \
                 AND pending_expires_ts IS NOT NULL AND pending_expires_ts > $2",
                &[&uploader, &now_ts],
                |row| get::<i64>(row, 0),
            )
            .await?;
        Ok(count.unwrap_or(0).max(0) as u64)
    }

    async fn purge_expired_pending_media(&self, now_ts: i64) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM media WHERE sha256 IS NULL AND pending_expires_ts <= $1",
            &[&now_ts],
        )
        .await
    }

    async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> StoreResult<Option<ThumbnailRecord>> {
        self.query_opt(
            "SELECT media_id, width, height, method, content_type, size, sha256 \
             FROM media_thumbnails \
             WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4",
            &[&media_id, &i64::from(width), &i64::from(height), &method],
            thumbnail_from_row,
        )
        .await
    }

    async fn put_thumbnail(&self, thumbnail: &ThumbnailRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO media_thumbnails \
             (media_id, width, height, method, content_type, size, sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (media_id, width, height, method) DO NOTHING",
            &[
                &thumbnail.media_id,
                &i64::from(thumbnail.width),
                &i64::from(thumbnail.height),
                &thumbnail.method,
                &thumbnail.content_type,
                &(thumbnail.size as i64),
                &thumbnail.sha256,
            ],
        )
        .await?;
        Ok(())
    }

    async fn thumbnails(&self, media_id: &str) -> StoreResult<Vec<ThumbnailRecord>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the locale.
        self.query(
            r#"SELECT media_id, width, height, method, content_type, size, sha256
               FROM media_thumbnails WHERE media_id = $1
               ORDER BY width, height, method COLLATE "C""#,
            &[&media_id],
            thumbnail_from_row,
        )
        .await
    }

    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        let in_use = self
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1) \
                 OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1) \
                 OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = $1)",
                &[&sha256],
                |row| get::<bool>(row, 0),
            )
            .await?;
        Ok(in_use.unwrap_or(false))
    }

    async fn remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StoreResult<Option<MediaContent>> {
        self.query_opt(
            "SELECT content_type, upload_name, size, sha256 FROM remote_media \
             WHERE origin = $1 AND media_id = $2",
            &[&origin, &media_id],
            |row| {
                Ok(MediaContent {
                    content_type: get(row, 0)?,
                    upload_name: get(row, 1)?,
                    size: get::<i64>(row, 2)?.max(0) as u64,
                    sha256: get(row, 3)?,
                })
            },
        )
        .await
    }

    async fn forget_remote_media(&self, fetched_before: i64) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM remote_media WHERE fetched_ts < $1",
            &[&fetched_before],
        )
        .await
    }

    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        content: &MediaContent,
        fetched_ts: i64,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO remote_media \
             (origin, media_id, content_type, upload_name, size, sha256, fetched_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (origin, media_id) DO NOTHING",
            &[
                &origin,
                &media_id,
                &content.content_type,
                &content.upload_name,
                &(content.size as i64),
                &content.sha256,
                &fetched_ts,
            ],
        )
        .await?;
        Ok(())
    }
}
