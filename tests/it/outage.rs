//! Outages of the services the split shape stands on. With NATS or
//! PostgreSQL gone, a send gets a clear `503` Matrix error, never a silent
//! accept; once the service is back every process recovers by itself: ready
//! again, the failed send's retry (same transaction ID) acknowledged once,
//! sync delivering from the token it had before, nothing lost or doubled.
//!
//! NATS: a private nats-server (own port and store directory) is killed and
//! started again on the same port and store. PostgreSQL: the shared server
//! cannot be stopped under the tests running beside these, so the topology
//! reaches it through a TCP relay that, for the outage, cuts every open
//! connection and refuses new ones — what the processes see when the
//! database restarts.
//!
//! Runs when `MYELIN_TEST_POSTGRES_URL` and `MYELIN_TEST_NATS_URL` are set.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::client::Client;
use crate::harness::{TempDir, free_port};
use crate::split::{
    Split, message_history, next_batch, ready_status, register_users, send_path, send_retrying,
    settings, timeline_ids, try_sync,
};

/// How long the outage lasts: long enough for every client to notice.
const OUTAGE: Duration = Duration::from_secs(5);
/// How long the processes get to be ready again once the service is back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);
const ONE_OF_EACH: &[(&str, &str)] = &[
    ("CLIENT_APIS", "1"),
    ("SYNCHROTRONS", "1"),
    ("PERSISTERS", "1"),
    ("GATEWAYS", "1"),
];

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A nats-server with JetStream of this test's own.
struct PrivateNats {
    port: u16,
    store: TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    fn start() -> PrivateNats {
        let mut nats = PrivateNats {
            port: free_port(),
            store: TempDir::new("nats"),
            child: None,
        };
        nats.spawn();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        // Debian installs it outside a normal user's PATH.
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(self.port) {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to PostgreSQL that can cut every connection and refuse new
/// ones until it is restored.
struct Relay {
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept_loop: AbortHandle,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let down = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept_loop = tokio::spawn({
            let (down, connections) = (Arc::clone(&down), Arc::clone(&connections));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped: the connection closes at once
                    }
                    let target = target.clone();
                    let relayed = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut open = connections.lock().expect("relay connections");
                    open.retain(|handle: &AbortHandle| !handle.is_finished());
                    open.push(relayed.abort_handle());
                }
            }
        })
        .abort_handle();
        Relay {
            port,
            down,
            connections,
            accept_loop,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for connection in self
            .connections
            .lock()
            .expect("relay connections")
            .drain(..)
        {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.cut();
    }
}

/// `postgres://user@host:port/db` → (`host:port`, the URL with `authority`
/// in place of `host:port`).
fn split_postgres_url(url: &str, authority: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (server, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host_port) = match server.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), server),
    };
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (host_port, format!("{scheme}://{user}{authority}/{path}"))
}

/// One send attempt: the status and the JSON body.
async fn send_once(client: &Client, room_id: &str, txn_id: &str) -> (u16, Value) {
    let response = client
        .request_builder(reqwest::Method::PUT, &send_path(room_id, txn_id))
        .json(&json!({"msgtype": "m.text", "body": txn_id}))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap_or_else(|error| panic!("no answer to a send during the outage: {error}"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn wait_all_ready(split: &Split, what: &str) {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    for (name, url) in split.process_urls() {
        loop {
            let (status, body) = ready_status(&url).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not ready {RECOVERY_TIMEOUT:?} after {what} came back: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The scenario both outages share: `cut` takes the service away, `restore`
/// brings it back.
async fn sends_fail_clearly_then_recover(
    split: &Split,
    what: &str,
    cut: impl FnOnce(),
    restore: impl FnOnce(),
) {
    let alice = register_users(split, "outage", 1).await.remove(0);
    let room_id = alice
        .create_room(&json!({"preset": "private_chat", "name": "outage"}))
        .await;
    send_retrying(&alice, &room_id, "before-1")
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let since = next_batch(&try_sync(&alice, None, 0).await.expect("initial sync"));
    let client_api = split
        .processes("CLIENT_API")
        .first()
        .map(|(_, url, _)| url.clone())
        .expect("a client-api");

    cut();
    let outage_started = Instant::now();
    let mut refusals = 0;
    while outage_started.elapsed() < OUTAGE || refusals == 0 {
        let (status, body) = send_once(&alice, &room_id, "during-1").await;
        assert_eq!(
            status, 503,
            "a send with {what} down got {status} {body}, not 503"
        );
        assert!(
            body["errcode"].is_string() && body["error"].is_string(),
            "a 503 without a Matrix error body: {body}"
        );
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = ready_status(&client_api).await;
    assert_ne!(
        status, 200,
        "client-api says ready with {what} down: {body}"
    );
    println!("{refusals} sends refused with 503 while {what} was down");

    restore();
    wait_all_ready(split, what).await;
    let during = send_retrying(&alice, &room_id, "during-1")
        .await
        .unwrap_or_else(|error| panic!("after {what} came back: {error}"));
    let after = send_retrying(&alice, &room_id, "after-1")
        .await
        .unwrap_or_else(|error| panic!("after {what} came back: {error}"));

    // Sync from the token taken before the outage delivers both, once each.
    let expected = [during.event_id.clone(), after.event_id.clone()];
    let mut seen = Vec::new();
    let mut since = since;
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while !expected.iter().all(|id| seen.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "sync after {what} came back delivered {seen:?}, not {expected:?}"
        );
        match try_sync(&alice, Some(&since), 5000).await {
            Ok(sync) => {
                seen.extend(timeline_ids(&sync, &room_id));
                since = next_batch(&sync);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    for id in &expected {
        let count = seen.iter().filter(|seen| *seen == id).count();
        assert_eq!(count, 1, "sync delivered {id} {count} times");
    }

    let bodies: Vec<String> = message_history(&alice, &room_id)
        .await
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        bodies,
        ["before-1", "during-1", "after-1"],
        "the room's history after the {what} outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_nats_outage_gives_503_then_recovers() {
    let Some((postgres, _)) = settings() else {
        return;
    };
    let mut nats = PrivateNats::start();
    let split = Split::up_with(&(postgres, nats.url()), ONE_OF_EACH).await;
    let nats = Mutex::new(&mut nats);
    sends_fail_clearly_then_recover(
        &split,
        "NATS",
        || nats.lock().expect("nats").kill(),
        || nats.lock().expect("nats").spawn(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_postgres_outage_gives_503_then_recovers() {
    let Some((postgres, nats)) = settings() else {
        return;
    };
    let (target, _) = split_postgres_url(&postgres, "");
    let relay = Relay::start(target).await;
    let (_, relayed_url) = split_postgres_url(&postgres, &format!("127.0.0.1:{}", relay.port));
    let split = Split::up_with(&(relayed_url, nats), ONE_OF_EACH).await;
    sends_fail_clearly_then_recover(&split, "PostgreSQL", || relay.cut(), || relay.restore()).await;
}

#[test]
fn postgres_urls_are_pointed_at_the_relay() {
    let (target, relayed) = split_postgres_url(
        "postgres://postgres@127.0.0.1:5432/postgres",
        "127.0.0.1:9999",
    );
    assert_eq!(target, "127.0.0.1:5432");
    assert_eq!(relayed, "postgres://postgres@127.0.0.1:9999/postgres");
    let (target, _) = split_postgres_url("postgresql://localhost/db", "x:1");
    assert_eq!(target, "localhost:5432");
}
