//! A NATS outage, simulated by a TCP proxy in front of the server: the bus
//! reports `Unavailable` promptly, and recovers by itself afterwards. Needs
//! `MYELIN_TEST_NATS_URL`; reported as ignored without it (see `build.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use myelin_bus::subjects::PERSISTED_EVENTS;
use myelin_bus::{Bus, BusError};
use myelin_bus_nats::NatsBus;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Forwards connections to the server until stopped; stopping closes them.
struct Proxy {
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(listen: SocketAddr, upstream: String) -> (Proxy, SocketAddr) {
        let listener = TcpListener::bind(listen).await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let forward = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    tasks.lock().expect("lock").push(forward.abort_handle());
                }
            }
        });
        tasks.lock().expect("lock").push(accept.abort_handle());
        (Proxy { tasks }, address)
    }

    fn stop(self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
#[cfg_attr(not(myelin_test_nats), ignore = "set MYELIN_TEST_NATS_URL to run")]
async fn an_outage_is_reported_and_survived() {
    let Ok(url) = std::env::var("MYELIN_TEST_NATS_URL") else {
        println!("skipped: MYELIN_TEST_NATS_URL not set");
        return;
    };
    let upstream = url
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .expect("host")
        .to_owned();
    let (proxy, address) =
        Proxy::start("127.0.0.1:0".parse().expect("address"), upstream.clone()).await;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let prefix = format!("reconnect_{}_{nanos}", std::process::id());
    let bus = NatsBus::connect(&format!("nats://{address}"), &prefix)
        .await
        .expect("connect");
    let mut live = bus.subscribe("persisted.>").await.expect("subscribe");
    let mut durable = bus
        .consume(
            &PERSISTED_EVENTS,
            "reconnect",
            "persisted.>",
            Duration::from_secs(2),
        )
        .await
        .expect("consume");
    bus.publish("persisted.1", Bytes::from_static(b"before"))
        .await
        .expect("publish before the outage");

    proxy.stop();
    let started = Instant::now();
    let failed = bus
        .publish("persisted.1", Bytes::from_static(b"during"))
        .await;
    assert!(
        matches!(failed, Err(BusError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(bus.ping().await, Err(BusError::Unavailable(_))));

    let (proxy, _) = Proxy::start(address, upstream).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match bus
            .publish("persisted.1", Bytes::from_static(b"after"))
            .await
        {
            Ok(()) => break,
            Err(error) => assert!(Instant::now() < deadline, "never recovered: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bus.ping().await.expect("ping after the outage");

    let live_after = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = live.next().await {
            if &message.payload[..] == b"after" {
                return message;
            }
        }
        panic!("subscription ended");
    })
    .await
    .expect("live message after the outage");
    assert_eq!(live_after.subject, "persisted.1");

    let mut seen = Vec::new();
    let consumed = tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.iter().any(|payload: &Bytes| &payload[..] == b"after") {
            match durable.next().await.expect("consumer never ends") {
                Ok(delivery) => {
                    seen.push(delivery.message.payload.clone());
                    // An ack lost to the outage only means a redelivery.
                    let _ = delivery.ack().await;
                }
                Err(BusError::Unavailable(_)) => {}
                Err(other) => panic!("unexpected consumer error: {other:?}"),
            }
        }
    })
    .await;

    bus.delete_streams().await.expect("delete streams");
    proxy.stop();
    consumed.unwrap_or_else(|_| panic!("durable delivery after the outage; saw {seen:?}"));
    assert!(seen.iter().any(|payload| &payload[..] == b"before"));
}
