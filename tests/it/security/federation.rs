//! Forged and broken federation requests: each gets the right `401`/`400`,
//! nothing is answered on a bad signature, and signed traffic keeps
//! flowing. Requests are signed here with the second server's real key, so
//! the first checks them against the key it fetches from the second.

use std::path::Path;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use crate::client::Client;
use crate::federation::rooms::{Peer, check_room_traffic, myelin_with_a_peer};
use crate::federation::signing::KeyFile;
use crate::federation::{
    Certificates, federating_myelin, federating_myelin_with, federation_url, reqwest_insecure,
    signing_key_path, user_with_name,
};
use crate::harness::free_port;

#[tokio::test]
async fn forged_and_broken_federation_requests_are_refused() {
    let certificates = Certificates::new();
    let first = federating_myelin(&certificates).await;
    let second = federating_myelin(&certificates).await;
    let alice = user_with_name(&first.url(), "alice", "Alice").await;
    check_forged_requests(
        &federation_url(&first),
        first.server_name(),
        &alice,
        second.server_name(),
        &signing_key_path(second.config_path()),
    )
    .await;
}

/// Events another server sends into a room are checked before they land:
/// bad signatures and hashes, failed auth, strangers, other rooms' events,
/// server ACLs (see [`check_room_traffic`]).
#[tokio::test]
async fn room_traffic_from_another_server_is_checked_before_it_lands() {
    let (_servers, alice, peer) = myelin_with_a_peer().await;
    check_room_traffic(&peer, &alice).await;
}

/// With `federation_domain_whitelist`, a server off the list is refused
/// both ways: its signed requests get `403`, and nothing is asked of it.
#[tokio::test]
async fn a_server_off_the_domain_whitelist_is_refused_both_ways() {
    let certificates = Certificates::new();
    let other = federating_myelin(&certificates).await;
    let guarded = federating_myelin_with(
        &certificates,
        "federation_domain_whitelist: ['friends.example']\n",
    )
    .await;
    let alice = user_with_name(&guarded.url(), "alice", "Alice").await;
    let bob = user_with_name(&other.url(), "bob", "Bob").await;
    let peer = Peer::between(&other, &guarded);
    let uri = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        crate::client::encode(&alice.user_id)
    );
    let (status, body) = peer.request("GET", &uri, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let asked = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            crate::client::encode(&bob.user_id)
        ))
        .await;
    assert_ne!(asked.status, 200, "{}", asked.text);
    assert!(asked.body["errcode"].is_string(), "{}", asked.text);
    assert!(!asked.text.contains("Bob"), "{}", asked.text);
}

