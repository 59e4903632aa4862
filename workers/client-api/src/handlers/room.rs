//! `POST /createRoom` and `GET /joined_rooms`.

use std::sync::Arc;

use myelin_bus::messages::{CreateRoom, EventTemplate};
use myelin_http::{MatrixError, RequestContext, Router};
use myelin_room::RoomVersion;
use ruma::api::client::membership::joined_rooms;
use ruma::api::client::room::Visibility;
use ruma::api::client::room::create_room;
use serde_json::{Map, Value, json};

use crate::ClientApi;
use crate::identifier_limits::{check_event_key, local_alias};
use crate::room_writer::template;
use crate::user_ids::random_string;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let create_api = Arc::clone(api);
    router.route_json::<create_room::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&create_api);
        async move { api.create_room(context, request).await }
    });
    let joined_api = Arc::clone(api);
    router.route_json::<joined_rooms::v3::Request, _, _>(move |context, _| {
        let api = Arc::clone(&joined_api);
        async move {
            let user = context.user()?;
            let rooms: Vec<String> = api
                .store
                .memberships_of_user(&user.user_id)
                .await?
                .into_iter()
                .filter(|m| m.membership == "join")
                .map(|m| m.room_id)
                .collect();
            Ok(json!({"joined_rooms": rooms}))
        }
    });
}

fn raw_object<T>(raw: &ruma::serde::Raw<T>, what: &str) -> Result<Map<String, Value>, MatrixError> {
    serde_json::from_str(raw.json().get())
        .map_err(|_| MatrixError::bad_json(format!("{what} must be an object")))
}

/// Synapse's defaults for a new room's power levels.
fn default_power_levels(creator: &str, list_creator: bool) -> Value {
    let users = if list_creator {
        json!({creator: 100})
    } else {
        json!({})
    };
    json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "historical": 100,
    })
}

impl ClientApi {
    async fn create_room(
        &self,
        context: RequestContext,
        request: create_room::v3::Request,
    ) -> Result<Value, MatrixError> {
        let creator = context.user()?.user_id.clone();
        let version_id = request
            .room_version
            .as_ref()
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| self.default_room_version().to_owned());
        let version = RoomVersion::stable(&version_id).ok_or_else(|| {
            MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                "This server does not support that room version",
            )
        })?;
        let alias = match &request.room_alias_name {
            Some(name) => {
                let alias = local_alias(name, &self.server_name)?.to_string();
                if self.store.alias(&alias).await?.is_some() {
                    return Err(MatrixError::new(
                        http::StatusCode::BAD_REQUEST,
                        "M_ROOM_IN_USE",
                        "Room alias already taken",
                    ));
                }
                Some(alias)
            }
            None => None,
        };
        // The invite endpoint's rules, before anything of the room exists;
        // other servers' users are invited once it does.
        let (local_invitees, remote_invitees): (Vec<_>, Vec<_>) = request
            .invite
            .iter()
            .partition(|invitee| self.is_local_name(invitee.as_str()));
        for invitee in &local_invitees {
            self.require_known_local_user(invitee.as_str()).await?;
        }
        let public = request.visibility == Visibility::Public;
        let preset = request
            .preset
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| {
                if public {
                    "public_chat"
                } else {
                    "private_chat"
                }
                .to_owned()
            });

        let mut create_content = match &request.creation_content {
            Some(raw) => raw_object(raw, "creation_content")?,
            None => Map::new(),
        };
        create_content.insert("room_version".to_owned(), json!(version_id));
        if !version.rules.authorization.use_room_create_sender {
            create_content.insert("creator".to_owned(), json!(creator));
        }
        let mut events: Vec<EventTemplate> = vec![template(
            "m.room.create",
            Some(""),
            Value::Object(create_content),
        )];
        let profile = self.store.user(&creator).await?;
        let mut join = json!({"membership": "join"});
        if let Some(profile) = &profile {
            if let Some(name) = &profile.displayname {
                join["displayname"] = json!(name);
            }
            if let Some(avatar) = &profile.avatar_url {
                join["avatar_url"] = json!(avatar);
            }
        }
        events.push(template("m.room.member", Some(&creator), join));

        let mut power_levels = default_power_levels(&creator, !version.privileges_creators());
        if preset == "trusted_private_chat" {
            for invitee in &request.invite {
                power_levels["users"][invitee.as_str()] = json!(100);
            }
        }
        if let Some(raw) = &request.power_level_content_override {
            for (key, value) in raw_object(raw, "power_level_content_override")? {
                power_levels[key] = value;
            }
        }
        events.push(template("m.room.power_levels", Some(""), power_levels));
        if let Some(alias) = &alias {
            events.push(template(
                "m.room.canonical_alias",
                Some(""),
                json!({"alias": alias}),
            ));
        }
        let join_rule = if preset == "public_chat" {
            "public"
        } else {
            "invite"
        };
        events.push(template(
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": join_rule}),
        ));
        events.push(template(
            "m.room.history_visibility",
            Some(""),
            json!({"history_visibility": "shared"}),
        ));
        if preset != "public_chat" {
            events.push(template(
                "m.room.guest_access",
                Some(""),
                json!({"guest_access": "can_join"}),
            ));
        }
        for raw in &request.initial_state {
            let event: Map<String, Value> = serde_json::from_str(raw.json().get())
                .map_err(|_| MatrixError::bad_json("initial_state entries must be objects"))?;
            let event_type = event
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::bad_json("initial_state entry without type"))?;
            let state_key = match event.get("state_key") {
                None => "",
                Some(Value::String(state_key)) => state_key,
                Some(_) => {
                    return Err(MatrixError::bad_json(
                        "initial_state state_key must be a string",
                    ));
                }
            };
            check_event_key("An initial_state type", event_type)?;
            check_event_key("An initial_state state_key", state_key)?;
            let content = match event.get("content") {
                None => json!({}),
                Some(content @ Value::Object(_)) => content.clone(),
                Some(_) => {
                    return Err(MatrixError::bad_json(
                        "initial_state content must be an object",
                    ));
                }
            };
            events.push(template(event_type, Some(state_key), content));
        }
        if let Some(name) = &request.name {
            events.push(template("m.room.name", Some(""), json!({"name": name})));
        }
        if let Some(topic) = &request.topic {
            events.push(template("m.room.topic", Some(""), json!({"topic": topic})));
        }
        for invitee in &local_invitees {
            let mut content = json!({"membership": "invite"});
            if request.is_direct {
                content["is_direct"] = json!(true);
            }
            if let Some(name) = self
                .store
                .user(invitee.as_str())
                .await?
                .and_then(|invited| invited.displayname)
            {
                content["displayname"] = json!(name);
            }
            events.push(template("m.room.member", Some(invitee.as_str()), content));
        }

        let room_id = (!version.room_id_from_create_event())
            .then(|| format!("!{}:{}", random_string(18), self.server_name));
        let created = self
            .create_room_events(CreateRoom {
                room_id,
                room_version: version_id,
                creator: creator.clone(),
                events,
            })
            .await?;
        if let Some(alias) = alias {
            self.store
                .create_alias(&alias, &created.room_id, &creator)
                .await?;
        }
        if public {
            self.store
                .set_room_published(&created.room_id, true)
                .await?;
        }
        // As Synapse does, a remote invite that fails leaves the room made.
        for invitee in remote_invitees {
            if let Err(error) = self
                .invite_remote(&creator, invitee, &created.room_id, None)
                .await
            {
                tracing::info!(%invitee, room_id = %created.room_id, error = %error.error, "could not invite a user of another server");
            }
        }
        Ok(json!({"room_id": created.room_id}))
    }
}
