//! `GET /_matrix/client/v1/media/preview_url` (and the deprecated
//! `/_matrix/media/v3/preview_url`): the OpenGraph preview of a URL. Served
//! only with `url_preview_enabled`; without it the paths are unknown here.

use std::sync::Arc;

use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router, json_response};
use serde_json::Value;

use crate::Media;
use crate::handlers::{Auth, serve};
use crate::query::query_params;

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    if media.previews.is_none() {
        return;
    }
    for template in [
        "/_matrix/client/v1/media/preview_url",
        "/_matrix/media/v3/preview_url",
    ] {
        serve(
            router,
            media,
            Method::GET,
            template,
            Auth::Required,
            preview,
        );
    }
}

async fn preview(
    media: Arc<Media>,
    context: RequestContext,
    request: http::Request<BodyStream>,
    _: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let user = context.user()?.user_id.clone();
    let Some(previews) = media.previews.as_ref() else {
        return Err(MatrixError::unrecognized("Unrecognized request"));
    };
    let url = query_params(request.uri())
        .remove("url")
        .filter(|url| !url.is_empty())
        .ok_or_else(|| {
            MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_MISSING_PARAM",
                "Missing the url parameter",
            )
        })?;
    let found = media.preview(previews, &url, &user).await?;
    Ok(json_response(StatusCode::OK, &Value::Object(found)).map(ResponseBody::Full))
}