/// Sends signed, forged and broken profile queries for `alice` (display
/// name "Alice") to the server at `target_url`, signed as `origin` with
/// the key in `origin_key`, a server the target can fetch keys from.
pub(crate) async fn check_forged_requests(
    target_url: &str,
    target_name: &str,
    alice: &Client,
    origin: &str,
    origin_key: &Path,
) {
    let key = KeyFile::read(origin_key);
    let destination = target_name;
    let uri = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        crate::client::encode(&alice.user_id)
    );
    let http = reqwest_insecure();
    let send = |authorization: Option<String>, body: Option<&'static str>| {
        let mut request = http.get(format!("{target_url}{uri}"));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let good = key.authorization("GET", &uri, origin, destination);
    // The origin's key ID, another key behind it.
    let impostor = KeyFile {
        key_id: key.key_id.clone(),
        key: SigningKey::from_bytes(&[7; 32]),
    };

    let (status, body) = send(Some(good.clone()), None).await;
    assert_eq!(
        (status, &body["displayname"]),
        (200, &Value::from("Alice")),
        "{body}"
    );

    let refused: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        (
            "a bearer token",
            Some(format!(
                "Bearer {}",
                alice.access_token.clone().expect("a session")
            )),
        ),
        ("malformed X-Matrix", Some("X-Matrix origin=".to_owned())),
        (
            "another destination",
            Some(key.authorization("GET", &uri, origin, "elsewhere.example")),
        ),
        (
            "a signature over another URI",
            Some(key.authorization("GET", "/_matrix/federation/v1/version", origin, destination)),
        ),
        (
            "another method",
            Some(key.authorization("PUT", &uri, origin, destination)),
        ),
        (
            "a key the origin does not have",
            Some(good.replace(&key.key_id, "ed25519:unknown")),
        ),
        (
            "a signature by another key",
            Some(impostor.authorization("GET", &uri, origin, destination)),
        ),
        (
            "an origin nobody serves",
            Some(key.authorization(
                "GET",
                &uri,
                &format!("127.0.0.1:{}", free_port()),
                destination,
            )),
        ),
        (
            "this server's own name as origin",
            Some(key.authorization("GET", &uri, destination, destination)),
        ),
    ];
    for (what, authorization) in refused {
        let (status, body) = send(authorization, None).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (401, Some("M_UNAUTHORIZED")),
            "{what}: {body}"
        );
        assert!(body.get("displayname").is_none(), "{what}: {body}");
    }

    // A body that is not JSON cannot have been signed.
    let (status, body) = send(Some(good.clone()), Some("not json")).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_NOT_JSON")),
        "{body}"
    );

    // A signature covers the body: a key query signed for one body and
    // sent with another is refused; as signed, it answers only for the
    // target's own users.
    let keys_uri = "/_matrix/federation/v1/user/keys/query";
    let asked = format!(
        r#"{{"device_keys":{{{}:[],"@someone:{origin}":[]}}}}"#,
        Value::from(alice.user_id.as_str())
    );
    let signed = key.authorization_with("POST", keys_uri, origin, destination, Some(&asked));
    let post = |body: String| {
        http.post(format!("{target_url}{keys_uri}"))
            .header("authorization", signed.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let answer = post(asked.clone()).await.expect("an answer");
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.expect("json");
    let users: Vec<&String> = answer["device_keys"]
        .as_object()
        .map(|users| users.keys().collect())
        .unwrap_or_default();
    assert!(
        users.iter().all(|user| user.ends_with(destination)),
        "answers only for its own users: {answer}"
    );
    let tampered = asked.replace("[]}", r#"["DEVICE"]}"#);
    assert_ne!(tampered, asked);
    let answer = post(tampered).await.expect("an answer");
    assert_eq!(answer.status().as_u16(), 401);

    // Bad input, well signed: each a clear error, never a 500.
    let signed_request = |method: &str, uri: &str, body: Option<String>| {
        let authorization =
            key.authorization_with(method, uri, origin, destination, body.as_deref());
        let request = match method {
            "POST" => http.post(format!("{target_url}{uri}")),
            _ => http.get(format!("{target_url}{uri}")),
        };
        let request = request.header("authorization", authorization);
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body),
            None => request,
        };
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let profile_of = |user: &str| {
        format!(
            "/_matrix/federation/v1/query/profile?user_id={}",
            crate::client::encode(user)
        )
    };
    // Another server's user is not this server's to answer for.
    let (status, body) = signed_request("GET", &profile_of(&format!("@x:{origin}")), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let (status, body) =
        signed_request("GET", &profile_of(&format!("@nobody:{destination}")), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    // Too many devices in one query.
    let devices: Vec<String> = (0..10_001).map(|n| format!(r#""D{n}""#)).collect();
    let huge = format!(
        r#"{{"device_keys":{{{}:[{}]}}}}"#,
        Value::from(alice.user_id.as_str()),
        devices.join(",")
    );
    let (status, body) = signed_request("POST", keys_uri, Some(huge)).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
    // Claims for another server's users hand out nothing.
    let claim =
        format!(r#"{{"one_time_keys":{{"@x:{origin}":{{"DEVICE":"signed_curve25519"}}}}}}"#);
    let (status, body) = signed_request(
        "POST",
        "/_matrix/federation/v1/user/keys/claim",
        Some(claim),
    )
    .await;
    assert_eq!(
        (status, &body["one_time_keys"]),
        (200, &serde_json::json!({})),
        "{body}"
    );
    // A notary query about too many servers.
    let servers: serde_json::Map<String, Value> = (0..101)
        .map(|n| (format!("s{n}.example"), serde_json::json!({})))
        .collect();
    let answer = http
        .post(format!("{target_url}/_matrix/key/v2/query"))
        .json(&serde_json::json!({"server_keys": servers}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 400);

    // Real traffic still flows.
    let (status, body) = send(Some(good), None).await;
    assert_eq!(
        (status, &body["displayname"]),
        (200, &Value::from("Alice")),
        "{body}"
    );
}

#[tokio::test]
async fn federation_media_needs_a_signature_and_good_input() {
    let certificates = Certificates::new();
    let first = federating_myelin(&certificates).await;
    let second = federating_myelin(&certificates).await;
    let alice = user_with_name(&first.url(), "alice", "Alice").await;
    let picture = crate::media::png(64, 48);
    let mxc = crate::media::upload_mxc(&alice, "", "image/png", &picture).await;
    let media_id = mxc.rsplit_once('/').expect("a media ID").1.to_owned();
    let key = KeyFile::read(&signing_key_path(second.config_path()));
    let http = reqwest_insecure();
    let get = |uri: String, signed: bool| {
        let mut request = http.get(format!("{}{uri}", federation_url(&first)));
        if signed {
            request = request.header(
                "authorization",
                key.authorization("GET", &uri, second.server_name(), first.server_name()),
            );
        }
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (
                status,
                content_type,
                response.bytes().await.expect("a body"),
            )
        }
    };
    let download = format!("/_matrix/federation/v1/media/download/{media_id}");

    // Signed: the bytes, inside a multipart answer.
    let (status, content_type, body) = get(download.clone(), true).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        content_type.starts_with("multipart/mixed"),
        "{content_type}"
    );
    assert!(
        body.windows(picture.len())
            .any(|window| window == picture.as_slice()),
        "the picture is not in the answer"
    );

    // Unsigned, unknown, or a thumbnail of no size.
    let (status, _, _) = get(download.clone(), false).await;
    assert_eq!(status, 401);
    let (status, _, body) = get(
        "/_matrix/federation/v1/media/download/NoSuchMediaHere".to_owned(),
        true,
    )
    .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = get(
        format!("/_matrix/federation/v1/media/thumbnail/{media_id}?width=0&height=10"),
        true,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // A client naming no server at all in a media path is refused too.
    let bad = crate::media::send(
        &alice,
        reqwest::Method::GET,
        "/_matrix/client/v1/media/download/not%20a%20server/abc",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
}
