//! Random and truncated JSON thrown at the request parsers of every role in
//! one process: each answer is a Matrix error with a 4xx status (or a
//! success), never a 5xx and never a panic.

use std::sync::Arc;

use bytes::Bytes;
use myelin_config::{Config, SigningKeyFile};
use myelin_http::{RequestContext, Router};
use myelin_process::{Deps, Role, Shutdown};
use proptest::prelude::*;
use serde_json::{Value, json};

struct App {
    router: Router,
    runtime: tokio::runtime::Runtime,
    token: String,
    room_id: String,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn request(app: &App, method: &str, path: &str, body: Bytes, token: Option<&str>) -> (u16, Value) {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = builder.body(body).expect("request");
    let response = app
        .runtime
        .block_on(app.router.dispatch(RequestContext::default(), request));
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (status, body)
}

fn app() -> &'static App {
    static APP: std::sync::OnceLock<App> = std::sync::OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("myelin-malformed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let config = Config {
            server_name: "fuzz.test".into(),
            enable_registration: true,
            enable_registration_without_verification: true,
            ..Config::default()
        };
        let (router, stop) = runtime.block_on(async {
            let store = Arc::new(
                myelin_store_sqlite::SqliteStore::open(&dir.join("db.sqlite"))
                    .await
                    .expect("store"),
            );
            let key = myelin_room::ServerKey::from_file("fuzz.test", &SigningKeyFile::generate())
                .expect("key");
            let mut config = config;
            // No rate limits: the fuzzer sends far faster than any client.
            for limit in [
                &mut config.rate_limits.rc_message,
                &mut config.rate_limits.rc_registration,
            ] {
                limit.per_second = 0.0;
            }
            config.rate_limits.rc_login.address.per_second = 0.0;
            config.rate_limits.rc_login.account.per_second = 0.0;
            config.rate_limits.rc_login.failed_attempts.per_second = 0.0;
            config.rate_limits.rc_joins.local.per_second = 0.0;
            let deps = Deps::new(
                config,
                store,
                Arc::new(myelin_bus::memory::MemoryBus::new()),
                key,
                prometheus::Registry::new(),
            )
            .expect("deps");
            let roles: Vec<Arc<dyn Role>> = vec![
                myelin_event_persister::role(&deps),
                myelin_client_api::role(&deps),
                myelin_synchrotron::role(&deps),
            ];
            let mut router = Router::new(deps.store.clone(), None);
            let (stop, shutdown) = Shutdown::new();
            for role in roles {
                Arc::clone(&role).routes(&mut router);
                tokio::spawn(role.run(shutdown.clone()));
            }
            (router, stop)
        });
        let mut app = App {
            router,
            runtime,
            token: String::new(),
            room_id: String::new(),
            _stop: stop,
        };
        let body =
            json!({"username": "fuzzer", "password": "pw", "auth": {"type": "m.login.dummy"}});
        let (status, registered) = request(
            &app,
            "POST",
            "/_matrix/client/v3/register",
            Bytes::from(body.to_string()),
            None,
        );
        assert_eq!(status, 200, "{registered}");
        app.token = registered["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let (status, room) = request(
            &app,
            "POST",
            "/_matrix/client/v3/createRoom",
            Bytes::from_static(b"{}"),
            Some(&app.token.clone()),
        );
        assert_eq!(status, 200, "{room}");
        app.room_id = room["room_id"].as_str().expect("room").to_owned();
        app
    })
}

/// Endpoints that parse a JSON body, with a valid body for each.
fn endpoints(app: &App) -> Vec<(&'static str, String, Value, bool)> {
    let room = &app.room_id;
    vec![
        (
            "POST",
            "/_matrix/client/v3/register".into(),
            json!({"username": "x", "password": "p", "auth": {"type": "m.login.dummy"}}),
            false,
        ),
        (
            "POST",
            "/_matrix/client/v3/login".into(),
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "fuzzer"}, "password": "pw"}),
            false,
        ),
        (
            "POST",
            "/_matrix/client/v3/createRoom".into(),
            json!({"name": "n", "preset": "private_chat", "initial_state": []}),
            true,
        ),
        (
            "PUT",
            format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t"),
            json!({"msgtype": "m.text", "body": "hi"}),
            true,
        ),
        (
            "PUT",
            format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            json!({"topic": "t"}),
            true,
        ),
        (
            "POST",
            "/_matrix/client/v3/user/@fuzzer:fuzz.test/filter".into(),
            json!({"room": {"timeline": {"limit": 5}}}),
            true,
        ),
        (
            "POST",
            "/_synapse/admin/v1/register".into(),
            json!({"nonce": "n", "username": "u", "password": "p", "mac": "00"}),
            false,
        ),
    ]
}

