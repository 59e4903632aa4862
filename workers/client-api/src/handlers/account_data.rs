//! Account data, global and per room, and room tags (`m.tag` in the room's
//! account data). Every change takes a position in the account-data stream
//! and rings its bell so the user's syncs wake.

use std::sync::Arc;

use myelin_bus::topics::{self, AccountDataChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::TokenOwner;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use ruma::events::tag::Tags;
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use crate::ClientApi;

/// Types the server keeps itself; clients change them through their own
/// endpoints (push rules, read markers).
const SERVER_CONTROLLED_GLOBAL: &[&str] = &["m.push_rules"];
const SERVER_CONTROLLED_ROOM: &[&str] = &["m.fully_read"];
const TAG: &str = "m.tag";

/// The caller, refused when the path names another user.
fn caller_as<'a>(
    context: &'a RequestContext,
    user_id: &UserId,
) -> Result<&'a TokenOwner, MatrixError> {
    let user = context.user()?;
    if user.user_id != user_id.as_str() {
        return Err(MatrixError::forbidden(
            "Cannot read or change another user's account data",
        ));
    }
    Ok(user)
}

fn server_controlled(event_type: &str) -> MatrixError {
    MatrixError::new(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "M_BAD_JSON",
        format!("{event_type} is controlled by the server; it cannot be set as account data"),
    )
}

impl ClientApi {
    /// Stores one entry and rings the account-data bell.
    pub(crate) async fn put_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
        content: &Value,
    ) -> Result<(), MatrixError> {
        let position = self
            .store
            .set_account_data(user_id, room_id, data_type, &content.to_string())
            .await?;
        let change = AccountDataChanged {
            user_id: user_id.to_owned(),
            position,
        };
        if let Err(error) = topics::ACCOUNT_DATA
            .announce(self.bus.as_ref(), &change)
            .await
        {
            // Stored already; syncs see it at their next backstop read.
            tracing::warn!(%error, "cannot announce an account-data change");
        }
        Ok(())
    }

    async fn stored_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
    ) -> Result<Option<Value>, MatrixError> {
        match self.store.account_data(user_id, room_id, data_type).await? {
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|error| MatrixError::internal(error.to_string())),
            None => Ok(None),
        }
    }

    /// Room account data needs a room the caller is or was in.
    async fn require_known_room(&self, room_id: &RoomId, user_id: &str) -> Result<(), MatrixError> {
        if self
            .current_membership(room_id.as_str(), user_id)
            .await?
            .is_none()
        {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        Ok(())
    }
}

fn raw_content<T>(content: &Value) -> Result<Raw<T>, MatrixError> {
    serde_json::value::to_raw_value(content)
        .map(Raw::from_json)
        .map_err(|error| MatrixError::internal(error.to_string()))
}

fn content_value<T>(data: &Raw<T>) -> Result<Value, MatrixError> {
    let content: Value = data
        .deserialize_as_unchecked()
        .map_err(|error| MatrixError::bad_json(error.to_string()))?;
    if !content.is_object() {
        return Err(MatrixError::bad_json("Account data must be a JSON object"));
    }
    Ok(content)
}

pub(crate) async fn set_global(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_global_account_data::v3::Request,
) -> Result<set_global_account_data::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let data_type = request.event_type.to_string();
    if SERVER_CONTROLLED_GLOBAL.contains(&data_type.as_str()) {
        return Err(server_controlled(&data_type));
    }
    let content = content_value(&request.data)?;
    api.put_account_data(&user.user_id, None, &data_type, &content)
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}

pub(crate) async fn get_global(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_global_account_data::v3::Request,
) -> Result<get_global_account_data::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let data_type = request.event_type.to_string();
    let content = api
        .stored_account_data(&user.user_id, None, &data_type)
        .await?
        .ok_or_else(|| MatrixError::not_found("Account data not found"))?;
    Ok(get_global_account_data::v3::Response::new(raw_content(
        &content,
    )?))
}

pub(crate) async fn set_room(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_room_account_data::v3::Request,
) -> Result<set_room_account_data::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let data_type = request.event_type.to_string();
    if SERVER_CONTROLLED_ROOM.contains(&data_type.as_str()) {
        return Err(server_controlled(&data_type));
    }
    let content = content_value(&request.data)?;
    api.require_known_room(&request.room_id, &user.user_id)
        .await?;
    api.put_account_data(
        &user.user_id,
        Some(request.room_id.as_str()),
        &data_type,
        &content,
    )
    .await?;
    Ok(set_room_account_data::v3::Response::new())
}

pub(crate) async fn get_room(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_room_account_data::v3::Request,
) -> Result<get_room_account_data::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let data_type = request.event_type.to_string();
    let content = api
        .stored_account_data(&user.user_id, Some(request.room_id.as_str()), &data_type)
        .await?
        .ok_or_else(|| MatrixError::not_found("Account data not found"))?;
    Ok(get_room_account_data::v3::Response::new(raw_content(
        &content,
    )?))
}

/// The room's `m.tag` content, `{"tags": {}}` when none is set.
async fn tags_of(api: &ClientApi, user_id: &str, room_id: &RoomId) -> Result<Value, MatrixError> {
    let mut content = api
        .stored_account_data(user_id, Some(room_id.as_str()), TAG)
        .await?
        .unwrap_or_else(|| json!({"tags": {}}));
    if !content["tags"].is_object() {
        content["tags"] = json!({});
    }
    Ok(content)
}

pub(crate) async fn get_room_tags(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_tags::v3::Request,
) -> Result<get_tags::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let content = tags_of(&api, &user.user_id, &request.room_id).await?;
    let tags: Tags = serde_json::from_value(content["tags"].clone())
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    Ok(get_tags::v3::Response::new(tags))
}

pub(crate) async fn put_room_tag(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: create_tag::v3::Request,
) -> Result<create_tag::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    if request.tag.len() > 255 {
        return Err(MatrixError::invalid_param("Tags are at most 255 bytes"));
    }
    api.require_known_room(&request.room_id, &user.user_id)
        .await?;
    let mut content = tags_of(&api, &user.user_id, &request.room_id).await?;
    content["tags"][&request.tag] = serde_json::to_value(&request.tag_info)
        .map_err(|error| MatrixError::bad_json(error.to_string()))?;
    api.put_account_data(&user.user_id, Some(request.room_id.as_str()), TAG, &content)
        .await?;
    Ok(create_tag::v3::Response::new())
}

pub(crate) async fn delete_room_tag(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_tag::v3::Request,
) -> Result<delete_tag::v3::Response, MatrixError> {
    let user = caller_as(&context, &request.user_id)?;
    let mut content = tags_of(&api, &user.user_id, &request.room_id).await?;
    let removed = content["tags"]
        .as_object_mut()
        .and_then(|tags| tags.remove(&request.tag));
    if removed.is_some() {
        api.put_account_data(&user.user_id, Some(request.room_id.as_str()), TAG, &content)
            .await?;
    }
    Ok(delete_tag::v3::Response::new())
}
