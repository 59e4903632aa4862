//! The bus conformance suite against a real NATS server, plus the start-up
//! behaviour of streams. Needs `MYELIN_TEST_NATS_URL` when built and run;
//! reported as ignored without it (see `build.rs`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use myelin_bus::BusError;
use myelin_bus_nats::NatsBus;

fn nats_url() -> Option<String> {
    let url = std::env::var("MYELIN_TEST_NATS_URL").ok();
    if url.is_none() {
        println!("skipped: MYELIN_TEST_NATS_URL not set");
    }
    url
}

/// Unique per run and per test, so runs sharing a server never meet.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{test}_{}_{nanos}", std::process::id())
}

#[tokio::test]
#[cfg_attr(not(myelin_test_nats), ignore = "set MYELIN_TEST_NATS_URL to run")]
async fn nats_bus_conforms() {
    let Some(url) = nats_url() else { return };
    let bus = Arc::new(
        NatsBus::connect(&url, &unique_prefix("conformance"))
            .await
            .expect("connect"),
    );
    // Run the suite in its own task so the streams are deleted even if it fails.
    let suite = tokio::spawn({
        let bus = bus.clone();
        async move { myelin_bus::conformance::run_all(bus.as_ref()).await }
    });
    let outcome = suite.await;
    bus.delete_streams().await.expect("delete streams");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
#[cfg_attr(not(myelin_test_nats), ignore = "set MYELIN_TEST_NATS_URL to run")]
async fn connecting_twice_with_one_prefix_shares_the_streams() {
    let Some(url) = nats_url() else { return };
    let prefix = unique_prefix("twice");
    let first = NatsBus::connect(&url, &prefix)
        .await
        .expect("first connect");
    let second = NatsBus::connect(&url, &prefix).await;
    first.delete_streams().await.expect("delete streams");
    second.expect("second connect");
}

/// Creates the deployment's persisted-events stream as another build (or an
/// operator) might have: with `subjects` and no limits.
async fn persisted_events_stream_made_by_hand(
    url: &str,
    prefix: &str,
    subjects: &[String],
) -> (jetstream::Context, String) {
    let client = async_nats::connect(url).await.expect("connect");
    let context = jetstream::new(client);
    let name = format!("{}_PERSISTED_EVENTS", prefix.to_uppercase());
    context
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: subjects.to_vec(),
            ..Default::default()
        })
        .await
        .expect("create the stream by hand");
    (context, name)
}

/// What the server holds for the stream now; the stream is deleted after.
async fn info_then_delete(context: &jetstream::Context, name: &str) -> jetstream::stream::Info {
    let mut stream = context.get_stream(name).await.expect("stream kept");
    let info = stream.info().await.expect("info").clone();
    context.delete_stream(name).await.expect("delete stream");
    info
}

#[tokio::test]
#[cfg_attr(not(myelin_test_nats), ignore = "set MYELIN_TEST_NATS_URL to run")]
async fn a_stream_with_other_subjects_is_refused_and_left_alone() {
    let Some(url) = nats_url() else { return };
    let prefix = unique_prefix("drift");
    let elsewhere = vec![format!("{prefix}.elsewhere.>")];
    let (context, name) = persisted_events_stream_made_by_hand(&url, &prefix, &elsewhere).await;

    let refused = NatsBus::connect(&url, &prefix).await;
    let subjects = info_then_delete(&context, &name).await.config.subjects;

    match refused {
        Err(BusError::Unavailable(reason)) => {
            assert!(reason.contains(&name), "{reason}");
            assert!(reason.contains("drift"), "{reason}");
        }
        Err(other) => panic!("wrong error: {other:?}"),
        Ok(_) => panic!("a drifted stream must be refused"),
    }
    assert_eq!(subjects, elsewhere, "never changed automatically");
}

/// A stream created without a retention limit (by an older build) gets one
/// at connect, and keeps its messages.
#[tokio::test]
#[cfg_attr(not(myelin_test_nats), ignore = "set MYELIN_TEST_NATS_URL to run")]
async fn a_stream_without_retention_gets_it_at_connect() {
    let Some(url) = nats_url() else { return };
    let prefix = unique_prefix("retention");
    let subjects = vec![format!("{prefix}.persisted.>")];
    let (context, name) = persisted_events_stream_made_by_hand(&url, &prefix, &subjects).await;
    context
        .publish(format!("{prefix}.persisted.1"), "kept".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let connected = NatsBus::connect(&url, &prefix).await;
    let info = info_then_delete(&context, &name).await;

    connected.expect("connect updates the limit");
    assert_eq!(info.config.max_age, myelin_bus_nats::RETENTION);
    assert_eq!(info.state.messages, 1, "updating the limit lost messages");
}
