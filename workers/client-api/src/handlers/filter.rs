//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use ruma::api::client::filter::{create_filter, get_filter};

use crate::ClientApi;

pub(crate) async fn create(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: create_filter::v3::Request,
) -> Result<create_filter::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.user_id.as_str() != user.user_id {
        return Err(MatrixError::forbidden(
            "Cannot create filters for other users",
        ));
    }
    let filter_json = serde_json::to_string(&request.filter)
        .map_err(|error| MatrixError::bad_json(error.to_string()))?;
    let filter_id = api.store.create_filter(&user.user_id, &filter_json).await?;
    Ok(create_filter::v3::Response::new(filter_id))
}

pub(crate) async fn get(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_filter::v3::Request,
) -> Result<get_filter::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.user_id.as_str() != user.user_id {
        return Err(MatrixError::forbidden("Cannot read other users' filters"));
    }
    let stored = api
        .store
        .filter(&user.user_id, &request.filter_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("No such filter"))?;
    let filter =
        serde_json::from_str(&stored).map_err(|error| MatrixError::internal(error.to_string()))?;
    Ok(get_filter::v3::Response::new(filter))
}
