//! `POST /_matrix/media/v1/create`: reserves a media ID for an upload that
//! follows later (`PUT /upload/{serverName}/{mediaId}`); unused IDs expire.

use std::sync::Arc;

use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router, json_response};
use myelin_store::NewMedia;
use serde_json::json;

use crate::handlers::{Auth, serve};
use crate::{Media, content, media_ids};

/// How long a reserved ID waits for its upload (Synapse's default).
const UNUSED_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;
/// Reservations one user may hold at once, so IDs cannot be hoarded.
const MAX_PENDING_PER_USER: u64 = 5;

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    serve(
        router,
        media,
        Method::POST,
        "/_matrix/media/v1/create",
        Auth::Required,
        create,
    );
}

async fn create(
    media: Arc<Media>,
    context: RequestContext,
    _: http::Request<BodyStream>,
    _: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let user = context.user()?.user_id.clone();
    let now = content::now_ms();
    let expires = now.saturating_add(UNUSED_LIFETIME_MS);
    let (media_id, reserved) = media_ids::insert_with_new_id(|media_id| {
        let (media, user) = (Arc::clone(&media), user.clone());
        async move {
            let new = NewMedia {
                created_ts: now,
                ..media.new_media(&media_id, &user)
            };
            media
                .media_store
                .create_pending_media(&new, expires, MAX_PENDING_PER_USER)
                .await
        }
    })
    .await?;
    if !reserved {
        let mut limited = MatrixError::limit_exceeded(60_000);
        limited.error = "Too many media IDs are waiting for an upload".to_owned();
        return Err(limited);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "content_uri": media.content_uri(&media_id),
            "unused_expires_at": expires,
        }),
    )
    .map(ResponseBody::Full))
}
