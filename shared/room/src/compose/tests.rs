use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{RoomState, ServerKey};

fn key() -> ServerKey {
    let file = myelin_config::SigningKeyFile {
        version: "a_test".into(),
        seed: [7; 32],
    };
    ServerKey::from_file("hs.test", &file).expect("key")
}

/// A tiny room writer: applies events in order like the persister does.
struct TestRoom {
    version: RoomVersion,
    room_id: Option<String>,
    state: RoomState,
    extremities: Vec<EventRef>,
    depth: i64,
}

impl TestRoom {
    fn new(version: &str) -> TestRoom {
        let version = RoomVersion::stable(version).expect("version");
        let room_id = (!version.room_id_from_create_event()).then(|| "!room:hs.test".to_owned());
        TestRoom {
            version,
            room_id,
            state: RoomState::new(),
            extremities: Vec::new(),
            depth: 0,
        }
    }

    fn send(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> Result<BuiltPdu, ComposeError> {
        let head = RoomHead {
            version: &self.version,
            room_id: self.room_id.as_deref(),
            state: &self.state,
            extremities: &self.extremities,
            max_depth: self.depth,
        };
        let new = NewEvent {
            sender,
            event_type: kind,
            state_key,
            content,
            redacts: None,
            origin_server_ts: 1_700_000_000_000,
        };
        let mut built = compose_event(&key(), &head, new)?;
        self.room_id = Some(built.room_id.clone());
        self.extremities = vec![event_ref(&self.version, &built.event_id, &built.json)];
        self.depth += 1;
        if let Some(state_key) = state_key {
            built.pdu.reference_hash = self.extremities[0].reference_hash.clone();
            self.state.insert(
                (kind.to_owned(), state_key.to_owned()),
                Arc::new(built.pdu.clone()),
            );
        }
        Ok(built)
    }

    fn create_private_room(&mut self) {
        let creator = "@alice:hs.test";
        let create_content = if self.version.rules.authorization.use_room_create_sender {
            json!({"room_version": self.version.id.as_str()})
        } else {
            json!({"creator": creator, "room_version": self.version.id.as_str()})
        };
        self.send(creator, "m.room.create", Some(""), create_content)
            .expect("create");
        self.send(
            creator,
            "m.room.member",
            Some(creator),
            json!({"membership": "join"}),
        )
        .expect("join");
        let users = if self.version.privileges_creators() {
            json!({})
        } else {
            json!({creator: 100})
        };
        self.send(
            creator,
            "m.room.power_levels",
            Some(""),
            json!({"users": users, "users_default": 0}),
        )
        .expect("power levels");
        self.send(
            creator,
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "invite"}),
        )
        .expect("join rules");
    }
}

#[test]
fn every_stable_version_creates_a_room_and_enforces_membership() {
    for version in crate::STABLE_ROOM_VERSIONS {
        let mut room = TestRoom::new(version);
        room.create_private_room();
        let room_id = room.room_id.clone().expect("room id");
        assert!(room_id.starts_with('!'), "v{version}: {room_id}");
        if room.version.room_id_from_create_event() {
            assert!(
                !room_id.contains(':'),
                "v12 room IDs have no server part: {room_id}"
            );
        }
        let message = room.send(
            "@alice:hs.test",
            "m.room.message",
            None,
            json!({"body": "hi", "msgtype": "m.text"}),
        );
        let message =
            message.unwrap_or_else(|error| panic!("v{version}: member may send: {error}"));
        assert!(message.event_id.starts_with('$'));
        assert!(
            message
                .json
                .contains(r#""signatures":{"hs.test":{"ed25519:a_test""#),
            "signed"
        );
        assert!(
            message.json.contains(r#""hashes":{"sha256""#),
            "content hash"
        );

        let outsider = room.send(
            "@mallory:hs.test",
            "m.room.message",
            None,
            json!({"body": "x"}),
        );
        assert!(
            matches!(outsider, Err(ComposeError::Auth(AuthError::Forbidden(_)))),
            "v{version}: {outsider:?}"
        );
        let uninvited = room.send(
            "@bob:hs.test",
            "m.room.member",
            Some("@bob:hs.test"),
            json!({"membership": "join"}),
        );
        assert!(
            uninvited.is_err(),
            "v{version}: invite-only room let bob join"
        );
        room.send(
            "@alice:hs.test",
            "m.room.member",
            Some("@bob:hs.test"),
            json!({"membership": "invite"}),
        )
        .unwrap_or_else(|error| panic!("v{version}: invite: {error}"));
        room.send(
            "@bob:hs.test",
            "m.room.member",
            Some("@bob:hs.test"),
            json!({"membership": "join"}),
        )
        .unwrap_or_else(|error| panic!("v{version}: invited join: {error}"));
        let weak_power = room.send(
            "@bob:hs.test",
            "m.room.power_levels",
            Some(""),
            json!({"users": {"@bob:hs.test": 100}}),
        );
        assert!(
            weak_power.is_err(),
            "v{version}: bob must not raise his own power"
        );
    }
}

#[test]
fn event_ids_are_reference_hashes_from_version_3() {
    let mut room = TestRoom::new("10");
    room.create_private_room();
    let built = room
        .send(
            "@alice:hs.test",
            "m.room.message",
            None,
            json!({"body": "hi"}),
        )
        .expect("send");
    let object: ruma::CanonicalJsonObject = serde_json::from_str(&built.json).expect("json");
    let hash = ruma::signatures::reference_hash(&object, &room.version.rules).expect("hash");
    assert_eq!(built.event_id, format!("${hash}"));
}

#[test]
fn oversized_events_are_refused() {
    let mut room = TestRoom::new("12");
    room.create_private_room();
    let body = "x".repeat(70_000);
    let result = room.send(
        "@alice:hs.test",
        "m.room.message",
        None,
        json!({"body": body}),
    );
    assert!(
        matches!(result, Err(ComposeError::Build(BuildError::TooLarge))),
        "{result:?}"
    );
}

#[test]
fn keys_over_255_bytes_are_refused() {
    let mut room = TestRoom::new("12");
    room.create_private_room();
    let longest = "k".repeat(255);
    room.send("@alice:hs.test", &longest, Some(&longest), json!({}))
        .expect("255 bytes is within the limit");
    let long = "k".repeat(256);
    for (kind, state_key, key) in [
        (long.as_str(), Some(""), "type"),
        ("m.custom", Some(long.as_str()), "state_key"),
    ] {
        let result = room.send("@alice:hs.test", kind, state_key, json!({}));
        assert!(
            matches!(result, Err(ComposeError::Build(BuildError::KeyTooLarge(named))) if named == key),
            "{result:?}"
        );
    }
}

#[test]
fn the_deepest_twenty_extremities_are_cited_and_the_rest_wait() {
    let extremity = |n: i64| {
        (
            EventRef {
                event_id: format!("$e{n:02}"),
                reference_hash: None,
            },
            n % 7,
        )
    };
    let few: Vec<_> = (0..3).map(extremity).collect();
    let (cited, uncited) = cite_deepest(few);
    assert_eq!((cited.len(), uncited.len()), (3, 0));

    let (cited, uncited) = cite_deepest((0..25).map(extremity).collect());
    assert_eq!((cited.len(), uncited.len()), (MAX_PREV_EVENTS, 5));
    // Depths are n % 7: the five left are the shallowest, ties by ID.
    let left: Vec<&str> = uncited.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(left, ["$e22", "$e00", "$e07", "$e14", "$e21"]);
    let (again, _) = cite_deepest((0..25).rev().map(extremity).collect());
    assert_eq!(again, cited, "the same choice whatever the order");
}
