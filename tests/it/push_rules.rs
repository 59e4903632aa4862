//! Push rules: the spec's server-default set, the user's changes with
//! `before`/`after`, `enabled` and `actions`, the spec's errors, and the
//! `m.push_rules` account data in `/sync`.

use serde_json::{Value, json};

use crate::client::Client;
use crate::harness::Server;

const RULES: &str = "/_matrix/client/v3/pushrules/global";

fn rule_ids(rules: &Value, kind: &str) -> Vec<String> {
    rules[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} rules in {rules}"))
        .iter()
        .filter_map(|rule| rule["rule_id"].as_str().map(str::to_owned))
        .collect()
}

fn push_rules_in(sync: &Value) -> Option<Value> {
    sync["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|event| event["type"] == "m.push_rules")
        .map(|event| event["content"]["global"].clone())
}

#[tokio::test]
async fn the_server_default_rules_are_the_specs() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let all = alice.get("/_matrix/client/v3/pushrules/").await.ok();
    let global = &all["global"];
    let overrides = rule_ids(global, "override");
    for expected in [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ] {
        assert!(
            overrides.contains(&expected.to_owned()),
            "{expected} in {overrides:?}"
        );
    }
    assert_eq!(
        overrides[0], ".m.rule.master",
        "the master rule comes first"
    );
    let underrides = rule_ids(global, "underride");
    for expected in [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ] {
        assert!(
            underrides.contains(&expected.to_owned()),
            "{expected} in {underrides:?}"
        );
    }
    let master = &global["override"][0];
    assert_eq!(master["enabled"], false);
    assert_eq!(master["default"], true);
    let invite = global["override"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["rule_id"] == ".m.rule.invite_for_me")
        .unwrap();
    assert!(
        invite.to_string().contains(&alice.user_id),
        "the invite rule names its user: {invite}"
    );
    assert_eq!(
        alice.get(&format!("{RULES}/")).await.ok(),
        all["global"],
        "the global scope answers the rule set itself"
    );
    let first = alice.sync(None, 0).await;
    assert_eq!(
        push_rules_in(&first).as_ref(),
        Some(global),
        "a first sync carries the rules"
    );
}

async fn put_rule(alice: &Client, path: &str, body: Value) -> crate::client::Reply {
    alice.put(&format!("{RULES}/{path}"), &body).await
}

#[tokio::test]
async fn users_add_order_change_and_remove_their_rules() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    put_rule(
        &alice,
        "content/cake",
        json!({"pattern": "cake", "actions": ["notify"]}),
    )
    .await
    .ok();
    let cake = alice.get(&format!("{RULES}/content/cake")).await.ok();
    assert_eq!(cake["pattern"], "cake");
    assert_eq!(cake["enabled"], true);
    assert_eq!(cake["default"], false);

    let condition = json!({"conditions": [{"kind": "event_match", "key": "type", "pattern": "m.x"}], "actions": []});
    put_rule(&alice, "override/first", condition.clone())
        .await
        .ok();
    put_rule(&alice, "override/second", condition.clone())
        .await
        .ok();
    alice
        .put(&format!("{RULES}/override/third?after=first"), &condition)
        .await
        .ok();
    let overrides = rule_ids(&alice.get(&format!("{RULES}/")).await.ok(), "override");
    let position = |id: &str| overrides.iter().position(|rule| rule == id).unwrap();
    assert!(
        position("second") < position("first") && position("first") < position("third"),
        "new rules go first, `after` places one: {overrides:?}"
    );

    alice
        .put(
            &format!("{RULES}/content/cake/enabled"),
            &json!({"enabled": false}),
        )
        .await
        .ok();
    assert_eq!(
        alice
            .get(&format!("{RULES}/content/cake/enabled"))
            .await
            .ok()["enabled"],
        false
    );
    alice
        .put(
            &format!("{RULES}/content/cake/actions"),
            &json!({"actions": ["notify", {"set_tweak": "highlight"}]}),
        )
        .await
        .ok();
    assert_eq!(
        alice
            .get(&format!("{RULES}/content/cake/actions"))
            .await
            .ok()["actions"],
        json!(["notify", {"set_tweak": "highlight"}])
    );
    // Server-default rules can be switched off too.
    alice
        .put(
            &format!("{RULES}/override/.m.rule.master/enabled"),
            &json!({"enabled": true}),
        )
        .await
        .ok();

    // The change reaches /sync as m.push_rules account data.
    let mut since = since;
    let mut seen = None;
    for _ in 0..10 {
        let sync = alice.sync(Some(&since), 5_000).await;
        since = sync["next_batch"].as_str().unwrap().to_owned();
        if let Some(rules) = push_rules_in(&sync)
            && rules["override"][0]["enabled"] == true
        {
            seen = Some(rules);
            break;
        }
    }
    let seen = seen.expect("the changed rules never reached /sync");
    assert!(rule_ids(&seen, "content").contains(&"cake".to_owned()));

    alice
        .request(
            reqwest::Method::DELETE,
            &format!("{RULES}/content/cake"),
            None,
        )
        .await
        .ok();
    alice
        .get(&format!("{RULES}/content/cake"))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Another user's rules are their own.
    let bob = server.client().register("bob", "pw-bob").await;
    bob.get(&format!("{RULES}/override/first"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn push_rule_errors_follow_the_spec() {
    let server = Server::builder().open_registration().start().await;
    let alice = server.client().register("alice", "pw-alice").await;
    let condition = json!({"conditions": [], "actions": []});
    alice
        .get(&format!("{RULES}/override/nope"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    put_rule(&alice, "override/.mine", condition.clone())
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(&format!("{RULES}/override/mine?before=nope"), &condition)
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .put(
            &format!("{RULES}/override/mine?before=.m.rule.master"),
            &condition,
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .request(
            reqwest::Method::DELETE,
            &format!("{RULES}/override/.m.rule.master"),
            None,
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .request(
            reqwest::Method::DELETE,
            &format!("{RULES}/override/nope"),
            None,
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .put(
            &format!("{RULES}/override/nope/enabled"),
            &json!({"enabled": true}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    let missing_pattern = put_rule(&alice, "content/nopattern", json!({"actions": []})).await;
    assert_eq!(missing_pattern.status, 400, "{}", missing_pattern.text);
    let not_json = alice
        .request_builder(reqwest::Method::PUT, &format!("{RULES}/override/x"))
        .body("{")
        .send()
        .await
        .expect("request");
    assert_eq!(not_json.status().as_u16(), 400);
    let bad_kind = alice.get(&format!("{RULES}/sideways/x")).await;
    assert!(
        bad_kind.status == 400 || bad_kind.status == 404,
        "{} {}",
        bad_kind.status,
        bad_kind.text
    );
    assert!(bad_kind.body["errcode"].is_string(), "{}", bad_kind.text);
    let anonymous = server.client();
    anonymous
        .get("/_matrix/client/v3/pushrules/")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
