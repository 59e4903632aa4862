//! Joining and leaving from another server: `make_join`/`send_join` and
//! `make_leave`/`send_leave`. The template is built on the room's current
//! head; the signed event goes to the room's writer like any other.

use std::sync::Arc;

use myelin_bus::messages::{RemoteEvent, RemoteEventKind, RemoteMembership, RoomInput};
use myelin_federation::server_acl::require_acl;
use myelin_federation::{check_pdu, parse_pdu};
use myelin_http::{MatrixError, RequestContext};
use myelin_room::{ComposeError, NewEvent, RoomHead, event_template};
use myelin_types::Partition;
use ruma::api::federation::membership::{
    RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event,
    prepare_join_event, prepare_knock_event, prepare_leave_event,
};
use ruma::{OwnedEventId, RoomVersionId, UserId};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::FederationApi;
use crate::rooms::{self, auth_chain, current_head, raw_pdu, state_before};

fn template_refusal(error: ComposeError) -> MatrixError {
    match error {
        ComposeError::Auth(why) => MatrixError::forbidden(why.to_string()),
        ComposeError::Build(why) => MatrixError::bad_json(why.to_string()),
    }
}

impl FederationApi {
    /// A membership template for `user_id` of the requesting server.
    async fn membership_template(
        &self,
        ctx: &RequestContext,
        room_id: &str,
        user_id: &UserId,
        membership: &str,
        supported: Option<&[RoomVersionId]>,
    ) -> Result<(RoomVersionId, Box<RawValue>), MatrixError> {
        let origin = &**ctx.origin()?;
        if user_id.server_name() != origin {
            return Err(MatrixError::forbidden(
                "The user is not a user of the requesting server",
            ));
        }
        let head = current_head(self.store.as_ref(), room_id).await?;
        require_acl(self.store.as_ref(), room_id, origin.as_str()).await?;
        let version_id = RoomVersionId::try_from(head.version.id.as_str())
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        // Without `ver` a server speaks only version 1.
        if let Some(supported) = supported {
            let fallback = [RoomVersionId::V1];
            let supported = if supported.is_empty() {
                &fallback[..]
            } else {
                supported
            };
            if !supported.contains(&version_id) {
                return Err(MatrixError::new(
                    http::StatusCode::BAD_REQUEST,
                    "M_INCOMPATIBLE_ROOM_VERSION",
                    format!("The room is of version {version_id}, which the joining server does not support"),
                )
                .with("room_version", Value::String(version_id.to_string())));
            }
        }
        let mut template = event_template(
            &RoomHead {
                version: &head.version,
                room_id: Some(room_id),
                state: &head.state,
                extremities: &head.extremities,
                max_depth: head.max_depth,
            },
            NewEvent {
                sender: user_id.as_str(),
                event_type: "m.room.member",
                state_key: Some(user_id.as_str()),
                content: json!({"membership": membership}),
                redacts: None,
                origin_server_ts: myelin_types::now_millis(),
            },
        )
        .map_err(template_refusal)?;
        template.insert("origin".to_owned(), Value::String(origin.to_string()));
        let raw = serde_json::value::to_raw_value(&template)
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        Ok((version_id, raw))
    }

