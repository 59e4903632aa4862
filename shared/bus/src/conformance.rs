//! One behaviour suite for every bus implementation. Callers pass a bus
//! whose streams are empty (a fresh prefix on a shared server).

use std::time::Duration;

use bytes::Bytes;

use crate::subjects::PERSISTED_EVENTS;
use crate::{Bus, BusError};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

pub async fn run_all(bus: &dyn Bus) {
    bus.ping().await.expect("ping");
    live_subscribers_get_matching_messages(bus).await;
    durable_consumer_replays_in_order_and_redelivers(bus).await;
    announcements_reach_subscribers_and_the_stream(bus).await;
    request_reply_and_missing_responder(bus).await;
    queue_group_handles_each_request_once(bus).await;
}

async fn live_subscribers_get_matching_messages(bus: &dyn Bus) {
    let mut all = bus.subscribe("persisted.>").await.expect("subscribe");
    let mut one = bus.subscribe("persisted.7").await.expect("subscribe");
    bus.publish("persisted.3", Bytes::from_static(b"three"))
        .await
        .expect("publish");
    bus.publish("persisted.7", Bytes::from_static(b"seven"))
        .await
        .expect("publish");
    let first = within("first live message", all.next())
        .await
        .expect("open");
    assert_eq!(
        (first.subject.as_str(), &first.payload[..]),
        ("persisted.3", &b"three"[..])
    );
    let second = within("second live message", all.next())
        .await
        .expect("open");
    assert_eq!(&second.payload[..], b"seven");
    let only = within("filtered live message", one.next())
        .await
        .expect("open");
    assert_eq!(
        &only.payload[..],
        b"seven",
        "persisted.3 must not reach persisted.7"
    );
}

async fn durable_consumer_replays_in_order_and_redelivers(bus: &dyn Bus) {
    for n in 0..3u8 {
        bus.publish("persisted.9", Bytes::from(vec![b'a' + n]))
            .await
            .expect("publish");
    }
    let ack_wait = Duration::from_secs(1);
    let mut consumer = bus
        .consume(&PERSISTED_EVENTS, "conformance-9", "persisted.9", ack_wait)
        .await
        .expect("consume");
    let first = within("durable a", consumer.next())
        .await
        .expect("open")
        .expect("delivery");
    assert_eq!(&first.message.payload[..], b"a");
    first.ack().await.expect("ack");
    let second = within("durable b", consumer.next())
        .await
        .expect("open")
        .expect("delivery");
    assert_eq!(&second.message.payload[..], b"b");
    // Not acknowledged: it must come back after ack_wait, before anything newer is lost.
    drop(second);
    drop(consumer);

    let mut again = bus
        .consume(&PERSISTED_EVENTS, "conformance-9", "persisted.9", ack_wait)
        .await
        .expect("consume");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let delivery = within("redelivery", again.next())
            .await
            .expect("open")
            .expect("delivery");
        seen.push(delivery.message.payload.clone());
        delivery.ack().await.expect("ack");
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")],
        "a was acknowledged"
    );
}

/// An announcement skips the storage confirmation, not the storage: live
/// subscribers get it and a durable consumer can still read it.
async fn announcements_reach_subscribers_and_the_stream(bus: &dyn Bus) {
    let mut live = bus.subscribe("persisted.11").await.expect("subscribe");
    bus.announce("persisted.11", Bytes::from_static(b"news"))
        .await
        .expect("announce");
    let heard = within("live announcement", live.next())
        .await
        .expect("open");
    assert_eq!(&heard.payload[..], b"news");
    let mut consumer = bus
        .consume(
            &PERSISTED_EVENTS,
            "conformance-11",
            "persisted.11",
            Duration::from_secs(30),
        )
        .await
        .expect("consume");
    let stored = within("stored announcement", consumer.next())
        .await
        .expect("open")
        .expect("delivery");
    assert_eq!(&stored.message.payload[..], b"news");
    stored.ack().await.expect("ack");
}

async fn request_reply_and_missing_responder(bus: &dyn Bus) {
    let missing = bus
        .request(
            "room_input.63",
            Bytes::from_static(b"?"),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(
            missing,
            Err(BusError::NoResponders(_)) | Err(BusError::Timeout)
        ),
        "{missing:?}"
    );
    let mut requests = bus
        .serve("room_input.*", "conformance")
        .await
        .expect("serve");
    let server = async {
        let request = within("request", requests.next()).await.expect("open");
        assert_eq!(request.message.subject, "room_input.5");
        let mut answer = request.message.payload.to_vec();
        answer.extend_from_slice(b"!");
        request.respond(Bytes::from(answer)).await.expect("respond");
    };
    let client = bus.request("room_input.5", Bytes::from_static(b"hi"), WAIT);
    let (answer, ()) = tokio::join!(client, server);
    assert_eq!(&answer.expect("answer")[..], b"hi!");
}

async fn queue_group_handles_each_request_once(bus: &dyn Bus) {
    let mut first = bus
        .serve("conformance.group.*", "conformance-group")
        .await
        .expect("serve");
    let mut second = bus
        .serve("conformance.group.*", "conformance-group")
        .await
        .expect("serve");
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let clients = async {
        for n in 0..6 {
            let answer = bus
                .request(
                    &format!("conformance.group.{n}"),
                    Bytes::from_static(b"x"),
                    WAIT,
                )
                .await
                .expect("answer");
            assert_eq!(&answer[..], b"ok");
        }
    };
    tokio::join!(
        clients,
        answer_all(&mut first, &answered),
        answer_all(&mut second, &answered)
    );
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "one answer per request"
    );
}

async fn answer_all(
    requests: &mut crate::RequestStream,
    answered: &std::sync::atomic::AtomicUsize,
) {
    while let Ok(Some(request)) =
        tokio::time::timeout(Duration::from_millis(1500), requests.next()).await
    {
        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        request
            .respond(Bytes::from_static(b"ok"))
            .await
            .expect("respond");
    }
}
