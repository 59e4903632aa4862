//! `POST /rooms/{roomId}/upgrade`: replaces a room with a new one of another
//! version, carrying its settings over and tombstoning the old one.

mod power_levels;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use myelin_bus::messages::{CreateRoom, EventTemplate};
use myelin_http::{MatrixError, RequestContext, Router};
use myelin_room::RoomVersion;
use ruma::api::client::room::upgrade_room;
use serde_json::{Map, Value, json};

use crate::ClientApi;
use crate::access::ReadAccess;
use crate::room_writer::template;
use crate::user_ids::random_string;
use power_levels::{may_send_state, new_room_power_levels, restricted_power_levels};

/// The spec's recommended transferable state, plus the canonical alias
/// (whose aliases move along), copied in this order after the power levels.
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.canonical_alias",
];

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<upgrade_room::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move { api.upgrade_room(context, request).await }
    });
}

/// `content` of a stored PDU.
fn content_of(pdu_json: &str) -> Value {
    serde_json::from_str::<Value>(pdu_json)
        .ok()
        .and_then(|mut pdu| pdu.get_mut("content").map(Value::take))
        .unwrap_or_else(|| json!({}))
}

/// The room's creators: the create event's sender (or, before version 11,
/// its `creator`) and, where creators are privileged, `additional_creators`.
fn creators_of(sender: &str, create: &Value, privileged: bool) -> Vec<String> {
    let creator = create
        .get("creator")
        .and_then(Value::as_str)
        .unwrap_or(sender);
    let mut creators = vec![creator.to_owned()];
    if privileged && let Some(more) = create.get("additional_creators").and_then(Value::as_array) {
        creators.extend(more.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    creators
}

/// The new room's `m.room.create` content.
fn new_create_content(
    old_create: &Value,
    old_room_id: &str,
    last_event_id: Option<&str>,
    version: &RoomVersion,
    upgrader: &str,
    additional_creators: &[String],
) -> Value {
    let mut content = Map::new();
    content.insert("room_version".to_owned(), json!(version.id.as_str()));
    let mut predecessor = json!({"room_id": old_room_id});
    if let Some(event_id) = last_event_id {
        // Deprecated from version 12 on, but still sent for older clients.
        predecessor["event_id"] = json!(event_id);
    }
    content.insert("predecessor".to_owned(), predecessor);
    if !version.rules.authorization.use_room_create_sender {
        content.insert("creator".to_owned(), json!(upgrader));
    }
    if let Some(room_type) = old_create.get("type") {
        content.insert("type".to_owned(), room_type.clone());
    }
    if old_create.get("m.federate") == Some(&Value::Bool(false)) {
        content.insert("m.federate".to_owned(), json!(false));
    }
    if !additional_creators.is_empty() {
        content.insert("additional_creators".to_owned(), json!(additional_creators));
    }
    Value::Object(content)
}

impl ClientApi {
    /// Whether the user may send a state event of `event_type` in the room
    /// now, as its power levels and creators stand.
    pub(crate) async fn may_send_state_now(
        &self,
        room_id: &str,
        user_id: &str,
        event_type: &str,
    ) -> Result<bool, MatrixError> {
        let room =
            self.store.room(room_id).await?.ok_or_else(|| {
                MatrixError::not_found("No known room with that ID on this server")
            })?;
        let version = RoomVersion::stable(&room.room_version)
            .ok_or_else(|| MatrixError::internal("The room has an unknown version"))?;
        let create = self
            .store
            .state_event(room_id, "m.room.create", "")
            .await?
            .ok_or_else(|| MatrixError::internal("The room has no create event"))?;
        let creators = creators_of(
            &create.sender,
            &content_of(&create.pdu_json),
            version.privileges_creators(),
        );
        let power_levels = self
            .store
            .state_event(room_id, "m.room.power_levels", "")
            .await?
            .map(|event| content_of(&event.pdu_json));
        Ok(may_send_state(
            power_levels.as_ref(),
            &creators,
            version.privileges_creators(),
            user_id,
            event_type,
        ))
    }

    async fn upgrade_room(
        &self,
        context: RequestContext,
        request: upgrade_room::v3::Request,
    ) -> Result<Value, MatrixError> {
        let user_id = context.user()?.user_id.clone();
        let old_room_id = request.room_id.as_str();
        let version = RoomVersion::stable(request.new_version.as_str()).ok_or_else(|| {
            MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                "This server does not support that room version",
            )
        })?;
        let additional_creators: Vec<String> = request
            .additional_creators
            .iter()
            .map(ToString::to_string)
            .filter(|creator| *creator != user_id)
            .collect();
        if !additional_creators.is_empty() && !version.privileges_creators() {
            return Err(MatrixError::invalid_param(
                "additional_creators needs a room version whose creators are privileged",
            ));
        }
        let old_room =
            self.store.room(old_room_id).await?.ok_or_else(|| {
                MatrixError::not_found("No known room with that ID on this server")
            })?;
        let old_version = RoomVersion::stable(&old_room.room_version)
            .ok_or_else(|| MatrixError::internal("The room has an unknown version"))?;
        if self.read_access(old_room_id, &user_id).await? != ReadAccess::Joined {
            return Err(MatrixError::forbidden("You are not in this room"));
        }

        let mut state: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for event in self.store.current_state(old_room_id).await? {
            if event.state_key.as_deref() == Some("") {
                let content = content_of(&event.pdu_json);
                state.insert(event.event_type, (event.sender, content));
            }
        }
        let (create_sender, old_create) = state
            .get("m.room.create")
            .cloned()
            .ok_or_else(|| MatrixError::internal("The room has no create event"))?;
        let old_creators = creators_of(
            &create_sender,
            &old_create,
            old_version.privileges_creators(),
        );
        let old_power_levels = state.get("m.room.power_levels").map(|(_, pl)| pl);
        if !may_send_state(
            old_power_levels,
            &old_creators,
            old_version.privileges_creators(),
            &user_id,
            "m.room.tombstone",
        ) {
            return Err(MatrixError::forbidden(
                "You are not permitted to upgrade this room",
            ));
        }
        let last_event_id = self
            .store
            .forward_extremities(old_room_id)
            .await?
            .into_iter()
            .max_by_key(|(_, depth)| *depth)
            .map(|(event_id, _)| event_id);

        let mut events: Vec<EventTemplate> = vec![template(
            "m.room.create",
            Some(""),
            new_create_content(
                &old_create,
                old_room_id,
                last_event_id.as_deref(),
                &version,
                &user_id,
                &additional_creators,
            ),
        )];
        let mut join = json!({"membership": "join"});
        if let Some(profile) = self.store.user(&user_id).await? {
            if let Some(name) = profile.displayname {
                join["displayname"] = json!(name);
            }
            if let Some(avatar) = profile.avatar_url {
                join["avatar_url"] = json!(avatar);
            }
        }
        events.push(template("m.room.member", Some(&user_id), join));
        let mut restore = None;
        if let Some(old_pl) = old_power_levels {
            let mut new_creators = additional_creators.clone();
            new_creators.push(user_id.clone());
            let (initial, after) = new_room_power_levels(
                old_pl,
                &user_id,
                old_version
                    .privileges_creators()
                    .then_some(&old_creators[..]),
                version.privileges_creators().then_some(&new_creators[..]),
            );
            events.push(template("m.room.power_levels", Some(""), initial));
            restore = after;
        }
        for event_type in COPIED_STATE {
            if let Some((_, content)) = state.get(*event_type)
                && content.as_object().is_some_and(|c| !c.is_empty())
            {
                events.push(template(event_type, Some(""), content.clone()));
            }
        }

        let room_id = (!version.room_id_from_create_event())
            .then(|| format!("!{}:{}", random_string(18), self.server_name));
        let created = self
            .create_room_events(CreateRoom {
                room_id,
                room_version: version.id.to_string(),
                creator: user_id.clone(),
                events,
            })
            .await?;
        let new_room_id = created.room_id;
        if let Some(power_levels) = restore {
            let event = template("m.room.power_levels", Some(""), power_levels);
            if let Err(error) = self.send_event(&new_room_id, &user_id, event, None).await {
                tracing::warn!(room_id = %new_room_id, %error.error, "could not restore the copied power levels");
            }
        }

        let tombstone = json!({
            "body": "This room has been replaced",
            "replacement_room": new_room_id,
        });
        self.send_event(
            old_room_id,
            &user_id,
            template("m.room.tombstone", Some(""), tombstone),
            None,
        )
        .await?;
        self.move_aliases(old_room_id, &new_room_id).await;
        self.move_directory_listing(old_room_id, &new_room_id).await;
        if let Some(restricted) = old_power_levels.and_then(restricted_power_levels) {
            let event = template("m.room.power_levels", Some(""), restricted);
            if let Err(error) = self.send_event(old_room_id, &user_id, event, None).await {
                tracing::info!(room_id = %old_room_id, %error.error, "could not restrict the upgraded room");
            }
        }
        Ok(json!({"replacement_room": new_room_id}))
    }

    /// A room published in the directory is replaced there by its
    /// successor, as Synapse does; failures are logged.
    async fn move_directory_listing(&self, old_room_id: &str, new_room_id: &str) {
        let moved = async {
            if self.store.room_published(old_room_id).await? {
                self.store.set_room_published(new_room_id, true).await?;
                self.store.set_room_published(old_room_id, false).await?;
            }
            Ok::<_, myelin_store::StoreError>(())
        };
        if let Err(error) = moved.await {
            tracing::warn!(room_id = %old_room_id, %error, "could not move the directory listing to the upgraded room");
        }
    }

    /// Points every local alias of the old room at the new one, keeping each
    /// alias's creator; failures are logged.
    async fn move_aliases(&self, old_room_id: &str, new_room_id: &str) {
        let aliases = match self.store.room_aliases(old_room_id).await {
            Ok(aliases) => aliases,
            Err(error) => {
                tracing::warn!(room_id = %old_room_id, %error, "cannot list aliases to move");
                return;
            }
        };
        for alias in aliases {
            let moved = async {
                let creator = match self.store.alias(&alias).await? {
                    Some(record) => record.creator,
                    None => return Ok(()),
                };
                self.store.delete_alias(&alias).await?;
                self.store.create_alias(&alias, new_room_id, &creator).await
            };
            if let Err(error) = moved.await {
                tracing::warn!(%alias, %error, "could not move an alias to the upgraded room");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_content_links_the_old_room() {
        let old = json!({"creator": "@a:hs", "room_version": "9", "type": "m.space", "m.federate": false});
        let v9 = RoomVersion::stable("9").expect("v9");
        let content = new_create_content(&old, "!old:hs", Some("$last"), &v9, "@b:hs", &[]);
        assert_eq!(
            content,
            json!({
                "room_version": "9", "creator": "@b:hs", "type": "m.space", "m.federate": false,
                "predecessor": {"room_id": "!old:hs", "event_id": "$last"},
            })
        );
        let v12 = RoomVersion::stable("12").expect("v12");
        let extra = vec!["@c:hs".to_owned()];
        let content = new_create_content(&json!({}), "!old:hs", None, &v12, "@b:hs", &extra);
        assert_eq!(
            content,
            json!({"room_version": "12", "predecessor": {"room_id": "!old:hs"}, "additional_creators": ["@c:hs"]})
        );
    }

    #[test]
    fn creators_come_from_the_create_event() {
        let v1 = json!({"creator": "@a:hs"});
        assert_eq!(creators_of("@a:hs", &v1, false), vec!["@a:hs"]);
        let v12 = json!({"additional_creators": ["@c:hs"]});
        assert_eq!(creators_of("@b:hs", &v12, true), vec!["@b:hs", "@c:hs"]);
        assert_eq!(creators_of("@b:hs", &v12, false), vec!["@b:hs"]);
    }

    #[test]
    fn content_is_taken_from_the_pdu() {
        let pdu = json!({"type": "m.room.name", "content": {"name": "x"}}).to_string();
        assert_eq!(content_of(&pdu), json!({"name": "x"}));
        assert_eq!(content_of("not json"), json!({}));
    }
}
