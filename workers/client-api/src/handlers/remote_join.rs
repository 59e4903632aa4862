//! Memberships in rooms this server does not have. Joining: ask a resident
//! server for a template (`make_join`), sign it as this server, send it back
//! (`send_join`), check every event of the state and auth chain it returns,
//! keep them, and hand the join to the room's writer. Rejecting an invite
//! goes the same way through `make_leave`/`send_leave`; inviting another
//! server's user through `/v2/invite`.

use myelin_bus::messages::{JoinRemoteRoom, RemoteMembership, RoomInput};
use myelin_federation::{FederationError, check_pdu, parse_pdu};
use myelin_http::MatrixError;
use myelin_room::RoomVersion;
use myelin_types::Partition;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event,
};
use ruma::api::federation::query::get_room_information;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedRoomAliasId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomVersionId,
};
use serde_json::value::RawValue;

use crate::ClientApi;

/// The most servers a join tries, one after the other.
const MAX_JOIN_SERVERS: usize = 5;

/// The content keys of a membership template that are signed here: the
/// membership, the authorising user of a restricted join, and the reason
/// this server itself puts in a knock.
const TEMPLATE_CONTENT: &[&str] = &["membership", "join_authorised_via_users_server", "reason"];

/// The most stripped state events kept with one knock.
const MAX_STRIPPED_STATE: usize = 50;

/// The room versions this server can join, for `make_join`/`make_knock`.
fn supported_versions() -> Vec<RoomVersionId> {
    myelin_room::STABLE_ROOM_VERSIONS
        .iter()
        .filter_map(|version| RoomVersionId::try_from(*version).ok())
        .collect()
}

fn room_and_user(room_id: &str, user_id: &str) -> Result<(OwnedRoomId, OwnedUserId), MatrixError> {
    let room = OwnedRoomId::try_from(room_id)
        .map_err(|error| MatrixError::invalid_param(format!("Bad room ID: {error}")))?;
    let user = OwnedUserId::try_from(user_id)
        .map_err(|error| MatrixError::invalid_param(error.to_string()))?;
    Ok((room, user))
}

fn bad_answer(server: &OwnedServerName, why: impl std::fmt::Display) -> MatrixError {
    MatrixError::new(
        http::StatusCode::BAD_GATEWAY,
        "M_UNKNOWN",
        format!("{server} gave an unusable answer: {why}"),
    )
}

impl ClientApi {
    /// An alias of another server: its room and the servers that can join.
    pub(crate) async fn resolve_remote_alias(
        &self,
        alias: &str,
    ) -> Result<(String, Vec<OwnedServerName>), MatrixError> {
        let alias = OwnedRoomAliasId::try_from(alias)
            .map_err(|error| MatrixError::invalid_param(format!("Bad room alias: {error}")))?;
        let server = alias.server_name().to_owned();
        let answer = self
            .federation
            .send(&server, get_room_information::v1::Request::new(alias))
            .await
            .map_err(FederationError::into_matrix_error)?;
        let mut servers = vec![server];
        servers.extend(answer.servers);
        Ok((answer.room_id.to_string(), servers))
    }

