//! `GET /_matrix/client/v1/media/config` (and the deprecated
//! `/_matrix/media/v3/config`): the upload size limit.

use std::sync::Arc;

use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router, json_response};
use serde_json::json;

use crate::Media;
use crate::handlers::{Auth, serve};

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    for template in [
        "/_matrix/client/v1/media/config",
        "/_matrix/media/v3/config",
    ] {
        serve(router, media, Method::GET, template, Auth::Required, config);
    }
}

async fn config(
    media: Arc<Media>,
    _: RequestContext,
    _: http::Request<BodyStream>,
    _: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    Ok(json_response(
        StatusCode::OK,
        &json!({"m.upload.size": media.max_upload_bytes}),
    )
    .map(ResponseBody::Full))
}
