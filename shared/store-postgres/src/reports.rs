//! Content reports and OpenID tokens.

use async_trait::async_trait;
use myelin_store::{NewReport, ReportRecord, ReportStore, StoreError, StoreResult};

use crate::{PostgresStore, get};

#[async_trait]
impl ReportStore for PostgresStore {
    async fn add_report(&self, report: NewReport) -> StoreResult<i64> {
        self.query_opt(
            "INSERT INTO content_reports
             (room_id, event_id, reporter, reason, score, received_ts)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING report_id",
            &[
                &report.room_id,
                &report.event_id,
                &report.reporter,
                &report.reason,
                &report.score,
                &report.received_ts,
            ],
            |row| get(row, 0),
        )
        .await?
        .ok_or(StoreError::NotFound)
    }

    async fn reports(&self, before: Option<i64>, limit: usize) -> StoreResult<Vec<ReportRecord>> {
        let before = before.unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT report_id, room_id, event_id, reporter, reason, score, received_ts
             FROM content_reports WHERE report_id < $1 ORDER BY report_id DESC LIMIT $2",
            &[&before, &limit],
            |row| {
                Ok(ReportRecord {
                    report_id: get(row, 0)?,
                    report: NewReport {
                        room_id: get(row, 1)?,
                        event_id: get(row, 2)?,
                        reporter: get(row, 3)?,
                        reason: get(row, 4)?,
                        score: get(row, 5)?,
                        received_ts: get(row, 6)?,
                    },
                })
            },
        )
        .await
    }

    async fn add_openid_token(
        &self,
        token: &str,
        user_id: &str,
        expires_ts: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.execute("DELETE FROM openid_tokens WHERE expires_ts <= $1", &[&now])
            .await?;
        self.execute(
            "INSERT INTO openid_tokens (token, user_id, expires_ts) VALUES ($1, $2, $3)",
            &[&token, &user_id, &expires_ts],
        )
        .await?;
        Ok(())
    }

    async fn openid_token_owner(&self, token: &str, now: i64) -> StoreResult<Option<String>> {
        self.query_opt(
            "SELECT user_id FROM openid_tokens WHERE token = $1 AND expires_ts > $2",
            &[&token, &now],
            |row| get(row, 0),
        )
        .await
    }
}
