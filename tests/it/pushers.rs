//! Pushers end to end: a push gateway double (an HTTP listener on a
//! loopback port that records every notification and answers as told)
//! receives what the server owes, with the right counts, in order, retried
//! after failures, and never again for a pushkey it rejected.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, encode};
use crate::harness::{Server, metric_sum};

/// How the double answers one notification.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Accept,
    Fail,
    Reject,
}

/// A push gateway on a loopback port.
pub(crate) struct PushGateway {
    pub(crate) url: String,
    /// Every notification received, with how it was answered.
    received: Arc<Mutex<Vec<(Value, bool)>>>,
    /// Answers to give, in order; `Accept` when none is left.
    script: Arc<Mutex<VecDeque<Answer>>>,
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

impl PushGateway {
    pub(crate) async fn start() -> PushGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gateway");
        let url = format!(
            "http://127.0.0.1:{}/_matrix/push/v1/notify",
            listener.local_addr().expect("its address").port()
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (log, answers) = (Arc::clone(&received), Arc::clone(&script));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, length) = loop {
                        let read = stream.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                            break (end + 4, content_length(&head));
                        }
                    };
                    while buffer.len() < head_end + length {
                        let read = stream.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                    }
                    let body: Value = serde_json::from_slice(&buffer[head_end..head_end + length])
                        .unwrap_or(Value::Null);
                    let answer = answers
                        .lock()
                        .expect("script")
                        .pop_front()
                        .unwrap_or(Answer::Accept);
                    let pushkeys: Vec<Value> = body["notification"]["devices"]
                        .as_array()
                        .map(|devices| devices.iter().map(|d| d["pushkey"].clone()).collect())
                        .unwrap_or_default();
                    let (status, reply) = match answer {
                        Answer::Accept => ("200 OK", json!({"rejected": []})),
                        Answer::Reject => ("200 OK", json!({"rejected": pushkeys})),
                        Answer::Fail => ("500 Internal Server Error", json!({})),
                    };
                    log.lock()
                        .expect("log")
                        .push((body, matches!(answer, Answer::Accept | Answer::Reject)));
                    let reply = reply.to_string();
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        reply.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        PushGateway {
            url,
            received,
            script,
        }
    }

    pub(crate) fn answer_next(&self, answers: &[Answer]) {
        self.script
            .lock()
            .expect("script")
            .extend(answers.iter().cloned());
    }

    /// Notifications received and accepted, in arrival order.
    pub(crate) fn accepted(&self) -> Vec<Value> {
        self.received
            .lock()
            .expect("log")
            .iter()
            .filter(|(_, accepted)| *accepted)
            .map(|(body, _)| body["notification"].clone())
            .collect()
    }

    pub(crate) fn attempts(&self) -> usize {
        self.received.lock().expect("log").len()
    }

    /// Waits until `done` holds for what was accepted.
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let accepted = self.accepted();
            if done(&accepted) {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "the push gateway never saw {what}; it got {accepted:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Event IDs of the accepted event notifications, in arrival order.
    pub(crate) fn event_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .filter_map(|n| n["event_id"].as_str().map(str::to_owned))
            .collect()
    }
}

pub(crate) fn pusher_body(url: &str, pushkey: &str, extra: Value) -> Value {
    let mut data = json!({"url": url});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    json!({
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": pushkey,
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": data,
    })
}

pub(crate) async fn set_pusher(client: &Client, body: &Value) {
    client
        .post("/_matrix/client/v3/pushers/set", body)
        .await
        .ok();
}

async fn receipt(client: &Client, room_id: &str, event_id: &str) {
    client
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                encode(room_id),
                encode(event_id)
            ),
            &json!({}),
        )
        .await
        .ok();
}

async fn server_reaching_loopback() -> Server {
    Server::builder()
        .open_registration()
        .env("MYELIN_IP_RANGE_WHITELIST", "['127.0.0.1/32']")
        .start()
        .await
}

/// Two users in a room: the second one's pusher, and the room.
async fn pair(server: &Server) -> (Client, Client, String) {
    let alice = server.client().register("alice", "pw-alice").await;
    let bob = server.client().register("bob", "pw-bob").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    (alice, bob, room_id)
}

#[tokio::test]
async fn notifications_reach_the_gateway_with_counts_and_a_receipt_clears_the_badge() {
    let server = server_reaching_loopback().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                encode(&room_id)
            ),
            &json!({"name": "Garden"}),
        )
        .await
        .ok();
    set_pusher(
        &bob,
        &pusher_body(&gateway.url, "bob-phone", json!({"extra": "kept"})),
    )
    .await;
    let listed = bob.get("/_matrix/client/v3/pushers").await.ok();
    assert_eq!(listed["pushers"][0]["pushkey"], "bob-phone");
    assert_eq!(listed["pushers"][0]["data"]["url"], gateway.url.as_str());
    assert_eq!(listed["pushers"][0]["data"]["extra"], "kept");

    let first = alice.send_text(&room_id, "hello bob").await;
    let got = gateway
        .wait_until("the first message", |seen| !seen.is_empty())
        .await;
    let notification = &got[0];
    assert_eq!(notification["event_id"], first.as_str());
    assert_eq!(notification["room_id"], room_id.as_str());
    assert_eq!(notification["type"], "m.room.message");
    assert_eq!(notification["sender"], alice.user_id.as_str());
    assert_eq!(notification["content"]["body"], "hello bob");
    assert_eq!(notification["room_name"], "Garden");
    assert_eq!(notification["counts"]["unread"], 1);
    let device = &notification["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["pushkey"], "bob-phone");
    assert_eq!(device["data"], json!({"extra": "kept"}), "data without url");
    // Two members: the one-to-one rule plays a sound.
    assert_eq!(device["tweaks"]["sound"], "default");

    let second = alice.send_text(&room_id, "still there?").await;
    let got = gateway
        .wait_until("the second message", |seen| seen.len() >= 2)
        .await;
    assert_eq!(got[1]["event_id"], second.as_str());
    assert_eq!(got[1]["counts"]["unread"], 1, "one room is unread");
    // The pusher's own user sends nothing to their own gateway.
    bob.send_text(&room_id, "yes").await;

    receipt(&bob, &room_id, &second).await;
    let got = gateway
        .wait_until("a badge update", |seen| {
            seen.iter().any(|n| n.get("event_id").is_none())
        })
        .await;
    let badge = got
        .iter()
        .find(|n| n.get("event_id").is_none())
        .expect("a badge");
    assert!(
        badge["counts"]
            .get("unread")
            .is_none_or(|unread| unread == 0),
        "everything is read: {badge}"
    );
    assert_eq!(gateway.event_ids(), [first, second]);
}

