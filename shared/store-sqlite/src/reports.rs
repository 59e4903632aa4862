//! Content reports and OpenID tokens.

use async_trait::async_trait;
use myelin_store::{NewReport, ReportRecord, ReportStore, StoreResult};
use rusqlite::OptionalExtension;

use crate::{SqliteStore, map_error};

#[async_trait]
impl ReportStore for SqliteStore {
    async fn add_report(&self, report: NewReport) -> StoreResult<i64> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO content_reports
                 (room_id, event_id, reporter, reason, score, received_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut statement| {
                statement.execute(rusqlite::params![
                    report.room_id,
                    report.event_id,
                    report.reporter,
                    report.reason,
                    report.score,
                    report.received_ts
                ])
            })
            .map_err(map_error)?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn reports(&self, before: Option<i64>, limit: usize) -> StoreResult<Vec<ReportRecord>> {
        let before = before.unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT report_id, room_id, event_id, reporter, reason, score, received_ts
                 FROM content_reports WHERE report_id < ?1 ORDER BY report_id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(rusqlite::params![before, limit], |row| {
                Ok(ReportRecord {
                    report_id: row.get(0)?,
                    report: NewReport {
                        room_id: row.get(1)?,
                        event_id: row.get(2)?,
                        reporter: row.get(3)?,
                        reason: row.get(4)?,
                        score: row.get(5)?,
                        received_ts: row.get(6)?,
                    },
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn add_openid_token(
        &self,
        token: &str,
        user_id: &str,
        expires_ts: i64,
        now: i64,
    ) -> StoreResult<()> {
        let token = token.to_owned();
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM openid_tokens WHERE expires_ts <= ?1")
                .and_then(|mut statement| statement.execute([now]))
                .map_err(map_error)?;
            tx.prepare_cached(
                "INSERT INTO openid_tokens (token, user_id, expires_ts) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut statement| {
                statement.execute(rusqlite::params![token, user_id, expires_ts])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn openid_token_owner(&self, token: &str, now: i64) -> StoreResult<Option<String>> {
        let token = token.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT user_id FROM openid_tokens WHERE token = ?1 AND expires_ts > ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(rusqlite::params![token, now], |row| row.get(0))
                    .optional()
            })
        })
        .await
    }
}
