use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{EventRef, NewEvent, RoomHead, ServerKey, compose_event, event_ref};

fn key() -> ServerKey {
    let file = myelin_config::SigningKeyFile {
        version: "a_res".into(),
        seed: [9; 32],
    };
    ServerKey::from_file("hs.test", &file).expect("key")
}

struct Branch {
    state: RoomState,
    head: Vec<EventRef>,
    depth: i64,
}

/// The room's version and ID plus every event written so far.
struct Graph {
    version: RoomVersion,
    room_id: Option<String>,
    pool: EventPool,
}

impl Graph {
    fn apply(
        &mut self,
        branch: &mut Branch,
        sender: &str,
        kind: &str,
        state_key: &str,
        content: serde_json::Value,
        ts: i64,
    ) {
        let head = RoomHead {
            version: &self.version,
            room_id: self.room_id.as_deref(),
            state: &branch.state,
            extremities: &branch.head,
            max_depth: branch.depth,
        };
        let new = NewEvent {
            sender,
            event_type: kind,
            state_key: Some(state_key),
            content,
            redacts: None,
            origin_server_ts: ts,
        };
        let built =
            compose_event(&key(), &head, new).unwrap_or_else(|error| panic!("{kind}: {error}"));
        self.room_id = Some(built.room_id.clone());
        branch.head = vec![event_ref(&self.version, &built.event_id, &built.json)];
        branch.depth += 1;
        let pdu = Arc::new(built.pdu);
        self.pool.insert(pdu.event_id.clone(), Arc::clone(&pdu));
        branch
            .state
            .insert((kind.to_owned(), state_key.to_owned()), pdu);
    }
}

const ALICE: &str = "@alice:hs.test";
const BOB: &str = "@bob:hs.test";

/// A room of version `id` (named `room_id` where the version does not
/// derive it) that `creator` created and joined: its graph and its branch.
fn created_by(id: &str, room_id: &str, creator: &str) -> (RoomVersion, Graph, Branch) {
    let version = RoomVersion::stable(id).expect("version");
    let mut graph = Graph {
        version: version.clone(),
        room_id: (!version.room_id_from_create_event()).then(|| room_id.to_owned()),
        pool: EventPool::new(),
    };
    let mut base = Branch {
        state: RoomState::new(),
        head: Vec::new(),
        depth: 0,
    };
    let create = if version.rules.authorization.use_room_create_sender {
        json!({"room_version": id})
    } else {
        json!({"creator": creator, "room_version": id})
    };
    graph.apply(&mut base, creator, "m.room.create", "", create, 1);
    graph.apply(
        &mut base,
        creator,
        "m.room.member",
        creator,
        json!({"membership": "join"}),
        2,
    );
    (version, graph, base)
}

/// Sets `levels` as the power levels, makes the room public and joins Bob.
fn open_to_bob(graph: &mut Graph, base: &mut Branch, levels: serde_json::Value) {
    graph.apply(base, ALICE, "m.room.power_levels", "", levels, 3);
    graph.apply(
        base,
        ALICE,
        "m.room.join_rules",
        "",
        json!({"join_rule": "public"}),
        4,
    );
    graph.apply(
        base,
        BOB,
        "m.room.member",
        BOB,
        json!({"membership": "join"}),
        5,
    );
}

impl Branch {
    /// A branch starting where this one stands.
    fn fork(&self) -> Branch {
        Branch {
            state: self.state.clone(),
            head: self.head.clone(),
            depth: self.depth,
        }
    }
}

/// Two branches change the topic after a ban on one of them: the banned
/// user's topic change must lose, whatever order the forks come in.
#[test]
fn resolution_prefers_the_branch_that_is_authorized() {
    for id in ["2", "10", "12"] {
        let (version, mut graph, mut base) = created_by(id, "!res:hs.test", ALICE);
        let (alice, bob) = (ALICE, BOB);
        let users = if version.privileges_creators() {
            json!({bob: 50})
        } else {
            json!({alice: 100, bob: 50})
        };
        open_to_bob(&mut graph, &mut base, json!({"users": users}));

        let mut banned = base.fork();
        graph.apply(
            &mut banned,
            alice,
            "m.room.member",
            bob,
            json!({"membership": "ban"}),
            6,
        );
        let mut topic = base.fork();
        graph.apply(
            &mut topic,
            bob,
            "m.room.topic",
            "",
            json!({"topic": "bob was here"}),
            7,
        );

        for forks in [
            [banned.state.clone(), topic.state.clone()],
            [topic.state.clone(), banned.state.clone()],
        ] {
            let resolved = resolve_state(&version, &forks, &graph.pool)
                .unwrap_or_else(|error| panic!("v{id}: {error}"));
            let member = resolved
                .get(&("m.room.member".to_owned(), bob.to_owned()))
                .expect("bob's membership");
            assert!(
                member.content.get().contains("ban"),
                "v{id}: the ban must win"
            );
            assert!(
                !resolved.contains_key(&("m.room.topic".to_owned(), String::new())),
                "v{id}: the banned user's topic must lose"
            );
        }
    }
}

