//! Joining, inviting, leaving, kicking, banning; member lists.

use std::sync::Arc;

use std::collections::BTreeMap;

use myelin_http::{MatrixError, RequestContext, Router};
use ruma::OwnedUserId;
use ruma::api::client::membership::{
    ban_user, forget_room, get_member_events, invite_user, join_room_by_id,
    join_room_by_id_or_alias, joined_members, kick_user, leave_room, unban_user,
};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::access::membership_of;
use crate::identifier_limits::refuse_nul;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<join_room_by_id::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            api.join_via(
                &user.user_id,
                request.room_id.as_str(),
                Vec::new(),
                request.reason.as_deref(),
            )
            .await
        }
    });
    let a = Arc::clone(api);
    router.route_json::<join_room_by_id_or_alias::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let target = request.room_id_or_alias.as_str();
            let mut servers: Vec<ruma::OwnedServerName> = request.via.clone();
            let room_id = if target.starts_with('#') {
                match api.store.alias(target).await? {
                    Some(record) => record.room_id,
                    None if !api.is_local_name(target) => {
                        let (room_id, found) = api.resolve_remote_alias(target).await?;
                        servers.extend(found);
                        room_id
                    }
                    None => return Err(MatrixError::not_found("Room alias not found")),
                }
            } else {
                target.to_owned()
            };
            api.join_via(&user.user_id, &room_id, servers, request.reason.as_deref())
                .await
        }
    });
    let a = Arc::clone(api);
    router.route_json::<invite_user::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let invite_user::v3::InvitationRecipient::UserId(recipient) = request.recipient else {
                return Err(MatrixError::new(
                    http::StatusCode::BAD_REQUEST,
                    "M_UNKNOWN",
                    "Third-party invites are not supported",
                ));
            };
            let invitee = recipient.user_id.as_str();
            if !api.is_local_name(invitee) {
                api.require_room(request.room_id.as_str()).await?;
                api.invite_remote(
                    &user.user_id,
                    &recipient.user_id,
                    request.room_id.as_str(),
                    recipient.reason.as_deref(),
                )
                .await?;
                return Ok(json!({}));
            }
            api.require_known_local_user(invitee).await?;
            api.set_membership(
                request.room_id.as_str(),
                &user.user_id,
                invitee,
                "invite",
                recipient.reason.as_deref(),
            )
            .await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<leave_room::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            api.require_room(room_id).await?;
            if let Some(servers) = api.remote_leave_servers(room_id, &user.user_id).await? {
                if let Err(error) = api.leave_remote(&user.user_id, room_id, &servers).await {
                    // No server in the room took it: the invite is dropped
                    // here all the same, so it can always be dismissed.
                    tracing::info!(%room_id, error = %error.error, "declining an invite here only");
                    api.leave_here_only(&user.user_id, room_id).await?;
                }
                return Ok(json!({}));
            }
            api.set_membership(
                request.room_id.as_str(),
                &user.user_id,
                &user.user_id,
                "leave",
                request.reason.as_deref(),
            )
            .await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<kick_user::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let target = request.user_id.as_str();
            let current = api
                .current_membership(request.room_id.as_str(), target)
                .await?;
            if !matches!(current.as_deref(), Some("join" | "invite" | "knock")) {
                return Err(MatrixError::forbidden("The user is not in the room"));
            }
            api.set_membership(
                request.room_id.as_str(),
                &user.user_id,
                target,
                "leave",
                request.reason.as_deref(),
            )
            .await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<ban_user::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            api.set_membership(
                request.room_id.as_str(),
                &user.user_id,
                request.user_id.as_str(),
                "ban",
                request.reason.as_deref(),
            )
            .await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<unban_user::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let target = request.user_id.as_str();
            let current = api
                .current_membership(request.room_id.as_str(), target)
                .await?;
            if current.as_deref() != Some("ban") {
                return Err(MatrixError::forbidden("The user is not banned"));
            }
            api.set_membership(
                request.room_id.as_str(),
                &user.user_id,
                target,
                "leave",
                request.reason.as_deref(),
            )
            .await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<forget_room::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            match api
                .current_membership(room_id, &user.user_id)
                .await?
                .as_deref()
            {
                Some("join" | "invite" | "knock") => {
                    return Err(MatrixError::new(
                        http::StatusCode::BAD_REQUEST,
                        "M_UNKNOWN",
                        "Leave the room before forgetting it",
                    ));
                }
                None => return Err(MatrixError::not_found("You have never been in this room")),
                Some(_) => {}
            }
            api.store.forget_room(&user.user_id, room_id).await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_member_events::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            let access = api.read_access(room_id, &user.user_id).await?;
            let wanted = request.membership.as_ref().map(|m| m.as_str().to_owned());
            let unwanted = request
                .not_membership
                .as_ref()
                .map(|m| m.as_str().to_owned());
            // `at` (a sync or pagination token) asks for the members at that
            // point; a former member sees them as of the end of their membership.
            let at = match request.at.as_deref() {
                Some(token) => Some(
                    token
                        .parse::<myelin_types::TimelinePoint>()
                        .map_err(|_| MatrixError::invalid_param("Invalid `at` token"))?,
                ),
                None => None,
            };
            let at = match (at, access.limit_point()) {
                (Some(at), Some(limit)) => Some(at.min(limit)),
                (at, limit) => at.or(limit),
            };
            let member_events: Vec<_> = match at {
                None => api.store.current_state(room_id).await?,
                Some(at) => myelin_store::state_at_point(api.store.as_ref(), room_id, at).await?,
            }
            .into_iter()
            .filter(|event| event.event_type == "m.room.member")
            .collect();
            let chunk: Vec<Value> = member_events
                .iter()
                .filter(|event| {
                    let membership = membership_of(&event.pdu_json);
                    wanted
                        .as_ref()
                        .is_none_or(|w| membership.as_ref() == Some(w))
                        && unwanted
                            .as_ref()
                            .is_none_or(|u| membership.as_ref() != Some(u))
                })
                .map(|event| myelin_room::stored_client_event(event, None))
                .collect();
            Ok(json!({"chunk": chunk}))
        }
    });
    let a = Arc::clone(api);
    router.route::<joined_members::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move { api.joined_members(context, request).await }
    });
}

