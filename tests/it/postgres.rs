//! The single process on PostgreSQL: the end-to-end flow and a restart, in
//! a database made for the test and dropped after it.
//!
//! Runs when `MYELIN_TEST_POSTGRES_URL` names a server the tests may create
//! databases on, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

use crate::flows::{check_after_restart, end_to_end};
use crate::harness::Server;

const URL_VAR: &str = "MYELIN_TEST_POSTGRES_URL";

/// `url` with its database name replaced by `database` (query kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

async fn admin_connection(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {URL_VAR} ({url}): {error}"));
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("postgres admin connection: {error}");
        }
    });
    client
}

#[tokio::test]
#[cfg_attr(
    not(myelin_test_postgres),
    ignore = "set MYELIN_TEST_POSTGRES_URL to run"
)]
async fn postgres_single_process_flow_and_restart() {
    let Ok(admin_url) = std::env::var(URL_VAR) else {
        println!("skipped: {URL_VAR} not set");
        return;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let database = format!(
        "myelin_it_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = admin_connection(&admin_url).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
        .await
        .expect("drop a leftover test database");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create the test database");

    let database_url = with_database(&admin_url, &database);
    let server_url = database_url.clone();
    let run = tokio::spawn(async move {
        let mut server = Server::builder()
            .open_registration()
            .env("MYELIN_DATABASE__NAME", "psycopg2")
            .env("MYELIN_DATABASE__ARGS__URL", server_url)
            .start()
            .await;
        let outcome = end_to_end(&server).await;
        server.restart().await;
        check_after_restart(&server, &outcome).await;
        // The server must be gone before its database can be dropped.
        server.stop().await;
        // And it really was PostgreSQL that held the data.
        let check = admin_connection(&database_url).await;
        let tables: i64 = check
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .await
            .expect("count the tables")
            .get(0);
        assert!(tables > 0, "the test database has no tables");
    })
    .await;

    let dropped = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
    if let Err(panic) = run {
        std::panic::resume_unwind(panic.into_panic());
    }
    dropped.expect("drop the test database");
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@db:5432", "x"),
        "postgres://u:p@db:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u@h/db?sslmode=disable", "x"),
        "postgresql://u@h/x?sslmode=disable"
    );
}
