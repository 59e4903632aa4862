//! Room state: `PUT|GET /rooms/{roomId}/state/{eventType}/{stateKey}` and
//! `GET /rooms/{roomId}/state`.

use std::sync::Arc;

use myelin_http::{MatrixError, Router};
use myelin_room::stored_client_event;
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::identifier_limits::check_event_key;
use crate::room_writer::template;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<send_state_event::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let content: Value = serde_json::from_str(request.body.json().get())
                .map_err(|error| MatrixError::bad_json(error.to_string()))?;
            if !content.is_object() {
                return Err(MatrixError::bad_json("State content must be an object"));
            }
            let event_type = request.event_type.to_string();
            check_event_key("The event type", &event_type)?;
            check_event_key("The state key", &request.state_key)?;
            let event = template(&event_type, Some(&request.state_key), content);
            let done = api
                .send_event(request.room_id.as_str(), &user.user_id, event, None)
                .await?;
            Ok(json!({"event_id": done.event_id}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_state_event_for_key::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            let access = api.read_access(room_id, &user.user_id).await?;
            let event_type = request.event_type.to_string();
            // A former member reads the state as it was when they left.
            let event = match access.limit() {
                None => {
                    api.store
                        .state_event(room_id, &event_type, &request.state_key)
                        .await?
                }
                Some(limit) => {
                    api.store
                        .state_event_at(room_id, &event_type, &request.state_key, limit)
                        .await?
                }
            }
            .ok_or_else(|| MatrixError::not_found("Event not found"))?;
            let client_event = stored_client_event(&event, None);
            if request.format
                == ruma::api::client::state::get_state_event_for_key::v3::StateEventFormat::Event
            {
                return Ok(client_event);
            }
            Ok(client_event
                .get("content")
                .cloned()
                .unwrap_or_else(|| json!({})))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_state_events::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let room_id = request.room_id.as_str();
            let access = api.read_access(room_id, &user.user_id).await?;
            let events: Vec<Value> = api
                .readable_state(room_id, access)
                .await?
                .iter()
                .map(|event| stored_client_event(event, None))
                .collect();
            Ok(Value::Array(events))
        }
    });
}
