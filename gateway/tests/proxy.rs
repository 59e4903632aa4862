//! The gateway in front of tiny upstreams: sync stays with one replica per
//! user, other requests take turns, dead replicas are skipped, and a pool
//! with nothing to reach answers with Matrix errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use myelin_config::{Config, GatewayConfig};
use myelin_gateway::Gateway;
use myelin_gateway::route_table::RouteRole;
use myelin_http::{RequestContext, Router};
use myelin_process::{Role, Shutdown};
use myelin_store::{AccountStore, DeviceStore, NewUser};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 server answering every request with its own name and what it
/// was sent, one request per connection.
struct Upstream {
    name: &'static str,
    url: String,
    accept: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, name));
            }
        });
        Upstream { name, url, accept }
    }

    /// Stops listening: new connections are refused.
    async fn stop(&self) {
        self.accept.abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answer(mut stream: TcpStream, name: &'static str) {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0_u8; 4096];
        let Ok(read) = stream.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines.filter(|line| !line.is_empty()) {
        if let Some((header, value)) = line.split_once(':') {
            headers
                .entry(header.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|values| values.first())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    let reply = serde_json::json!({
        "name": name,
        "method": method,
        "target": target,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream: {name}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The gateway role with its router, probing in the background.
struct Harness {
    gateway: Arc<Gateway>,
    router: Router,
    store: Arc<myelin_store_sqlite::SqliteStore>,
    stop: tokio::sync::watch::Sender<bool>,
    dir: std::path::PathBuf,
}

impl Harness {
    async fn start(name: &str, gateway: GatewayConfig) -> Harness {
        let dir =
            std::env::temp_dir().join(format!("myelin-gateway-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Arc::new(
            myelin_store_sqlite::SqliteStore::open(&dir.join("db.sqlite"))
                .await
                .expect("store"),
        );
        let config = Config {
            server_name: "gateway.test".into(),
            public_baseurl: Some("https://matrix.gateway.test/".into()),
            gateway,
            ..Config::default()
        };
        let device_store: Arc<dyn DeviceStore> = store.clone();
        let role = Gateway::new(Arc::new(config), Arc::clone(&device_store));
        let mut router = Router::new(device_store, None);
        Arc::clone(&role).routes(&mut router);
        let (stop, shutdown) = Shutdown::new();
        tokio::spawn(Arc::clone(&role).run(shutdown));
        Harness {
            gateway: role,
            router,
            store,
            stop,
            dir,
        }
    }

    async fn add_user(&self, localpart: &str) -> String {
        let user_id = format!("@{localpart}:gateway.test");
        self.store
            .create_user(NewUser {
                user_id: user_id.clone(),
                password_hash: None,
                is_admin: false,
                created_ts: 0,
            })
            .await
            .expect("user");
        let token = format!("token-{localpart}");
        self.store
            .add_device_token(&user_id, "DEVICE", None, &token)
            .await
            .expect("token");
        token
    }

    async fn request(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Bytes::from(body.to_owned())).expect("request");
        let context = RequestContext {
            remote_ip: "203.0.113.9".parse().ok(),
            request_id: "req-42".to_owned(),
            ..RequestContext::default()
        };
        let response = self.router.dispatch(context, request).await;
        let status = response.status();
        let body = if response.body().starts_with(b"{") {
            serde_json::from_slice(response.body()).expect("json")
        } else {
            Value::String(String::from_utf8_lossy(response.body()).into_owned())
        };
        (status, body)
    }

    /// The upstream that answered a GET, which must succeed.
    async fn upstream_of(&self, uri: &str, headers: &[(&str, &str)]) -> String {
        let (status, body) = self.request(Method::GET, uri, headers, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body["name"].as_str().expect("name").to_owned()
    }

    /// Waits until the role's replicas at `urls` have the given health.
    async fn wait_for(&self, role: RouteRole, urls: &[&str], healthy: bool) {
        for _ in 0..300 {
            let replicas = self.gateway.replicas(role);
            let settled = urls.iter().all(|url| {
                replicas
                    .iter()
                    .any(|replica| replica.base == *url && replica.healthy == healthy)
            });
            if settled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{role:?} replicas {urls:?} never became healthy={healthy}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_sticks_to_a_replica_and_other_requests_take_turns() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let harness = Harness::start(
        "routing",
        GatewayConfig {
            client_api: vec![a.url.clone(), b.url.clone()],
            synchrotron: vec![a.url.clone(), b.url.clone(), c.url.clone()],
            media: Vec::new(),
            federation_api: Vec::new(),
            health_interval_ms: 100,
        },
    )
    .await;
    harness
        .wait_for(RouteRole::Synchrotron, &[&a.url, &b.url, &c.url], true)
        .await;
    harness
        .wait_for(RouteRole::ClientApi, &[&a.url, &b.url], true)
        .await;
    assert_eq!(harness.gateway.ready().await, Ok(()));

    // One user's syncs always reach the same replica, however the token comes.
    let mut placement = HashMap::new();
    for n in 0..30 {
        let token = harness.add_user(&format!("user{n}")).await;
        let bearer = format!("Bearer {token}");
        let first = harness
            .upstream_of(
                "/_matrix/client/v3/sync?timeout=0",
                &[("authorization", &bearer)],
            )
            .await;
        for _ in 0..3 {
            let again = harness
                .upstream_of(
                    "/_matrix/client/v3/sync?since=s1",
                    &[("authorization", &bearer)],
                )
                .await;
            assert_eq!(again, first);
        }
        let by_query = harness
            .upstream_of(
                &format!("/_matrix/client/r0/sync?access_token={token}"),
                &[],
            )
            .await;
        assert_eq!(by_query, first);
        placement.insert(bearer, first);
    }
    let used: std::collections::BTreeSet<&String> = placement.values().collect();
    assert!(used.len() >= 2, "30 users all on {used:?}");

    // Without a valid token any healthy replica answers.
    harness.upstream_of("/_matrix/client/v3/sync", &[]).await;
    harness
        .upstream_of(
            "/_matrix/client/v3/sync",
            &[("authorization", "Bearer nobody")],
        )
        .await;

    // Other requests take turns.
    let mut turns = Vec::new();
    for _ in 0..6 {
        turns.push(harness.upstream_of("/_matrix/client/versions", &[]).await);
    }
    assert!(turns.windows(2).all(|pair| pair[0] != pair[1]), "{turns:?}");
    assert!(
        turns.iter().all(|name| name == "a" || name == "b"),
        "{turns:?}"
    );

    // Method, path, query, body and the forwarding headers reach the worker;
    // hop-by-hop headers do not.
    let (status, echoed) = harness
        .request(
            Method::PUT,
            "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/t1?ts=1",
            &[
                ("authorization", "Bearer token-user0"),
                ("content-type", "application/json"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("proxy-authorization", "Basic x"),
                ("x-forwarded-for", "1.2.3.4"),
            ],
            r#"{"body":"hi"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(
        echoed["target"],
        "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/t1?ts=1"
    );
    assert_eq!(echoed["body"], r#"{"body":"hi"}"#);
    let headers = &echoed["headers"];
    assert_eq!(headers["x-forwarded-for"][0], "203.0.113.9");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
    assert_eq!(headers["x-request-id"][0], "req-42");
    assert_eq!(headers["authorization"][0], "Bearer token-user0");
    assert_eq!(headers["content-length"][0], "13");
    assert!(headers.get("x-hop").is_none(), "{headers}");
    assert!(headers.get("proxy-authorization").is_none(), "{headers}");

    // The edge answers its own paths; roles that are not there are unknown.
    let (status, well_known) = harness
        .request(Method::GET, "/.well-known/matrix/client", &[], "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        well_known["m.homeserver"]["base_url"],
        "https://matrix.gateway.test/"
    );
    for path in [
        "/_matrix/federation/v1/version",
        "/_matrix/media/v3/config",
        "/elsewhere",
    ] {
        let (status, body) = harness.request(Method::GET, path, &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["errcode"], "M_UNRECOGNIZED", "{path}");
    }
    // Served by the edge, but only with `serve_server_wellknown`.
    let (status, body) = harness
        .request(Method::GET, "/.well-known/matrix/server", &[], "")
        .await;
    assert_eq!(
        (status, &body["errcode"]),
        (StatusCode::NOT_FOUND, &Value::from("M_NOT_FOUND"))
    );

    // A synchrotron leaves: only its users move.
    c.stop().await;
    harness
        .wait_for(RouteRole::Synchrotron, &[&c.url], false)
        .await;
    let mut moved = 0;
    for (bearer, before) in &placement {
        let now = harness
            .upstream_of("/_matrix/client/v3/sync", &[("authorization", bearer)])
            .await;
        if before == c.name {
            moved += 1;
            assert_ne!(now, c.name);
        } else {
            assert_eq!(&now, before, "a user of a replica that stayed moved");
        }
    }
    assert!(moved < placement.len());

    // A client-api replica dies: after a health interval it gets nothing.
    b.stop().await;
    harness
        .wait_for(RouteRole::ClientApi, &[&b.url], false)
        .await;
    for _ in 0..4 {
        assert_eq!(
            harness.upstream_of("/_matrix/client/versions", &[]).await,
            a.name
        );
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pools_without_a_reachable_replica_answer_with_matrix_errors() {
    let unused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_url = format!("http://{}", unused.local_addr().expect("addr"));
    drop(unused);
    let harness = Harness::start(
        "unreachable",
        GatewayConfig {
            client_api: vec![dead_url.clone()],
            synchrotron: Vec::new(),
            media: vec![dead_url.clone()],
            federation_api: vec![dead_url.clone()],
            health_interval_ms: 100,
        },
    )
    .await;
    harness
        .wait_for(RouteRole::ClientApi, &[&dead_url], false)
        .await;
    for (path, role) in [
        ("/_matrix/client/versions", "client-api"),
        ("/_matrix/client/v3/sync", "synchrotron"),
        ("/_matrix/media/v3/config", "media"),
        ("/_matrix/federation/v1/version", "federation-api"),
    ] {
        let (status, body) = harness.request(Method::GET, path, &[], "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert_eq!(body["error"], format!("no healthy {role} replica"));
    }
    let not_ready = harness.gateway.ready().await.expect_err("not ready");
    assert!(not_ready.contains("client-api"), "{not_ready}");
    assert!(not_ready.contains("synchrotron"), "{not_ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_dies_between_probes_gives_bad_gateway() {
    let upstream = Upstream::start("only").await;
    let harness = Harness::start(
        "bad-gateway",
        GatewayConfig {
            client_api: vec![upstream.url.clone()],
            synchrotron: vec![upstream.url.clone()],
            media: Vec::new(),
            federation_api: Vec::new(),
            // No probe between the replica's death and the request.
            health_interval_ms: 600_000,
        },
    )
    .await;
    harness
        .wait_for(RouteRole::ClientApi, &[&upstream.url], true)
        .await;
    assert_eq!(
        harness.upstream_of("/_matrix/client/versions", &[]).await,
        "only"
    );
    upstream.stop().await;
    let (status, body) = harness
        .request(Method::GET, "/_matrix/client/versions", &[], "")
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["errcode"], "M_UNKNOWN");
    // The failed replica is out of rotation until a probe passes again.
    let replicas = harness.gateway.replicas(RouteRole::ClientApi);
    assert_eq!(replicas[0].addr, addr_of(&upstream.url));
    assert!(!replicas[0].healthy);
    let (status, body) = harness
        .request(Method::GET, "/_matrix/client/versions", &[], "")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "no healthy client-api replica");
}
