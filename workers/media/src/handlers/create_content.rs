//! `POST /_matrix/media/v3/upload`: stores the body and answers with a new
//! `mxc://` URI; the `filename` query parameter and the `Content-Type`
//! header are kept for downloads.

use std::sync::Arc;

use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router, json_response};
use myelin_store::MediaContent;
use serde_json::json;

use crate::files::UploadError;
use crate::handlers::{Auth, serve};
use crate::query::query_params;
use crate::{Media, content};

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    serve(
        router,
        media,
        Method::POST,
        "/_matrix/media/v3/upload",
        Auth::Required,
        upload,
    );
}

async fn upload(
    media: Arc<Media>,
    context: RequestContext,
    request: http::Request<BodyStream>,
    _: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let user = context.user()?.user_id.clone();
    let upload_name = query_params(request.uri()).remove("filename");
    let content_type = uploaded_content_type(&request);
    let stored = media.store_upload(request.into_body()).await?;
    let content = MediaContent {
        content_type,
        upload_name,
        size: stored.size,
        sha256: stored.sha256,
    };
    let media_id = media.record_upload(&user, &content).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"content_uri": media.content_uri(&media_id)}),
    )
    .map(ResponseBody::Full))
}

/// The `Content-Type` the client declared, if it is readable text.
pub(super) fn uploaded_content_type<B>(request: &http::Request<B>) -> Option<String> {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

impl Media {
    /// Writes the body to the media store as it arrives, within the size
    /// limit.
    pub(super) async fn store_upload(
        &self,
        body: BodyStream,
    ) -> Result<crate::files::StoredBlob, MatrixError> {
        match self.files.store_stream(body, self.max_upload_bytes).await {
            Ok(stored) => Ok(stored),
            Err(UploadError::TooLarge) => Err(MatrixError::too_large(format!(
                "Uploads are limited to {} bytes",
                self.max_upload_bytes
            ))),
            Err(UploadError::Body(error)) => Err(error),
            Err(UploadError::Io(error)) => Err(content::files_unavailable(error)),
        }
    }
}