/// Version 1 (state resolution v1): the power levels lowering Bob on one
/// fork win their pass, so Bob's topic on the other fork is refused and
/// Alice's wins the conflict; a key only one fork set (Bob's room name)
/// is unconflicted and kept, as v1 does. Either order of forks agrees.
#[test]
fn version_one_resolves_power_first_then_the_newest_allowed() {
    let (version, mut graph, mut base) = created_by("1", "!v1:hs.test", ALICE);
    let (alice, bob) = (ALICE, BOB);
    let levels = |bob_level: i64| json!({"users": {alice: 100, bob: bob_level}});
    open_to_bob(&mut graph, &mut base, levels(50));

    let mut lowered = base.fork();
    graph.apply(&mut lowered, alice, "m.room.power_levels", "", levels(0), 6);
    graph.apply(
        &mut lowered,
        alice,
        "m.room.topic",
        "",
        json!({"topic": "alice's"}),
        7,
    );
    let mut bobs = base.fork();
    graph.apply(
        &mut bobs,
        bob,
        "m.room.name",
        "",
        json!({"name": "bob's"}),
        8,
    );
    graph.apply(
        &mut bobs,
        bob,
        "m.room.topic",
        "",
        json!({"topic": "bob's"}),
        9,
    );

    for forks in [
        [lowered.state.clone(), bobs.state.clone()],
        [bobs.state.clone(), lowered.state.clone()],
    ] {
        let resolved = resolve_state(&version, &forks, &graph.pool).expect("resolves");
        let content = |kind: &str| {
            resolved
                .get(&(kind.to_owned(), String::new()))
                .map(|pdu| pdu.content.get().to_owned())
                .unwrap_or_default()
        };
        assert!(content("m.room.power_levels").contains(r#""@bob:hs.test":0"#));
        assert!(
            content("m.room.topic").contains("alice's"),
            "{}",
            content("m.room.topic")
        );
        assert!(content("m.room.name").contains("bob's"));
        let member = &resolved[&("m.room.member".to_owned(), bob.to_owned())];
        assert!(member.content.get().contains("join"));
    }
}

/// Version 1 with nothing in conflict: the union of the forks.
#[test]
fn version_one_keeps_what_the_forks_agree_on() {
    let (version, mut graph, base) = created_by("1", "!v1u:hs.test", ALICE);
    let mut named = base.fork();
    graph.apply(
        &mut named,
        ALICE,
        "m.room.name",
        "",
        json!({"name": "n"}),
        3,
    );
    let resolved = resolve_state(
        &version,
        &[base.state.clone(), named.state.clone()],
        &graph.pool,
    )
    .expect("resolves");
    assert_eq!(resolved.len(), 3);
    assert!(resolved.contains_key(&("m.room.name".to_owned(), String::new())));
}

/// A join's state and auth chain: an event its own auth events do not
/// allow is dropped, and so is one that cites it; the rest pass.
#[test]
fn events_handed_over_together_pass_only_by_their_auth_events() {
    for id in ["10", "12"] {
        let (version, mut graph, mut base) = created_by(id, "!chain:hs.test", ALICE);
        let alice = ALICE;
        graph.apply(
            &mut base,
            alice,
            "m.room.topic",
            "",
            json!({"topic": "a"}),
            3,
        );
        let events: Vec<Arc<Pdu>> = graph.pool.values().cloned().collect();
        let passed = crate::authorized_by_auth_events(&version, &events);
        assert_eq!(passed.len(), 3, "{id}: a valid chain passes whole");

        // The topic claimed by someone who never joined, and a name that
        // cites that forged topic among its auth events.
        let topic = &base.state[&("m.room.topic".to_owned(), String::new())];
        let mut forged = (**topic).clone();
        forged.sender = ruma::OwnedUserId::try_from("@mallory:hs.test").expect("user");
        forged.event_id = ruma::OwnedEventId::try_from("$forged").expect("id");
        let mut citing = (**topic).clone();
        citing.event_id = ruma::OwnedEventId::try_from("$citing").expect("id");
        citing.depth += 1;
        citing.auth_events.push(forged.event_id.clone());
        let mut with_forgeries = events.clone();
        with_forgeries.push(Arc::new(forged));
        with_forgeries.push(Arc::new(citing));
        let passed = crate::authorized_by_auth_events(&version, &with_forgeries);
        assert_eq!(passed.len(), 3, "{id}: {passed:?}");
        assert!(events.iter().all(|event| passed.contains(&event.event_id)));
    }
}
