//! Statements of one transaction sent together. Each is prepared first
//! (from the connection's cache after its first use), then all go out in
//! order before any answer is awaited: the server runs them one after the
//! other as sent, and the writer waits one round trip for the lot instead
//! of one per statement. A failed statement aborts the transaction, so
//! every later one fails too and the caller drops it uncommitted.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::Transaction;
use myelin_store::StoreResult;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::map_error;

/// One parameter, borrowed from what is written or owned by the pipeline.
pub(crate) type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

type Answer<'t> =
    Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 't>>;

#[derive(Default)]
pub(crate) struct Pipeline<'a> {
    statements: Vec<(Cow<'static, str>, Vec<Param<'a>>)>,
}

/// Which answer of a run belongs to a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(usize);

/// The rows each statement returned, in the order they were pushed.
pub(crate) struct Answers(Vec<Vec<Row>>);

impl Answers {
    pub(crate) fn rows(&self, slot: Slot) -> &[Row] {
        self.0.get(slot.0).map_or(&[], Vec::as_slice)
    }
}

impl<'a> Pipeline<'a> {
    pub(crate) fn push(
        &mut self,
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Param<'a>>,
    ) -> Slot {
        self.statements.push((sql.into(), params));
        Slot(self.statements.len() - 1)
    }

    pub(crate) async fn run(self, tx: &Transaction<'_>) -> StoreResult<Answers> {
        let mut prepared = Vec::with_capacity(self.statements.len());
        for (sql, _) in &self.statements {
            prepared.push(tx.prepare_cached(sql).await.map_err(map_error)?);
        }
        let mut answers: Vec<Answer<'_>> = prepared
            .iter()
            .zip(&self.statements)
            .map(|(statement, (_, params))| {
                let params: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|param| param.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                Box::pin(async move { tx.query(statement, &params).await }) as Answer<'_>
            })
            .collect();
        // A query goes out when its future is first polled: this pass polls
        // each once, in order, so they reach the server in that order.
        let mut done: Vec<Option<Vec<Row>>> = Vec::with_capacity(answers.len());
        let first_pass = std::future::poll_fn(|cx| {
            for answer in &mut answers {
                done.push(match answer.as_mut().poll(cx) {
                    Poll::Ready(result) => Some(result?),
                    Poll::Pending => None,
                });
            }
            Poll::Ready(Ok::<(), tokio_postgres::Error>(()))
        });
        first_pass.await.map_err(map_error)?;
        let waiting = answers
            .into_iter()
            .zip(&done)
            .filter(|(_, done)| done.is_none())
            .map(|(answer, _)| answer);
        let mut rest = futures::future::try_join_all(waiting)
            .await
            .map_err(map_error)?
            .into_iter();
        let rows = done
            .into_iter()
            .map(|done| done.or_else(|| rest.next()).unwrap_or_default())
            .collect();
        Ok(Answers(rows))
    }
}

/// Boxes each expression as a pipeline parameter.
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        vec![$(Box::new($param) as $crate::pipeline::Param<'_>),*]
    };
}
pub(crate) use params;

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

    /// A pool on the test server's database; `None` (skipped) without one.
    fn test_pool() -> Option<Pool> {
        let Ok(url) = std::env::var("MYELIN_TEST_POSTGRES_URL") else {
            println!("skipped: MYELIN_TEST_POSTGRES_URL not set");
            return None;
        };
        let config: tokio_postgres::Config = url.parse().expect("URL");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Some(Pool::builder(manager).max_size(1).build().expect("pool"))
    }

    /// Each insert counts the rows before it: the answers tell the order
    /// the server ran them in, and that each came back to its own slot.
    #[tokio::test]
    async fn statements_run_in_the_order_queued() {
        let Some(pool) = test_pool() else {
            return;
        };
        let mut client = pool.get().await.expect("connect");
        let tx = client.transaction().await.expect("begin");
        tx.batch_execute("CREATE TEMP TABLE queued (n BIGINT) ON COMMIT DROP")
            .await
            .expect("table");
        let mut pipeline = Pipeline::default();
        let slots: Vec<Slot> = (0..200)
            .map(|_| {
                pipeline.push(
                    "INSERT INTO queued (n) SELECT COUNT(*) FROM queued RETURNING n",
                    Vec::new(),
                )
            })
            .collect();
        let answers = pipeline.run(&tx).await.expect("run");
        let seen: Vec<i64> = slots
            .iter()
            .map(|slot| answers.rows(*slot)[0].get(0))
            .collect();
        assert_eq!(seen, (0..200).collect::<Vec<i64>>());
        tx.rollback().await.expect("rollback");
    }

    #[tokio::test]
    async fn a_failed_statement_fails_the_run() {
        let Some(pool) = test_pool() else {
            return;
        };
        let mut client = pool.get().await.expect("connect");
        let tx = client.transaction().await.expect("begin");
        let mut pipeline = Pipeline::default();
        pipeline.push("SELECT 1", Vec::new());
        pipeline.push("SELECT 1 / 0", Vec::new());
        pipeline.push("SELECT 2", Vec::new());
        assert!(pipeline.run(&tx).await.is_err());
    }
}
