//! Connections, bodies and headers at the HTTP edge, on both shapes: a
//! client that declares a body and never sends it, bodies too large for
//! their route, and `X-Forwarded-For` headers a client forges to slip past
//! a rate limit. The attacker's sockets come from 127.0.0.2, so the
//! per-address cap falls on them and not on the well-behaved client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Client;
use crate::harness::{Server, metric_sum};
use crate::split::{Split, settings};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const STALLED_CONNECTIONS: usize = 300;
const PER_ADDRESS_CAP: usize = 20;
const BODY_TIMEOUT_MS: u64 = 2000;
/// The upload limit of these tests: above the 2 MiB body sent below.
const MAX_UPLOAD: &str = "3M";
const TWO_MIB: usize = 2 * 1024 * 1024;

fn socket_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|error| panic!("{url} is not http://ip:port: {error}"))
}

/// A connection from `from` to `target`.
async fn connect_from(from: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(target).await
}

/// The head of a POST that declares `declared` body bytes.
fn post_head(path: &str, declared: u64, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    format!(
        "POST {path} HTTP/1.1\r\nHost: edge.test\r\n{auth}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
}

/// Everything the server sends until it closes the connection (or `limit`
/// passes); a reset counts as closed.
async fn read_until_closed(mut stream: TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// One whole answer (head and a body of its declared length, or whatever
/// comes until the connection closes), or `None` when `limit` passes first.
/// A proxy in front may keep the connection open after it.
async fn read_answer(mut stream: TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let complete = |received: &[u8]| {
        let text = String::from_utf8_lossy(received);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        head.lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .is_some_and(|length| body.len() >= length)
    };
    tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        while !complete(&received) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// Status and Matrix body of a raw HTTP/1.1 answer.
fn status_and_body(answer: &str) -> (u16, Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// Sends only the head of a POST declaring `declared` bytes and expects
/// 413 `M_TOO_LARGE` at once, with none of the body sent.
async fn assert_refused_unsent(target: SocketAddr, path: &str, declared: u64, token: Option<&str>) {
    let mut stream = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), target)
        .await
        .expect("connect");
    stream
        .write_all(post_head(path, declared, token).as_bytes())
        .await
        .expect("send the head");
    let answer = read_answer(stream, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{path}: no answer within 5 s to a head alone"));
    let (status, body) = status_and_body(&answer);
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{path}: {answer}"
    );
}

/// Opens the stalled requests from the attacker's address while the normal
/// client keeps asking; returns once every stalled request has ended.
async fn stalled_bodies_end_while_others_are_served(target: SocketAddr, normal: &Client) {
    let mut stalled = JoinSet::new();
    let opened = Instant::now();
    for _ in 0..STALLED_CONNECTIONS {
        // A refused connect is the cap at work too (a full accept queue).
        let Ok(mut stream) = connect_from(ATTACKER, target).await else {
            continue;
        };
        let head = post_head("/_matrix/client/v3/login", 1000, None);
        // Writing to a connection the server closed at once may fail.
        let _ = stream.write_all(format!("{head}{{").as_bytes()).await;
        let limit = Duration::from_millis(BODY_TIMEOUT_MS) + Duration::from_secs(15);
        stalled.spawn(async move {
            let answer = read_until_closed(stream, limit).await;
            (answer, opened.elapsed())
        });
    }

    // Meanwhile the normal client gets its answers promptly.
    for _ in 0..5 {
        let asked = Instant::now();
        let versions = tokio::time::timeout(
            Duration::from_secs(1),
            normal.get("/_matrix/client/versions"),
        )
        .await
        .expect("a normal client is answered within a second");
        versions.ok();
        assert!(asked.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (mut closed_unread, mut timed_out) = (0, 0);
    while let Some(ended) = stalled.join_next().await {
        let (answer, after) = ended.expect("reader task");
        let answer = answer.unwrap_or_else(|| {
            panic!("a stalled request was still open {after:?} after the first was opened")
        });
        if answer.is_empty() {
            closed_unread += 1;
            continue;
        }
        let (status, body) = status_and_body(&answer);
        assert_eq!(
            (status, body["errcode"].as_str()),
            (408, Some("M_UNKNOWN")),
            "{answer}"
        );
        timed_out += 1;
    }
    println!("stalled bodies: {timed_out} timed out, {closed_unread} closed unread");
    assert!(
        timed_out >= PER_ADDRESS_CAP,
        "the admitted stalled requests end with 408 ({timed_out})"
    );
    assert!(
        closed_unread >= STALLED_CONNECTIONS / 2,
        "connections over the per-address cap are closed at once ({closed_unread})"
    );
}

/// Declared lengths over each route's limit are refused unread: 100 MiB
/// on a JSON route, past `max_upload_size` on an upload.
async fn declared_lengths_over_the_limit_are_refused_unread(url: &str, alice: &Client) {
    let target = socket_of(url);
    let token = alice.access_token.clone().expect("a token");
    assert_refused_unsent(target, "/_matrix/client/v3/login", 100 * 1024 * 1024, None).await;
    assert_refused_unsent(
        target,
        "/_matrix/media/v3/upload",
        4 * 1024 * 1024,
        Some(&token),
    )
    .await;
}

/// A 2 MiB login is refused while a 2 MiB upload goes through.
async fn two_mib_only_as_an_upload(url: &str, alice: &Client) {
    let token = alice.access_token.clone().expect("a token");
    let http = alice.http();
    let big_login = json!({"type": "m.login.password", "password": "x".repeat(TWO_MIB),
        "identifier": {"type": "m.id.user", "user": "alice"}});
    // Several times: a proxy that is still sending the body when the
    // answer comes must pass the 413 on, not turn it into a 502.
    for _ in 0..10 {
        let refused = http
            .post(format!("{url}/_matrix/client/v3/login"))
            .json(&big_login)
            .send()
            .await
            .expect("an answer to a 2 MiB login");
        assert_eq!(refused.status(), 413);
        let refused: Value = refused.json().await.expect("JSON");
        assert_eq!(refused["errcode"], "M_TOO_LARGE", "{refused}");
    }

    let upload = vec![7u8; TWO_MIB];
    let uploaded = http
        .post(format!("{url}/_matrix/media/v3/upload"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(upload)
        .send()
        .await
        .expect("an answer to a 2 MiB upload");
    assert_eq!(uploaded.status(), 200);
    let uploaded: Value = uploaded.json().await.expect("JSON");
    assert!(uploaded["content_uri"].is_string(), "{uploaded}");
}

/// A login attempt from a client bound to `from`, with a forwarded chain.
async fn login_status(url: &str, from: IpAddr, forwarded_for: &str) -> u16 {
    let http = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let body = json!({"type": "m.login.password", "password": "wrong",
        "identifier": {"type": "m.id.user", "user": "alice"}});
    http.post(format!("{url}/_matrix/client/v3/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&body)
        .send()
        .await
        .expect("an answer to a login")
        .status()
        .as_u16()
}

/// The login limiter's burst in these tests; it refills far slower than
/// the test runs.
const LOGIN_BURST: usize = 2;

fn login_limit_env() -> [(&'static str, &'static str); 2] {
    [
        ("MYELIN_RC_LOGIN__ADDRESS__PER_SECOND", "0.001"),
        ("MYELIN_RC_LOGIN__ADDRESS__BURST_COUNT", "2"),
    ]
}

/// From `untrusted`, a new forged address per attempt still runs into the
/// limit; from `trusted`, each forwarded address is a client of its own.
async fn forwarded_for_is_believed_only_from_trusted_peers(
    untrusted_url: &str,
    untrusted: IpAddr,
    trusted_url: &str,
    trusted: IpAddr,
) {
    let mut statuses = Vec::new();
    for n in 0..LOGIN_BURST + 2 {
        statuses.push(login_status(untrusted_url, untrusted, &format!("198.51.100.{n}")).await);
    }
    assert_eq!(
        statuses[LOGIN_BURST..],
        [429, 429],
        "forged X-Forwarded-For escaped the login limit: {statuses:?}"
    );
    assert!(
        statuses[..LOGIN_BURST].iter().all(|status| *status != 429),
        "{statuses:?}"
    );

    for n in 0..LOGIN_BURST + 2 {
        let status = login_status(trusted_url, trusted, &format!("203.0.113.{n}")).await;
        assert_ne!(
            status, 429,
            "forwarded client 203.0.113.{n} is limited on its own"
        );
    }
    // ... and one forwarded client is limited like any other.
    let mut same = Vec::new();
    for _ in 0..LOGIN_BURST + 1 {
        same.push(login_status(trusted_url, trusted, "192.0.2.50").await);
    }
    assert_eq!(same[LOGIN_BURST], 429, "{same:?}");
}

#[tokio::test]
async fn stalled_bodies_are_capped_per_address_and_end_after_the_body_timeout() {
    let server = Server::builder()
        .env("MYELIN_LISTENERS__0__X_FORWARDED", "false")
        .env(
            "MYELIN_EDGE_LIMITS__BODY_READ_TIMEOUT_MS",
            BODY_TIMEOUT_MS.to_string(),
        )
        .env(
            "MYELIN_EDGE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS",
            PER_ADDRESS_CAP.to_string(),
        )
        .start()
        .await;
    stalled_bodies_end_while_others_are_served(socket_of(&server.url()), &server.client()).await;
    let refused = metric_sum(
        &server.url(),
        "myelin_http_connections_refused_total",
        "cap=\"address\"",
    )
    .await;
    assert!(
        refused >= (STALLED_CONNECTIONS / 2) as u64,
        "refusals are counted ({refused})"
    );
    // The server is still whole afterwards.
    server.client().get("/_matrix/client/versions").await.ok();
}

#[tokio::test]
async fn bodies_over_the_route_limit_are_413_and_uploads_keep_theirs() {
    let server = Server::builder()
        .open_registration()
        .env("MYELIN_MAX_UPLOAD_SIZE", MAX_UPLOAD)
        .start()
        .await;
    let alice = server.client().register("alice", "pw-alice").await;
    declared_lengths_over_the_limit_are_refused_unread(&server.url(), &alice).await;
    two_mib_only_as_an_upload(&server.url(), &alice).await;
}

#[tokio::test]
async fn forged_forwarded_for_does_not_escape_the_login_limit() {
    let mut server = Server::builder().env("MYELIN_LISTENERS__0__TRUSTED_PROXIES", "127.0.0.2/32");
    for (key, value) in login_limit_env() {
        server = server.env(key, value);
    }
    let server = server.start().await;
    let url = server.url();
    forwarded_for_is_believed_only_from_trusted_peers(
        &url,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &url,
        ATTACKER,
    )
    .await;
}

/// The same edge through the split shape's gateway: the gateway trusts
/// only traefik's address (127.0.0.1), the workers trust the gateway.
#[tokio::test]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_gateway_applies_the_edge_limits_and_forwards_the_real_client() {
    let Some(settings) = settings() else { return };
    let mut env = vec![
        format!("MYELIN_MAX_UPLOAD_SIZE={MAX_UPLOAD}"),
        format!("MYELIN_EDGE_LIMITS__BODY_READ_TIMEOUT_MS={BODY_TIMEOUT_MS}"),
        format!("MYELIN_EDGE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS={PER_ADDRESS_CAP}"),
        "MYELIN_LISTENERS__0__TRUSTED_PROXIES=127.0.0.1/32".to_owned(),
    ];
    env.extend(login_limit_env().map(|(key, value)| format!("{key}={value}")));
    let split = Split::up_small_with_env(&settings, "1", &env).await;
    let (_, gateway_url, _) = split.processes("GATEWAY").remove(0);
    let traefik = split.client();
    let hs_url = traefik.url("");

    // Straight at the gateway from 127.0.0.2, which it does not trust.
    stalled_bodies_end_while_others_are_served(socket_of(&gateway_url), &traefik).await;

    let alice = traefik.register("alice", "split-edge-pw").await;
    // traefik waits for a body it forwards before passing on an early
    // answer, so the head-only requests go to the gateway itself.
    declared_lengths_over_the_limit_are_refused_unread(&gateway_url, &alice).await;
    two_mib_only_as_an_upload(&hs_url, &alice).await;

    // Through traefik from 127.0.0.2: whatever the client forges, the
    // gateway takes the address traefik saw, and so does the client-api
    // behind it. Straight from 127.0.0.1 (where traefik would be), the
    // forwarded address is the client.
    forwarded_for_is_believed_only_from_trusted_peers(
        &hs_url,
        ATTACKER,
        &gateway_url,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await;
}