    /// Joins `room_id` through the first of `servers` that lets the user in.
    pub(crate) async fn join_remote(
        &self,
        user_id: &str,
        room_id: &str,
        servers: &[OwnedServerName],
    ) -> Result<(), MatrixError> {
        let mut last_error = MatrixError::not_found("No server to join this room through is known");
        for server in self.other_servers(servers) {
            match self.join_through(user_id, room_id, server).await {
                Ok(()) => return Ok(()),
                // The room's rules refused: another server will say the same.
                Err(error) if error.status == http::StatusCode::FORBIDDEN => return Err(error),
                Err(error) => {
                    tracing::info!(%server, %room_id, error = %error.error, "a remote join failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// The first few of `servers`, without repeats or this server.
    fn other_servers<'a>(&self, servers: &'a [OwnedServerName]) -> Vec<&'a OwnedServerName> {
        let own = self.federation.server_name();
        let mut seen = std::collections::HashSet::new();
        servers
            .iter()
            .filter(|server| server.as_str() != own.as_str() && seen.insert(server.as_str()))
            .take(MAX_JOIN_SERVERS)
            .collect()
    }

    /// Rejects an invite (or withdraws a knock) for a room this server is
    /// not in, through the first of `servers` that takes the leave.
    pub(crate) async fn leave_remote(
        &self,
        user_id: &str,
        room_id: &str,
        servers: &[OwnedServerName],
    ) -> Result<(), MatrixError> {
        let mut last_error =
            MatrixError::not_found("No server to leave this room through is known");
        for server in self.other_servers(servers) {
            match self.leave_through(user_id, room_id, server).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::info!(%server, %room_id, error = %error.error, "a remote leave failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// Knocks on a room this server is not in, through the first of
    /// `servers` that takes the knock.
    pub(crate) async fn knock_remote(
        &self,
        user_id: &str,
        room_id: &str,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let mut last_error = MatrixError::not_found("No server to knock through is known");
        for server in self.other_servers(servers) {
            match self.knock_through(user_id, room_id, server, reason).await {
                Ok(()) => return Ok(()),
                // The room's rules refused: another server will say the same.
                Err(error) if error.status == http::StatusCode::FORBIDDEN => return Err(error),
                Err(error) => {
                    tracing::info!(%server, %room_id, error = %error.error, "a remote knock failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// `make_knock`, signed here, `send_knock`; the knock is kept as the
    /// user's membership with the room's stripped state from the answer.
    async fn knock_through(
        &self,
        user_id: &str,
        room_id: &str,
        server: &OwnedServerName,
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let (room, user) = room_and_user(room_id, user_id)?;
        let mut request = prepare_knock_event::v1::Request::new(room.clone(), user);
        request.ver = supported_versions();
        let made = self
            .federation
            .send(server, request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        let mut template: serde_json::Value =
            serde_json::from_str(made.event.get()).map_err(|error| bad_answer(server, error))?;
        if let Some(reason) = reason {
            template["content"]["reason"] = serde_json::Value::String(reason.to_owned());
        }
        let template = serde_json::value::to_raw_value(&template)
            .map_err(|error| bad_answer(server, error))?;
        let (version, event_id, raw) = self.sign_template(
            server,
            Some(made.room_version),
            &template,
            user_id,
            room_id,
            "knock",
        )?;
        let event = ruma::OwnedEventId::try_from(event_id.as_str())
            .map_err(|error| bad_answer(server, error))?;
        let answer = self
            .federation
            .send(
                server,
                create_knock_event::v1::Request::new(room, event, raw.clone()),
            )
            .await
            .map_err(FederationError::into_matrix_error)?;
        self.keep_membership(room_id, &version, event_id, raw.get().to_owned())
            .await?;
        // What the user's client is shown of the room while it waits.
        let stripped: Vec<serde_json::Value> = answer
            .knock_room_state
            .iter()
            .filter_map(|state| match state {
                ruma::api::federation::membership::RawStrippedState::Pdu(pdu) => {
                    Some(pdu.get().to_owned())
                }
                #[allow(deprecated)]
                ruma::api::federation::membership::RawStrippedState::Stripped(raw) => {
                    Some(raw.json().get().to_owned())
                }
                _ => None,
            })
            .map(|json| myelin_room::stripped_state_event(&json))
            .filter(|value| value.get("type").is_some())
            .take(MAX_STRIPPED_STATE)
            .collect();
        self.store
            .set_invite_state(
                room_id,
                user_id,
                &serde_json::Value::Array(stripped).to_string(),
            )
            .await?;
        Ok(())
    }

    /// A leave signed here that no other server has seen, citing the
    /// user's invite or knock: what ends an invite whose room no server
    /// answers for. The room's writer keeps it as the user's membership.
    pub(crate) async fn leave_here_only(
        &self,
        user_id: &str,
        room_id: &str,
    ) -> Result<(), MatrixError> {
        let room =
            self.store.room(room_id).await?.ok_or_else(|| {
                MatrixError::not_found("No known room with that ID on this server")
            })?;
        let version = RoomVersion::stable(&room.room_version)
            .ok_or_else(|| MatrixError::internal("The room's version is not supported"))?;
        let membership = self
            .store
            .room_memberships(room_id)
            .await?
            .into_iter()
            .find(|member| member.user_id == user_id)
            .ok_or_else(|| MatrixError::forbidden("You are not invited to this room"))?;
        let pending = self
            .store
            .event(&membership.event_id)
            .await?
            .ok_or_else(|| MatrixError::internal("The invite is missing"))?;
        let mut object: CanonicalJsonObject = ruma::canonical_json::try_from_json_map(
            serde_json::json!({
                "type": "m.room.member",
                "room_id": room_id,
                "sender": user_id,
                "state_key": user_id,
                "content": {"membership": "leave"},
                "origin_server_ts": myelin_types::now_millis(),
                "depth": pending.depth.saturating_add(1),
                "prev_events": [membership.event_id],
                "auth_events": [membership.event_id],
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        )
        .map_err(|error| MatrixError::internal(error.to_string()))?;
        let event_id = self.sign_event(&version, &mut object)?;
        let pdu_json = serde_json::to_string(&object)
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        self.keep_membership(room_id, &version, event_id, pdu_json)
            .await
    }

    /// Hands a local user's membership signed here (a leave or knock a
    /// resident server took, or a leave no server saw) to the room's writer,
    /// which keeps it without holding the room.
    async fn keep_membership(
        &self,
        room_id: &str,
        version: &RoomVersion,
        event_id: String,
        pdu_json: String,
    ) -> Result<(), MatrixError> {
        let membership = RemoteMembership {
            room_id: room_id.to_owned(),
            room_version: version.id.as_str().to_owned(),
            event_id,
            pdu_json,
            origin: self.server_name.clone(),
        };
        myelin_process::request_room_input(
            self.bus.as_ref(),
            Partition::of_room(room_id),
            RoomInput::RemoteMembership(membership),
        )
        .await?;
        Ok(())
    }

    /// `make_leave` from a resident server, signed here, `send_leave` back,
    /// then kept as the user's membership by the room's writer.
    async fn leave_through(
        &self,
        user_id: &str,
        room_id: &str,
        server: &OwnedServerName,
    ) -> Result<(), MatrixError> {
        let (room, user) = room_and_user(room_id, user_id)?;
        let made = self
            .federation
            .send(
                server,
                prepare_leave_event::v1::Request::new(room.clone(), user),
            )
            .await
            .map_err(FederationError::into_matrix_error)?;
        let (version, event_id, raw) = self.sign_template(
            server,
            made.room_version,
            &made.event,
            user_id,
            room_id,
            "leave",
        )?;
        let event = ruma::OwnedEventId::try_from(event_id.as_str())
            .map_err(|error| bad_answer(server, error))?;
        self.federation
            .send(
                server,
                create_leave_event::v2::Request::new(room, event, raw.clone()),
            )
            .await
            .map_err(FederationError::into_matrix_error)?;
        self.keep_membership(room_id, &version, event_id, raw.get().to_owned())
            .await
    }

    async fn join_through(
        &self,
        user_id: &str,
        room_id: &str,
        server: &OwnedServerName,
    ) -> Result<(), MatrixError> {
        let (room, user) = room_and_user(room_id, user_id)?;
        let mut request = prepare_join_event::v1::Request::new(room.clone(), user);
        request.ver = supported_versions();
        let made = self
            .federation
            .send(server, request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        let (version, event_id, raw) = self.sign_template(
            server,
            made.room_version,
            &made.event,
            user_id,
            room_id,
            "join",
        )?;
        let event = ruma::OwnedEventId::try_from(event_id.as_str())
            .map_err(|error| bad_answer(server, error))?;
        let joined = self
            .federation
            .send(
                server,
                create_join_event::v2::Request::new(room.clone(), event, raw.clone()),
            )
            .await
            .map_err(FederationError::into_matrix_error)?;
        let state = joined.room_state;
        let mut checked_events = Vec::with_capacity(state.state.len() + state.auth_chain.len());
        let mut state_ids = Vec::with_capacity(state.state.len());
        for (raw, in_state) in state
            .auth_chain
            .iter()
            .map(|raw| (raw, false))
            .chain(state.state.iter().map(|raw| (raw, true)))
        {
            let object = parse_pdu(raw).map_err(|why| bad_answer(server, why))?;
            let checked = check_pdu(&self.server_keys, &version, object)
                .await
                .map_err(|why| bad_answer(server, why))?;
            if checked.room_id != room_id {
                return Err(bad_answer(server, "an event of another room"));
            }
            if in_state {
                state_ids.push(checked.event_id.clone());
            }
            checked_events.push(checked);
        }
        // Each event of the state and auth chain must be allowed by the
        // auth events it cites; what is not is neither kept nor state.
        let pdus: Vec<std::sync::Arc<myelin_room::Pdu>> = checked_events
            .iter()
            .map(|checked| std::sync::Arc::new(checked.pdu.clone()))
            .collect();
        let allowed = myelin_room::authorized_by_auth_events(&version, &pdus);
        let allowed = |event_id: &str| {
            ruma::OwnedEventId::try_from(event_id).is_ok_and(|id| allowed.contains(&id))
        };
        let refused = state_ids.iter().filter(|id| !allowed(id)).count();
        if refused > 0 {
            tracing::info!(%server, %room_id, refused, "state events of a join the auth rules do not allow were left out");
        }
        state_ids.retain(|event_id| allowed(event_id));
        self.store
            .store_outliers(
                checked_events
                    .iter()
                    .filter(|checked| allowed(&checked.event_id))
                    .map(myelin_federation::CheckedPdu::outlier)
                    .collect(),
            )
            .await?;
        let join = JoinRemoteRoom {
            room_id: room_id.to_owned(),
            room_version: version.id.as_str().to_owned(),
            event_id,
            pdu_json: raw.get().to_owned(),
            state_ids,
        };
        myelin_process::request_room_input(
            self.bus.as_ref(),
            Partition::of_room(room_id),
            RoomInput::JoinRemote(join),
        )
        .await?;
        Ok(())
    }

    /// A resident server's template (`make_join`, `make_leave`), checked to
    /// be the user's own `membership` of that room in a version this server
    /// can join over federation, with this server's hashes and signature;
    /// returns the room version, the event ID and the signed event.
    fn sign_template(
        &self,
        server: &OwnedServerName,
        version_id: Option<RoomVersionId>,
        template: &RawValue,
        user_id: &str,
        room_id: &str,
        wanted: &str,
    ) -> Result<(RoomVersion, String, Box<RawValue>), MatrixError> {
        let version_id = version_id.unwrap_or(RoomVersionId::V1);
        let version = RoomVersion::stable(version_id.as_str()).ok_or_else(|| {
            MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                format!("The room's version {version_id} is not supported"),
            )
        })?;
        let mut object: CanonicalJsonObject =
            serde_json::from_str(template.get()).map_err(|error| bad_answer(server, error))?;
        let text = |key: &str| match object.get(key) {
            Some(CanonicalJsonValue::String(value)) => Some(value.clone()),
            _ => None,
        };
        let membership = match object.get("content") {
            Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
                Some(CanonicalJsonValue::String(membership)) => Some(membership.clone()),
                _ => None,
            },
            _ => None,
        };
        if text("type").as_deref() != Some("m.room.member")
            || text("sender").as_deref() != Some(user_id)
            || text("state_key").as_deref() != Some(user_id)
            || text("room_id").as_deref() != Some(room_id)
            || membership.as_deref() != Some(wanted)
        {
            return Err(bad_answer(
                server,
                format!("the template is not this user's {wanted}"),
            ));
        }
        // Only what this server means the user to say is signed: the
        // resident server may not put words (a display name, say) in it.
        if let Some(CanonicalJsonValue::Object(content)) = object.get_mut("content") {
            content.retain(|key, _| TEMPLATE_CONTENT.contains(&key.as_str()));
        }
        object.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::Integer(
                ruma::Int::new(myelin_types::now_millis()).unwrap_or_default(),
            ),
        );
        let event_id = self.sign_event(&version, &mut object)?;
        let raw = RawValue::from_string(
            serde_json::to_string(&object).map_err(|error| bad_answer(server, error))?,
        )
        .map_err(|error| bad_answer(server, error))?;
        Ok((version, event_id, raw))
    }

    /// Adds this server's hashes and signature to an event built here for
    /// a handshake with another server; returns its event ID.
    fn sign_event(
        &self,
        version: &RoomVersion,
        object: &mut CanonicalJsonObject,
    ) -> Result<String, MatrixError> {
        object.insert(
            "origin".to_owned(),
            CanonicalJsonValue::String(self.server_name.clone()),
        );
        // Versions 1 and 2: the event carries an ID this server makes up.
        let explicit_id = myelin_room::explicit_event_id(version, &self.server_name);
        if let Some(event_id) = &explicit_id {
            object.insert(
                "event_id".to_owned(),
                CanonicalJsonValue::String(event_id.clone()),
            );
        }
        ruma::signatures::hash_and_sign_event(
            &self.server_name,
            self.server_key.key_pair(),
            object,
            &version.rules.redaction,
        )
        .map_err(|error| MatrixError::internal(format!("cannot sign the event: {error}")))?;
        if let Some(event_id) = explicit_id {
            return Ok(event_id);
        }
        let hash = ruma::signatures::reference_hash(object, &version.rules)
            .map_err(|error| MatrixError::internal(format!("cannot hash the event: {error}")))?;
        Ok(format!("${hash}"))
    }
}

impl ClientApi {
    /// Invites another server's user: the invite is built on the room's
    /// head and signed here, countersigned by the invitee's server
    /// (`PUT /v2/invite`, with the room's stripped state as whole PDUs),
    /// and only then written, so a refusal leaves nothing behind.
    pub(crate) async fn invite_remote(
        &self,
        inviter: &str,
        invitee: &OwnedUserId,
        room_id: &str,
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let store = self.store.as_ref();
        let head = myelin_federation::room_head::current_head(store, room_id).await?;
        let mut content = serde_json::json!({"membership": "invite"});
        if let Some(reason) = reason {
            content["reason"] = serde_json::Value::String(reason.to_owned());
        }
        let template = myelin_room::event_template(
            &myelin_room::RoomHead {
                version: &head.version,
                room_id: Some(room_id),
                state: &head.state,
                extremities: &head.extremities,
                max_depth: head.max_depth,
            },
            myelin_room::NewEvent {
                sender: inviter,
                event_type: "m.room.member",
                state_key: Some(invitee.as_str()),
                content,
                redacts: None,
                origin_server_ts: myelin_types::now_millis(),
            },
        )
        .map_err(|error| match error {
            myelin_room::ComposeError::Auth(why) => MatrixError::forbidden(why.to_string()),
            myelin_room::ComposeError::Build(why) => MatrixError::bad_json(why.to_string()),
        })?;
        let mut object: CanonicalJsonObject = ruma::canonical_json::try_from_json_map(template)
            .map_err(|error| MatrixError::bad_json(error.to_string()))?;
        let event_id = self.sign_event(&head.version, &mut object)?;
        let stripped = head
            .state
            .iter()
            .filter(|((event_type, _), _)| {
                myelin_room::INVITE_STATE_TYPES.contains(&event_type.as_str())
            })
            .map(|(_, pdu)| pdu.event_id.to_string())
            .collect::<Vec<_>>();
        let stripped = self
            .store
            .events_by_id(&stripped)
            .await?
            .into_iter()
            // Since Matrix 1.16 these go over federation as whole PDUs.
            .filter_map(|event| RawValue::from_string(event.pdu_json).ok())
            .map(ruma::api::federation::membership::RawStrippedState::Pdu)
            .collect();
        let internal = |error: &dyn std::fmt::Display| MatrixError::internal(error.to_string());
        let raw = RawValue::from_string(
            serde_json::to_string(&object).map_err(|error| internal(&error))?,
        )
        .map_err(|error| internal(&error))?;
        let request = create_invite::v2::Request::new(
            OwnedRoomId::try_from(room_id).map_err(|error| internal(&error))?,
            ruma::OwnedEventId::try_from(event_id.as_str()).map_err(|error| internal(&error))?,
            RoomVersionId::try_from(head.version.id.as_str()).map_err(|error| internal(&error))?,
            raw,
            stripped,
        );
        let server = invitee.server_name().to_owned();
        let answer = self
            .federation
            .send(&server, request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        // The countersigned event must be the one sent, with both signatures.
        let object = parse_pdu(&answer.event).map_err(|why| bad_answer(&server, why))?;
        let checked = check_pdu(&self.server_keys, &head.version, object)
            .await
            .map_err(|why| bad_answer(&server, why))?;
        if checked.event_id != event_id || checked.redacted {
            return Err(bad_answer(
                &server,
                "the countersigned invite is another event",
            ));
        }
        let remote = myelin_bus::messages::RemoteEvent {
            room_id: room_id.to_owned(),
            event_id,
            pdu_json: checked.json,
            origin: self.server_name.clone(),
            kind: myelin_bus::messages::RemoteEventKind::Transaction,
            state_ids: None,
        };
        myelin_process::request_room_input(
            self.bus.as_ref(),
            Partition::of_room(room_id),
            RoomInput::Remote(remote),
        )
        .await?;
        Ok(())
    }
}
