//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.

use std::sync::Arc;

use myelin_http::{MatrixError, Router};
use ruma::api::client::filter::{create_filter, get_filter};
use serde_json::{Value, json};

use crate::ClientApi;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<create_filter::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            if request.user_id.as_str() != user.user_id {
                return Err(MatrixError::forbidden(
                    "Cannot create filters for other users",
                ));
            }
            let filter_json = serde_json::to_string(&request.filter)
                .map_err(|error| MatrixError::bad_json(error.to_string()))?;
            let filter_id = api.store.create_filter(&user.user_id, &filter_json).await?;
            Ok(json!({"filter_id": filter_id}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_filter::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            if request.user_id.as_str() != user.user_id {
                return Err(MatrixError::forbidden("Cannot read other users' filters"));
            }
            let stored = api
                .store
                .filter(&user.user_id, &request.filter_id)
                .await?
                .ok_or_else(|| MatrixError::not_found("No such filter"))?;
            serde_json::from_str::<Value>(&stored)
                .map_err(|error| MatrixError::internal(error.to_string()))
        }
    });
}