    /// Checks a signed membership event and hands it to the room's writer.
    async fn accept_membership(
        &self,
        ctx: &RequestContext,
        room_id: &str,
        event_id: &OwnedEventId,
        pdu: &RawValue,
        kind: RemoteEventKind,
    ) -> Result<(), MatrixError> {
        let origin = &**ctx.origin()?;
        let version = rooms::room_version(self.store.as_ref(), room_id).await?;
        require_acl(self.store.as_ref(), room_id, origin.as_str()).await?;
        let object = parse_pdu(pdu).map_err(|why| MatrixError::bad_json(why.0))?;
        let checked = check_pdu(&self.server_keys, &version, object)
            .await
            .map_err(|why| MatrixError::forbidden(why.0))?;
        if checked.event_id != event_id.as_str() {
            return Err(MatrixError::bad_json(
                "The event ID in the path is not the event's",
            ));
        }
        if checked.room_id != room_id {
            return Err(MatrixError::bad_json("The event belongs to another room"));
        }
        let remote = RemoteEvent {
            room_id: room_id.to_owned(),
            event_id: checked.event_id,
            pdu_json: checked.json,
            origin: origin.to_string(),
            kind,
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

pub(crate) async fn make_join(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: prepare_join_event::v1::Request,
) -> Result<prepare_join_event::v1::Response, MatrixError> {
    let (version, event) = api
        .membership_template(
            &ctx,
            request.room_id.as_str(),
            &request.user_id,
            "join",
            Some(&request.ver),
        )
        .await?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

pub(crate) async fn send_join(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: create_join_event::v2::Request,
) -> Result<create_join_event::v2::Response, MatrixError> {
    let room_id = request.room_id.as_str();
    api.accept_membership(
        &ctx,
        room_id,
        &request.event_id,
        &request.pdu,
        RemoteEventKind::Join,
    )
    .await?;
    let store = api.store.as_ref();
    let state = state_before(store, room_id, request.event_id.as_str()).await?;
    let mut start = state.clone();
    if let Some(join) = store.event(request.event_id.as_str()).await? {
        start.push(join);
    }
    let chain = auth_chain(store, &start).await?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = state.iter().map(raw_pdu).collect::<Result<_, _>>()?;
    room_state.auth_chain = chain.iter().map(raw_pdu).collect::<Result<_, _>>()?;
    Ok(create_join_event::v2::Response::new(room_state))
}

pub(crate) async fn make_leave(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: prepare_leave_event::v1::Request,
) -> Result<prepare_leave_event::v1::Response, MatrixError> {
    let (version, event) = api
        .membership_template(
            &ctx,
            request.room_id.as_str(),
            &request.user_id,
            "leave",
            None,
        )
        .await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

pub(crate) async fn send_leave(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: create_leave_event::v2::Request,
) -> Result<create_leave_event::v2::Response, MatrixError> {
    api.accept_membership(
        &ctx,
        request.room_id.as_str(),
        &request.event_id,
        &request.pdu,
        RemoteEventKind::Leave,
    )
    .await?;
    Ok(create_leave_event::v2::Response::new())
}

pub(crate) async fn make_knock(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: prepare_knock_event::v1::Request,
) -> Result<prepare_knock_event::v1::Response, MatrixError> {
    let (version, event) = api
        .membership_template(
            &ctx,
            request.room_id.as_str(),
            &request.user_id,
            "knock",
            Some(&request.ver),
        )
        .await?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

/// The knock is written (the room's rules decide), and the knocker's server
/// gets the room's stripped state to show its user.
pub(crate) async fn send_knock(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: create_knock_event::v1::Request,
) -> Result<create_knock_event::v1::Response, MatrixError> {
    let room_id = request.room_id.as_str();
    api.accept_membership(
        &ctx,
        room_id,
        &request.event_id,
        &request.pdu,
        RemoteEventKind::Knock,
    )
    .await?;
    let stripped = api
        .store
        .current_state(room_id)
        .await?
        .into_iter()
        .filter(|event| myelin_room::INVITE_STATE_TYPES.contains(&event.event_type.as_str()))
        .filter_map(|event| RawValue::from_string(event.pdu_json).ok())
        .map(RawStrippedState::Pdu)
        .collect();
    Ok(create_knock_event::v1::Response::new(stripped))
}

/// Another server invites a user of this one: the invite is checked,
/// countersigned, kept with the room's stripped state for the invitee's
/// client, and handed to the room's writer.
pub(crate) async fn invite(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: create_invite::v2::Request,
) -> Result<create_invite::v2::Response, MatrixError> {
    let origin = &**ctx.origin()?;
    let room_id = request.room_id.as_str();
    require_acl(api.store.as_ref(), room_id, origin.as_str()).await?;
    let version =
        myelin_room::RoomVersion::stable(request.room_version.as_str()).ok_or_else(|| {
            MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_INCOMPATIBLE_ROOM_VERSION",
                "This server does not support the room's version",
            )
            .with(
                "room_version",
                Value::String(request.room_version.to_string()),
            )
        })?;
    let object = parse_pdu(&request.event).map_err(|why| MatrixError::bad_json(why.0))?;
    let checked = check_pdu(&api.server_keys, &version, object.clone())
        .await
        .map_err(|why| MatrixError::forbidden(why.0))?;
    if checked.event_id != request.event_id.as_str() || checked.room_id != room_id {
        return Err(MatrixError::bad_json(
            "The event is not the one the path names",
        ));
    }
    let pdu = &checked.pdu;
    let invitee = pdu.state_key.clone().unwrap_or_default();
    let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
    if pdu.event_type.to_string() != "m.room.member"
        || content.get("membership").and_then(Value::as_str) != Some("invite")
    {
        return Err(MatrixError::bad_json("The event is not an invite"));
    }
    if pdu.sender.server_name() != origin {
        return Err(MatrixError::forbidden(
            "The inviter is not a user of the requesting server",
        ));
    }
    let invitee_id = ruma::OwnedUserId::try_from(invitee.as_str())
        .map_err(|error| MatrixError::bad_json(error.to_string()))?;
    if !api.is_local(&invitee_id) {
        return Err(MatrixError::bad_json(
            "The invitee is not a user of this server",
        ));
    }
    api.store
        .user(&invitee)
        .await?
        .filter(|user| !user.deactivated)
        .ok_or_else(|| MatrixError::not_found("The invitee does not exist"))?;

    // This server's signature joins the inviting server's.
    let mut signed: ruma::CanonicalJsonObject = serde_json::from_str(&checked.json)
        .map_err(|error| MatrixError::bad_json(error.to_string()))?;
    ruma::signatures::hash_and_sign_event(
        &api.config.server_name,
        api.server_key.key_pair(),
        &mut signed,
        &version.rules.redaction,
    )
    .map_err(|error| MatrixError::internal(format!("cannot sign the invite: {error}")))?;
    let signed_json =
        serde_json::to_string(&signed).map_err(|error| MatrixError::internal(error.to_string()))?;

    let stripped: Vec<Value> = request
        .invite_room_state
        .iter()
        .filter_map(|state| {
            let json = match state {
                RawStrippedState::Pdu(pdu) => pdu.get().to_owned(),
                #[allow(deprecated)]
                RawStrippedState::Stripped(raw) => raw.json().get().to_owned(),
                _ => return None,
            };
            let value = myelin_room::stripped_state_event(&json);
            value.get("type").is_some().then_some(value)
        })
        .take(MAX_INVITE_STATE)
        .collect();
    myelin_process::request_room_input(
        api.bus.as_ref(),
        Partition::of_room(room_id),
        RoomInput::RemoteMembership(RemoteMembership {
            room_id: room_id.to_owned(),
            room_version: version.id.as_str().to_owned(),
            event_id: checked.event_id,
            pdu_json: signed_json.clone(),
            origin: origin.to_string(),
        }),
    )
    .await?;
    // Kept once the room's writer took the invite: what the invitee's
    // client is shown of a room this server does not hold.
    api.store
        .set_invite_state(room_id, &invitee, &Value::Array(stripped).to_string())
        .await?;
    let raw = RawValue::from_string(signed_json)
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    Ok(create_invite::v2::Response::new(raw))
}

/// The most stripped state events kept with one invite.
const MAX_INVITE_STATE: usize = 50;