#[tokio::test]
async fn a_failing_gateway_is_retried_in_order_and_a_rejected_pushkey_removes_its_pusher() {
    let server = server_reaching_loopback().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    set_pusher(&bob, &pusher_body(&gateway.url, "bob-phone", json!({}))).await;
    gateway.answer_next(&[Answer::Fail, Answer::Fail]);
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(alice.send_text(&room_id, &format!("message {n}")).await);
    }
    gateway
        .wait_until("all three after two failures", |seen| seen.len() >= 3)
        .await;
    assert!(gateway.attempts() >= 5, "two failed attempts came first");
    assert_eq!(gateway.event_ids(), sent, "each once, in order");

    // The gateway rejects the pushkey: the pusher goes, nothing more is sent.
    gateway.answer_next(&[Answer::Reject]);
    alice.send_text(&room_id, "rejected").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = bob.get("/_matrix/client/v3/pushers").await.ok();
        if listed["pushers"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the pusher stayed: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = gateway.attempts();
    let last = alice.send_text(&room_id, "after the pusher went").await;
    // The event persisted after the pusher went; a pass has run once the
    // sender's own later message is visible to bob.
    let sync = bob.sync(None, 0).await;
    assert!(sync.to_string().contains(&last));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gateway.attempts(),
        attempts,
        "nothing sent after the rejection"
    );
}

#[tokio::test]
async fn event_id_only_pushers_get_ids_and_counts_but_no_content() {
    let server = server_reaching_loopback().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    set_pusher(
        &bob,
        &pusher_body(&gateway.url, "bob-ids", json!({"format": "event_id_only"})),
    )
    .await;
    let sent = alice.send_text(&room_id, "a secret").await;
    let got = gateway
        .wait_until("the event", |seen| !seen.is_empty())
        .await;
    let notification = &got[0];
    assert_eq!(notification["event_id"], sent.as_str());
    assert_eq!(notification["room_id"], room_id.as_str());
    assert_eq!(notification["counts"]["unread"], 1);
    for hidden in ["content", "sender", "type", "room_name"] {
        assert!(
            notification.get(hidden).is_none(),
            "{hidden} in {notification}"
        );
    }
    assert_eq!(
        notification["devices"][0]["data"]["format"],
        "event_id_only"
    );
    assert!(!notification.to_string().contains("a secret"));
}

/// Without a whitelist the private ranges are out of reach: the pusher is
/// kept, but nothing goes to a loopback gateway.
#[tokio::test]
async fn gateways_on_private_addresses_are_refused_by_default() {
    let server = Server::builder().open_registration().start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    set_pusher(&bob, &pusher_body(&gateway.url, "bob-phone", json!({}))).await;
    alice.send_text(&room_id, "hello").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(&server.url(), "myelin_push_deliveries_total", "failed").await == 0 {
        assert!(Instant::now() < deadline, "no delivery was tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gateway.attempts(), 0, "the loopback gateway was reached");
}

/// In the split shape the pusher role delivers; one killed with `kill -9`
/// loses nothing: what was persisted while no pusher ran is delivered, in
/// order and once, by the replica started after it.
#[tokio::test]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_a_killed_pusher_delivers_what_it_owed_after_restart() {
    let Some(settings) = crate::split::settings() else {
        return;
    };
    let env = ["MYELIN_IP_RANGE_WHITELIST=['127.0.0.1/32']".to_owned()];
    let mut split = crate::split::Split::up_small_with_env(&settings, "1", &env).await;
    let gateway = PushGateway::start().await;
    let alice = split.client().register("alice", "pw-split-push").await;
    let bob = split.client().register("bob", "pw-split-push").await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join(&room_id).await.ok();
    set_pusher(&bob, &pusher_body(&gateway.url, "bob-phone", json!({}))).await;

    let before = alice.send_text(&room_id, "before the kill").await;
    gateway
        .wait_until("the first message", |seen| !seen.is_empty())
        .await;
    for (name, _, pid) in split.processes("PUSHER") {
        split.kill9(&name, pid).await;
    }
    let mut owed = Vec::new();
    for n in 0..3 {
        owed.push(
            alice
                .send_text(&room_id, &format!("while no pusher ran {n}"))
                .await,
        );
    }
    let added = split.add("pusher").await;
    println!("started {} (pid {})", added.name, added.pid);
    let got = gateway
        .wait_until("what was owed", |seen| seen.len() >= 4)
        .await;
    let mut expected = vec![before];
    expected.extend(owed);
    assert_eq!(
        gateway.event_ids(),
        expected,
        "in order, each once: {got:#?}"
    );
    assert!(
        got.iter().all(|n| n["counts"]["unread"] == 1),
        "one unread room throughout"
    );
}
