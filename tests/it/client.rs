//! A small Matrix client on reqwest: just enough of the Client-Server API to
//! drive the server from the outside, with helpers that fail loudly.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// One HTTP answer: status, headers and the body (JSON, or a string when the
/// body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The body of a 2xx answer; panics with the answer otherwise.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {} {}",
            self.status,
            self.text
        );
        self.body
    }

    /// Panics unless this is the Matrix error `errcode` with `status`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.body["errcode"].as_str()),
            (status, Some(errcode)),
            "expected {status} {errcode}, got {} {}",
            self.status,
            self.text
        );
        assert!(
            self.body["error"].is_string(),
            "a Matrix error has an `error` string: {}",
            self.text
        );
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client, with or without a session.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub user_id: String,
    pub device_id: String,
    pub access_token: Option<String>,
    txn_counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Percent-encodes a path segment (room IDs, user IDs, event IDs).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("reqwest client"),
            base: base.trim_end_matches('/').to_owned(),
            user_id: String::new(),
            device_id: String::new(),
            access_token: None,
            txn_counter: Default::default(),
        }
    }

    /// The same session, talking to `base` (a server that came back).
    pub fn at(&self, base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The same server with another access token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            access_token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// A request to `path` carrying this client's access token, if any.
    pub fn request_builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.access_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; `path` starts with `/`. The access token, if any,
    /// goes in the `Authorization` header.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.request_builder(method.clone(), path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: no answer: {error}"));
        Reply::read(response).await
    }

    /// Sends `body` as-is, declared as JSON: for bodies that are not.
    pub async fn raw_json(&self, method: Method, path: &str, body: &'static str) -> Reply {
        let response = self
            .request_builder(method, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("an answer");
        Reply::read(response).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::PUT, path, Some(body)).await
    }

    fn adopt(&self, session: &Value) -> Client {
        let text = |key: &str| {
            session[key]
                .as_str()
                .unwrap_or_else(|| panic!("session without {key}: {session}"))
                .to_owned()
        };
        Client {
            user_id: text("user_id"),
            device_id: text("device_id"),
            access_token: Some(text("access_token")),
            ..self.clone()
        }
    }

    /// `POST /register` without auth: the UIA challenge (401 with flows and
    /// a session) or whatever error the server gives first.
    pub async fn register_start(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/_matrix/client/v3/register",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Registration through user-interactive auth: the first request gets
    /// the challenge, the second completes the `m.login.dummy` stage.
    pub async fn register_reply(&self, username: &str, password: &str) -> Reply {
        let challenge = self.register_start(username, password).await;
        if challenge.status != 401 {
            return challenge;
        }
        let offers_dummy = challenge.body["flows"].as_array().is_some_and(|flows| {
            flows
                .iter()
                .any(|f| f["stages"] == json!(["m.login.dummy"]))
        });
        assert!(
            offers_dummy,
            "the UIA challenge offers no m.login.dummy flow: {}",
            challenge.text
        );
        let session = challenge.body["session"]
            .as_str()
            .unwrap_or_else(|| panic!("UIA challenge without a session: {}", challenge.text));
        self.post(
            "/_matrix/client/v3/register",
            &json!({
                "username": username,
                "password": password,
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await
    }

    /// Registers `username` and returns a client with its session.
    pub async fn register(&self, username: &str, password: &str) -> Client {
        let session = self.register_reply(username, password).await.ok();
        self.adopt(&session)
    }

    pub async fn login_reply(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/_matrix/client/v3/login",
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": username},
                "password": password,
            }),
        )
        .await
    }

    /// Logs in with a password and returns a client with the new session.
    pub async fn login(&self, username: &str, password: &str) -> Client {
        let session = self.login_reply(username, password).await.ok();
        self.adopt(&session)
    }

    pub async fn whoami(&self) -> Reply {
        self.get("/_matrix/client/v3/account/whoami").await
    }

    pub async fn create_room(&self, body: &Value) -> String {
        let created = self.post("/_matrix/client/v3/createRoom", body).await.ok();
        created["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("createRoom without room_id: {created}"))
            .to_owned()
    }

    pub async fn invite(&self, room_id: &str, user_id: &str) -> Reply {
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", encode(room_id)),
            &json!({"user_id": user_id}),
        )
        .await
    }

    pub async fn join(&self, room_id: &str) -> Reply {
        self.post(
            &format!("/_matrix/client/v3/join/{}", encode(room_id)),
            &json!({}),
        )
        .await
    }

    pub async fn leave(&self, room_id: &str) -> Reply {
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/leave", encode(room_id)),
            &json!({}),
        )
        .await
    }

    /// `PUT /rooms/{room}/send/{type}/{txn}`.
    pub async fn send_reply(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
    ) -> Reply {
        self.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/{}/{}",
                encode(room_id),
                encode(event_type),
                encode(txn_id)
            ),
            content,
        )
        .await
    }

    /// Sends an `m.room.message` with `body` under a fresh transaction ID;
    /// returns the event ID.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let n = self
            .txn_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let txn = format!("it-{}-{n}", std::process::id());
        let sent = self
            .send_reply(
                room_id,
                "m.room.message",
                &txn,
                &json!({"msgtype": "m.text", "body": body}),
            )
            .await
            .ok();
        event_id_of(&sent)
    }

    /// `GET /sync` with `since` and `timeout` (milliseconds).
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        self.get(&path).await.ok()
    }

    /// `GET /rooms/{room}/messages`.
    pub async fn messages(
        &self,
        room_id: &str,
        dir: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Value {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir={dir}&limit={limit}",
            encode(room_id)
        );
        if let Some(from) = from {
            path.push_str(&format!("&from={}", encode(from)));
        }
        self.get(&path).await.ok()
    }

    pub async fn joined_rooms(&self) -> Vec<String> {
        let body = self.get("/_matrix/client/v3/joined_rooms").await.ok();
        body["joined_rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("joined_rooms without a list: {body}"))
            .iter()
            .filter_map(|room| room.as_str().map(str::to_owned))
            .collect()
    }
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// The `event_id` of a send answer.
#[track_caller]
pub fn event_id_of(sent: &Value) -> String {
    sent["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in {sent}"))
        .to_owned()
}

/// `(event_id, content.body)` of a message event, empty where missing.
pub fn message_id_and_body(event: &Value) -> (String, String) {
    (
        event["event_id"].as_str().unwrap_or_default().to_owned(),
        event["content"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The `m.room.message` bodies of a list of client events, in list order.
pub fn message_bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|event| event["type"] == "m.room.message")
                .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