impl ClientApi {
    /// `GET /rooms/{roomId}/joined_members`: for members only, as the spec
    /// says; a former member learns nothing of who is in the room now.
    async fn joined_members(
        &self,
        context: RequestContext,
        request: joined_members::v3::Request,
    ) -> Result<joined_members::v3::Response, MatrixError> {
        let user = context.user()?;
        let room_id = request.room_id.as_str();
        if self
            .current_membership(room_id, &user.user_id)
            .await?
            .as_deref()
            != Some("join")
        {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        }
        let mut joined = BTreeMap::new();
        for event in self.store.current_state(room_id).await? {
            let pdu: Value = serde_json::from_str(&event.pdu_json).unwrap_or_default();
            let content = &pdu["content"];
            let joined_member =
                event.event_type == "m.room.member" && content["membership"] == "join";
            let user_id = event.state_key.as_deref().map(OwnedUserId::try_from);
            let (true, Some(Ok(user_id))) = (joined_member, user_id) else {
                continue;
            };
            let mut member = joined_members::v3::RoomMember::new();
            member.display_name = content["displayname"].as_str().map(str::to_owned);
            member.avatar_url = content["avatar_url"].as_str().map(Into::into);
            joined.insert(user_id, member);
        }
        Ok(joined_members::v3::Response::new(joined))
    }

    async fn join(
        &self,
        user_id: &str,
        room_id: &str,
        reason: Option<&str>,
    ) -> Result<Value, MatrixError> {
        self.limits.joins.check(user_id)?;
        self.require_room(room_id).await?;
        self.set_membership(room_id, user_id, user_id, "join", reason)
            .await?;
        Ok(json!({"room_id": room_id}))
    }

    /// Joins a room this server has, or else through other servers: those
    /// given, then the server in the room ID (versions before 12).
    async fn join_via(
        &self,
        user_id: &str,
        room_id: &str,
        mut servers: Vec<ruma::OwnedServerName>,
        reason: Option<&str>,
    ) -> Result<Value, MatrixError> {
        if let Ok(room) = ruma::OwnedRoomId::try_from(room_id)
            && let Some(server) = room.server_name()
        {
            servers.push(server.to_owned());
        }
        if self.store.room(room_id).await?.is_some() {
            let members = self.store.room_memberships(room_id).await?;
            // Not in the room (invited, or once in it): join through the
            // inviter's server, or those of the members last known here.
            servers.extend(self.inviter_server(&members, user_id).await?);
            servers.extend(self.member_servers(&members));
            servers.retain(|server| server.as_str() != self.server_name);
            if self.has_local_member(&members) || servers.is_empty() {
                return self.join(user_id, room_id, reason).await;
            }
        }
        self.limits.joins.check(user_id)?;
        self.join_remote(user_id, room_id, &servers).await?;
        Ok(json!({"room_id": room_id}))
    }

