//! Joining a room this server does not have: ask a resident server for a
//! template (`make_join`), sign it as this server, send it back
//! (`send_join`), check every event of the state and auth chain it returns,
//! keep them, and hand the join to the room's writer.

use myelin_bus::messages::{JoinRemoteRoom, RoomInput};
use myelin_federation::{FederationError, check_pdu, parse_pdu};
use myelin_http::MatrixError;
use myelin_room::RoomVersion;
use myelin_store::OutlierEvent;
use myelin_types::Partition;
use ruma::api::federation::membership::{create_invite, create_join_event, prepare_join_event};
use ruma::api::federation::query::get_room_information;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedRoomAliasId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomVersionId,
};
use serde_json::value::RawValue;

use crate::ClientApi;

/// The most servers a join tries, one after the other.
const MAX_JOIN_SERVERS: usize = 5;

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
        let own = self.federation.server_name();
        let mut seen = std::collections::HashSet::new();
        let candidates = servers
            .iter()
            .filter(|server| server.as_str() != own.as_str() && seen.insert(server.as_str()))
            .take(MAX_JOIN_SERVERS);
        for server in candidates {
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

    async fn join_through(
        &self,
        user_id: &str,
        room_id: &str,
        server: &OwnedServerName,
    ) -> Result<(), MatrixError> {
        let room = OwnedRoomId::try_from(room_id)
            .map_err(|error| MatrixError::invalid_param(format!("Bad room ID: {error}")))?;
        let user = OwnedUserId::try_from(user_id)
            .map_err(|error| MatrixError::invalid_param(error.to_string()))?;
        let mut request = prepare_join_event::v1::Request::new(room.clone(), user);
        request.ver = myelin_room::STABLE_ROOM_VERSIONS
            .iter()
            .filter_map(|version| RoomVersionId::try_from(*version).ok())
            .collect();
        let made = self
            .federation
            .send(server, request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        let version_id = made.room_version.unwrap_or(RoomVersionId::V1);
        let version = RoomVersion::stable(version_id.as_str()).ok_or_else(|| {
            MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                format!("The room's version {version_id} is not supported"),
            )
        })?;
        if version.rules.event_id_format == ruma::room_version_rules::EventIdFormatVersion::V1 {
            return Err(MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                "Joining rooms of versions 1 and 2 over federation is not supported",
            ));
        }
        let (event_id, pdu) =
            self.sign_template(server, &version, &made.event, user_id, room_id)?;
        let raw = RawValue::from_string(
            serde_json::to_string(&pdu).map_err(|error| bad_answer(server, error))?,
        )
        .map_err(|error| bad_answer(server, error))?;
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
        let mut outliers = Vec::with_capacity(state.state.len() + state.auth_chain.len());
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
            let pdu = &checked.pdu;
            outliers.push(OutlierEvent {
                event_id: checked.event_id.clone(),
                room_id: room_id.to_owned(),
                sender: pdu.sender.to_string(),
                event_type: pdu.event_type.to_string(),
                state_key: pdu.state_key.clone(),
                depth: pdu.depth,
                origin_server_ts: pdu.origin_server_ts.get().into(),
                pdu_json: checked.json,
            });
        }
        self.store.store_outliers(outliers).await?;
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

    /// The template, checked to be the user's own join to that room, with
    /// this server's hashes and signature; returns its event ID.
    fn sign_template(
        &self,
        server: &OwnedServerName,
        version: &RoomVersion,
        template: &RawValue,
        user_id: &str,
        room_id: &str,
    ) -> Result<(String, CanonicalJsonObject), MatrixError> {
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
            || membership.as_deref() != Some("join")
        {
            return Err(bad_answer(server, "the template is not this user's join"));
        }
        object.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::Integer(
                ruma::Int::new(myelin_types::now_millis()).unwrap_or_default(),
            ),
        );
        object.insert(
            "origin".to_owned(),
            CanonicalJsonValue::String(self.server_name.clone()),
        );
        ruma::signatures::hash_and_sign_event(
            &self.server_name,
            self.server_key.key_pair(),
            &mut object,
            &version.rules.redaction,
        )
        .map_err(|error| MatrixError::internal(format!("cannot sign the join: {error}")))?;
        let hash = ruma::signatures::reference_hash(&object, &version.rules)
            .map_err(|error| MatrixError::internal(format!("cannot hash the join: {error}")))?;
        Ok((format!("${hash}"), object))
    }
}

impl ClientApi {
    /// Hands an invite of another server's user, written here, to that
    /// server, with the room's stripped state, as `PUT /v2/invite` asks.
    pub(crate) async fn invite_remote(
        &self,
        invitee: &OwnedUserId,
        room_id: &str,
        event_id: &str,
    ) -> Result<(), MatrixError> {
        let stored = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| MatrixError::internal("the invite just written is missing"))?;
        let room = self
            .store
            .room(room_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let stripped = self
            .store
            .current_state(room_id)
            .await?
            .iter()
            .filter(|event| myelin_room::INVITE_STATE_TYPES.contains(&event.event_type.as_str()))
            // Since Matrix 1.16 these go over federation as whole PDUs.
            .filter_map(|event| RawValue::from_string(event.pdu_json.clone()).ok())
            .map(ruma::api::federation::membership::RawStrippedState::Pdu)
            .collect();
        let internal = |error: &dyn std::fmt::Display| MatrixError::internal(error.to_string());
        let request = create_invite::v2::Request::new(
            OwnedRoomId::try_from(room_id).map_err(|error| internal(&error))?,
            ruma::OwnedEventId::try_from(event_id).map_err(|error| internal(&error))?,
            RoomVersionId::try_from(room.room_version.as_str())
                .map_err(|error| internal(&error))?,
            RawValue::from_string(stored.pdu_json).map_err(|error| internal(&error))?,
            stripped,
        );
        self.federation
            .send(invitee.server_name(), request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        Ok(())
    }
}
