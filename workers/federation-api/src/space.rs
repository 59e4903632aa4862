//! `GET /hierarchy/{roomId}`: a space of a room this server is in, for
//! another server walking it for its users: the room's summary and child
//! events, the summaries of the children this server has and the asking
//! server may see, and the children it may not (by the room's join rules
//! and membership, or its server ACL).

use std::collections::BTreeSet;
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::directory::room_summary;
use myelin_room::space::{children_state, open_to, space_children};
use myelin_store::Store;
use ruma::api::federation::space::{SpaceHierarchyParentSummary, get_hierarchy};
use ruma::room::RoomSummary;
use ruma::{OwnedRoomId, ServerName};

use crate::FederationApi;

pub(crate) async fn hierarchy(
    api: Arc<FederationApi>,
    ctx: RequestContext,
    request: get_hierarchy::v1::Request,
) -> Result<get_hierarchy::v1::Response, MatrixError> {
    let origin = ctx.origin()?;
    let store = api.store.as_ref();
    let room_id = request.room_id.as_str();
    myelin_federation::server_acl::require_acl(store, room_id, origin.as_str()).await?;
    let not_found = || MatrixError::not_found("This server does not know a room it may show");
    let summary = api.held_summary(room_id).await?.ok_or_else(not_found)?;
    if !visible_to(store, &summary, origin).await? {
        return Err(not_found());
    }
    let children = space_children(store.current_state(room_id).await?, request.suggested_only);
    let mut shown = Vec::new();
    let mut inaccessible = Vec::new();
    for (child, _) in &children {
        let Some(child_summary) = api.held_summary(child).await? else {
            continue;
        };
        // A child whose server ACL shuts the asking server out is listed
        // as inaccessible, as one it may not see.
        let allowed =
            match myelin_federation::server_acl::require_acl(store, child, origin.as_str()).await {
                Ok(()) => true,
                Err(refused) if refused.status == 403 => false,
                Err(error) => return Err(error),
            };
        if allowed && visible_to(store, &child_summary, origin).await? {
            shown.push(child_summary);
        } else if let Ok(child) = OwnedRoomId::try_from(child.as_str()) {
            inaccessible.push(child);
        }
    }
    let children_state = children_state(children);
    let mut response =
        get_hierarchy::v1::Response::new(SpaceHierarchyParentSummary::new(summary, children_state));
    response.children = shown;
    response.inaccessible_children = inaccessible;
    Ok(response)
}

impl FederationApi {
    /// The summary of a room a user of this server is joined to: of another
    /// room, what this server holds may be out of date.
    async fn held_summary(&self, room_id: &str) -> Result<Option<RoomSummary>, MatrixError> {
        let own_suffix = format!(":{}", self.config.server_name);
        let resident = self
            .store
            .room_memberships(room_id)
            .await?
            .iter()
            .any(|member| member.membership == "join" && member.user_id.ends_with(&own_suffix));
        if !resident {
            return Ok(None);
        }
        Ok(room_summary(self.store.as_ref(), room_id).await?)
    }
}

/// Whether another server may see a room in a hierarchy: a user of it is
/// in the room or invited, or the room is open to its users (for a
/// restricted room: one of them is joined to an allowed room).
async fn visible_to(
    store: &dyn Store,
    summary: &RoomSummary,
    server: &ServerName,
) -> Result<bool, MatrixError> {
    let suffix = format!(":{server}");
    let has_member = |memberships: &[myelin_store::Membership], wanted: &[&str]| {
        memberships.iter().any(|member| {
            member.user_id.ends_with(&suffix) && wanted.contains(&member.membership.as_str())
        })
    };
    let members = store.room_memberships(summary.room_id.as_str()).await?;
    if has_member(&members, &["join", "invite"]) {
        return Ok(true);
    }
    let mut joined = BTreeSet::new();
    if let ruma::room::JoinRuleSummary::Restricted(allowed) = &summary.join_rule {
        for allowed_room in &allowed.allowed_room_ids {
            let members = store.room_memberships(allowed_room.as_str()).await?;
            if has_member(&members, &["join"]) {
                joined.insert(allowed_room.to_string());
            }
        }
    }
    Ok(open_to(summary, |room_id| joined.contains(room_id)))
}
