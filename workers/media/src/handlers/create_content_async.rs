//! `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the upload into an
//! ID reserved with `/create`; only its owner may fill it, and only once.

use std::sync::Arc;

use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router, json_response};
use myelin_store::{FillOutcome, MediaContent};
use serde_json::json;

use crate::handlers::create_content::uploaded_content_type;
use crate::handlers::{Auth, arg, serve};
use crate::query::query_params;
use crate::{Media, content, media_ids};

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    serve(
        router,
        media,
        Method::PUT,
        "/_matrix/media/v3/upload/{serverName}/{mediaId}",
        Auth::Required,
        upload_async,
    );
}

fn cannot_overwrite() -> MatrixError {
    MatrixError::new(
        StatusCode::CONFLICT,
        "M_CANNOT_OVERWRITE_MEDIA",
        "Media already uploaded",
    )
}

fn not_owner() -> MatrixError {
    MatrixError::forbidden("This media ID was reserved by another user")
}

fn unknown_id() -> MatrixError {
    MatrixError::not_found("Unknown or expired media ID")
}

async fn upload_async(
    media: Arc<Media>,
    context: RequestContext,
    request: http::Request<BodyStream>,
    args: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let user = context.user()?.user_id.clone();
    let (server_name, media_id) = (arg(&args, 0)?, arg(&args, 1)?);
    if server_name != media.server_name || !media_ids::is_valid(media_id) {
        return Err(unknown_id());
    }
    // Refuse early, before writing any file, whatever can be refused now;
    // the fill below decides for good.
    let record = media
        .media_store
        .media(media_id)
        .await?
        .ok_or_else(unknown_id)?;
    if record.uploader != user {
        return Err(not_owner());
    }
    if record.content.is_some() {
        return Err(cannot_overwrite());
    }
    let upload_name = query_params(request.uri()).remove("filename");
    let content_type = uploaded_content_type(&request);
    let stored = media.store_upload(request.into_body()).await?;
    let uploaded = MediaContent {
        content_type,
        upload_name,
        size: stored.size,
        sha256: stored.sha256,
    };
    let outcome = media
        .media_store
        .fill_pending_media(media_id, &user, content::now_ms(), &uploaded)
        .await?;
    match outcome {
        FillOutcome::Filled => {
            Ok(json_response(StatusCode::OK, &json!({})).map(ResponseBody::Full))
        }
        FillOutcome::AlreadyUploaded => Err(cannot_overwrite()),
        FillOutcome::NotOwner => Err(not_owner()),
        FillOutcome::NotFound => Err(unknown_id()),
    }
}