fn check(status: u16, body: &Value, what: &str) {
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        assert!(
            body["errcode"].is_string() || body["flows"].is_array(),
            "{what}: {status} without a Matrix error: {body}"
        );
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_get_matrix_errors(bytes in prop::collection::vec(any::<u8>(), 0..300), pick in 0usize..7) {
        let app = app();
        let (method, path, _, authed) = endpoints(app).swap_remove(pick);
        let token = authed.then_some(app.token.as_str());
        let (status, body) = request(app, method, &path, Bytes::from(bytes), token);
        check(status, &body, &path);
    }

    #[test]
    fn truncated_json_gets_matrix_errors(cut in 1usize..200, pick in 0usize..7) {
        let app = app();
        let (method, path, valid, authed) = endpoints(app).swap_remove(pick);
        let text = valid.to_string();
        let truncated = text[..cut.min(text.len().saturating_sub(1))].to_owned();
        let token = authed.then_some(app.token.as_str());
        let (status, body) = request(app, method, &path, Bytes::from(truncated), token);
        check(status, &body, &path);
        prop_assert!(status >= 400, "a truncated body was accepted by {}", path);
    }

    #[test]
    fn random_json_gets_matrix_errors(value in json_value(), pick in 0usize..7) {
        let app = app();
        let (method, path, _, authed) = endpoints(app).swap_remove(pick);
        let token = authed.then_some(app.token.as_str());
        let (status, body) = request(app, method, &path, Bytes::from(value.to_string()), token);
        check(status, &body, &path);
    }

    #[test]
    fn deep_nesting_is_refused(depth in 65usize..400) {
        let app = app();
        let body = format!("{{\"msgtype\":\"m.text\",\"body\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/deep{depth}", app.room_id);
        let (status, response) = request(app, "PUT", &path, Bytes::from(body), Some(&app.token));
        prop_assert_eq!(status, 400);
        prop_assert_eq!(response["errcode"].as_str(), Some("M_BAD_JSON"));
    }
}

/// Bodies that leave out the fields ruma's parsers pick a type by
/// (`type`, `auth.type`, `identifier.type`, `kind`, `algorithm`), or are not
/// objects at all.
const DISCRIMINATORLESS_BODIES: &[&str] = &[
    r#"{}"#,
    r#"{"type": null}"#,
    r#"{"type": 7}"#,
    r#"{"type": "org.example.custom"}"#,
    r#"{"identifier": {}}"#,
    r#"{"type": "m.login.password", "password": "p", "identifier": {}}"#,
    r#"{"type": "m.login.password", "password": "p", "identifier": {"type": "org.example"}}"#,
    r#"{"type": "m.login.token"}"#,
    r#"{"auth": {}}"#,
    r#"{"auth": {"session": "s"}}"#,
    r#"{"auth": {"type": null}}"#,
    r#"{"auth": {"type": "m.login.password"}}"#,
    r#"{"auth": {"type": "m.login.password", "identifier": {}}}"#,
    r#"{"auth": {"type": "org.example.custom"}}"#,
    r#"{"auth": ["m.login.dummy"]}"#,
    r#"{"kind": null}"#,
    r#"{"kind": "http"}"#,
    r#"{"algorithm": "org.example"}"#,
    r#"[]"#,
    r#"["org.example.custom"]"#,
    r#""text""#,
    r#"null"#,
];

/// A concrete path for a route template, with plausible path arguments so
/// requests get as far as the body parser.
fn concrete_path(template: &str, room_id: &str) -> String {
    let argument = |name: &str| -> String {
        let value = if name.contains("room") && !name.contains("alias") {
            room_id.to_owned()
        } else if name.contains("alias") {
            "#probe:fuzz.test".to_owned()
        } else if name.contains("user") {
            "@prober:fuzz.test".to_owned()
        } else if name.contains("event_id") {
            "$probe".to_owned()
        } else if name.contains("server") {
            "fuzz.test".to_owned()
        } else {
            "probe".to_owned()
        };
        value
            .replace('!', "%21")
            .replace('#', "%23")
            .replace('@', "%40")
            .replace(':', "%3A")
            .replace('$', "%24")
    };
    template
        .split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(name) => argument(name.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Counts panics in this test process, whoever catches them.
fn panics_seen() -> &'static std::sync::atomic::AtomicUsize {
    static PANICS: std::sync::OnceLock<std::sync::atomic::AtomicUsize> = std::sync::OnceLock::new();
    PANICS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics_seen().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
        std::sync::atomic::AtomicUsize::new(0)
    })
}

#[test]
fn no_route_panics_on_bodies_missing_their_discriminators() {
    let app = app();
    let panics = panics_seen();
    let before = panics.load(std::sync::atomic::Ordering::SeqCst);
    let mut probed = 0;
    for (method, template) in app.router.templates() {
        // Logging out would end the token the other requests use.
        if !matches!(method.as_str(), "POST" | "PUT") || template.contains("/logout") {
            continue;
        }
        let path = concrete_path(template, &app.room_id);
        for body in DISCRIMINATORLESS_BODIES {
            let (status, reply) = request(
                app,
                method.as_str(),
                &path,
                Bytes::from_static(body.as_bytes()),
                Some(&app.token),
            );
            assert!(status < 500, "{method} {template} {body}: {status} {reply}");
            probed += 1;
        }
    }
    assert!(probed > 100, "only {probed} requests sent");
    assert_eq!(
        panics.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "a request body reached a panic (see the panic messages above)"
    );
}