    /// The other server whose user invited `user_id`, if it is invited.
    async fn inviter_server(
        &self,
        members: &[myelin_store::Membership],
        user_id: &str,
    ) -> Result<Option<ruma::OwnedServerName>, MatrixError> {
        let invite = members
            .iter()
            .find(|member| member.user_id == user_id && member.membership == "invite");
        let Some(invite) = invite else {
            return Ok(None);
        };
        Ok(self
            .store
            .event(&invite.event_id)
            .await?
            .and_then(|event| ruma::OwnedUserId::try_from(event.sender).ok())
            .map(|sender| sender.server_name().to_owned())
            .filter(|server| server.as_str() != self.server_name))
    }

    /// Where to leave a room this server is not in, when the user is
    /// invited to it or knocked on it: the inviter's server, then the room
    /// ID's. `None` when this server is in the room (the leave is written here).
    async fn remote_leave_servers(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<Vec<ruma::OwnedServerName>>, MatrixError> {
        let members = self.store.room_memberships(room_id).await?;
        let resident = self.has_local_member(&members);
        let pending = members.iter().any(|member| {
            member.user_id == user_id && matches!(member.membership.as_str(), "invite" | "knock")
        });
        if resident || !pending {
            return Ok(None);
        }
        let mut servers: Vec<_> = self
            .inviter_server(&members, user_id)
            .await?
            .into_iter()
            .collect();
        if let Ok(room) = ruma::OwnedRoomId::try_from(room_id)
            && let Some(server) = room.server_name()
        {
            servers.push(server.to_owned());
        }
        servers.extend(self.member_servers(&members));
        // The senders of the room's state the invite or knock came with
        // are in the room: a version 12 room ID names no server.
        servers.extend(self.stripped_state_servers(room_id, user_id).await?);
        Ok(Some(servers))
    }

    /// The servers of the senders of the stripped state kept with the
    /// user's invite or knock.
    async fn stripped_state_servers(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Vec<ruma::OwnedServerName>, MatrixError> {
        let Some(stripped) = self.store.invite_state(room_id, user_id).await? else {
            return Ok(Vec::new());
        };
        let events: Vec<serde_json::Value> = serde_json::from_str(&stripped).unwrap_or_default();
        Ok(events
            .iter()
            .filter_map(|event| event["sender"].as_str())
            .filter_map(|sender| ruma::OwnedUserId::try_from(sender).ok())
            .map(|sender| sender.server_name().to_owned())
            .collect())
    }

    /// The servers of the joined members among `members`, with repeats.
    pub(crate) fn member_servers<'a>(
        &self,
        members: &'a [myelin_store::Membership],
    ) -> impl Iterator<Item = ruma::OwnedServerName> + 'a {
        members
            .iter()
            .filter(|member| member.membership == "join")
            .filter_map(|member| ruma::OwnedUserId::try_from(member.user_id.as_str()).ok())
            .map(|member| member.server_name().to_owned())
    }

    /// Whether a user of this server is joined: the room's events reach
    /// this server, and its membership events are written here.
    pub(crate) fn has_local_member(&self, members: &[myelin_store::Membership]) -> bool {
        members
            .iter()
            .any(|member| member.membership == "join" && self.is_local_name(&member.user_id))
    }

    /// Whether an alias or ID names this server.
    pub(crate) fn is_local_name(&self, name: &str) -> bool {
        name.split_once(':')
            .is_some_and(|(_, server)| server == self.server_name)
    }

    /// Rooms this server does not have are out of reach until federation.
    pub(crate) async fn require_room(&self, room_id: &str) -> Result<(), MatrixError> {
        match self.store.room(room_id).await? {
            Some(_) => Ok(()),
            None => Err(MatrixError::not_found(
                "No known room with that ID on this server",
            )),
        }
    }

    /// The invite endpoint's rule, also applied to createRoom's `invite`.
    pub(crate) async fn require_known_local_user(&self, user_id: &str) -> Result<(), MatrixError> {
        refuse_nul("A user ID", user_id)?;
        let is_local = user_id
            .rsplit_once(':')
            .is_some_and(|(_, server)| server == self.server_name);
        if !is_local {
            return Err(MatrixError::forbidden(
                "That user is not a user of this server",
            ));
        }
        match self.store.user(user_id).await? {
            Some(user) if !user.deactivated => Ok(()),
            _ => Err(MatrixError::not_found("Unknown user")),
        }
    }
}
