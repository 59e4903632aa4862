//! `PUT|GET|DELETE /directory/room/{roomAlias}` and
//! `GET /rooms/{roomId}/aliases`: the aliases this server keeps.

use std::sync::Arc;

use http::StatusCode;
use myelin_http::{MatrixError, Router};
use myelin_store::StoreError;
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::room::aliases;
use serde_json::json;

use crate::ClientApi;
use crate::access::ReadAccess;
use crate::identifier_limits::check_alias;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<create_alias::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            check_alias(&request.room_alias)?;
            let alias = request.room_alias.as_str();
            if request.room_alias.server_name().as_str() != api.server_name {
                return Err(MatrixError::invalid_param(
                    "Room alias must be of this server",
                ));
            }
            let room_id = request.room_id.as_str();
            api.require_room(room_id).await?;
            if !user.is_admin
                && api.read_access(room_id, &user.user_id).await? != ReadAccess::Joined
            {
                return Err(MatrixError::forbidden(
                    "You must be in the room to create an alias for it",
                ));
            }
            api.store
                .create_alias(alias, room_id, &user.user_id)
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => alias_exists(alias),
                    other => other.into(),
                })?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_alias::v3::Request, _, _>(move |_, request| {
        let api = Arc::clone(&a);
        async move {
            let alias = request.room_alias.as_str();
            let record = api
                .store
                .alias(alias)
                .await?
                .ok_or_else(|| alias_not_found(alias))?;
            Ok(json!({"room_id": record.room_id, "servers": [api.server_name]}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<delete_alias::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let alias = request.room_alias.as_str();
            let record = api
                .store
                .alias(alias)
                .await?
                .ok_or_else(|| alias_not_found(alias))?;
            if record.creator != user.user_id && !user.is_admin {
                return Err(MatrixError::forbidden(
                    "Only the alias's creator or a server admin may delete it",
                ));
            }
            api.store
                .delete_alias(alias)
                .await
                .map_err(|error| match error {
                    StoreError::NotFound => alias_not_found(alias),
                    other => other.into(),
                })?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<aliases::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            if !user.is_admin && !api.world_readable_now(room_id).await? {
                let access = api.read_access(room_id, &user.user_id).await?;
                if access != ReadAccess::Joined {
                    return Err(MatrixError::forbidden("You are not a member of the room"));
                }
            }
            let aliases = api.store.room_aliases(room_id).await?;
            Ok(json!({"aliases": aliases}))
        }
    });
}

fn alias_not_found(alias: &str) -> MatrixError {
    MatrixError::not_found(format!("Room alias {alias} not found"))
}

fn alias_exists(alias: &str) -> MatrixError {
    MatrixError::new(
        StatusCode::CONFLICT,
        "M_UNKNOWN",
        format!("Room alias {alias} already exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_follow_the_spec() {
        let exists = alias_exists("#a:hs");
        assert_eq!(
            (exists.status, exists.errcode.as_ref()),
            (StatusCode::CONFLICT, "M_UNKNOWN")
        );
        let missing = alias_not_found("#a:hs");
        assert_eq!(
            (missing.status, missing.errcode.as_ref()),
            (StatusCode::NOT_FOUND, "M_NOT_FOUND")
        );
    }
}
