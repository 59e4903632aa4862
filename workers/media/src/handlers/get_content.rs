//! `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
//! and the deprecated, unauthenticated `/_matrix/media/v3/download/...`:
//! the bytes as uploaded, with their type and a disposition that only lets
//! safe types show inline.

use std::sync::Arc;

use futures::StreamExt;
use http::{HeaderValue, Method, header};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router};
use tokio_util::io::ReaderStream;

use crate::Media;
use crate::content::{Fetch, READ_CHUNK};
use crate::handlers::{Auth, arg, serve};
use crate::headers::{FALLBACK_CONTENT_TYPE, content_disposition, media_response};
use crate::query::query_params;

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    for (template, auth) in [
        (
            "/_matrix/client/v1/media/download/{serverName}/{mediaId}",
            Auth::Required,
        ),
        (
            "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}",
            Auth::Required,
        ),
        (
            "/_matrix/media/v3/download/{serverName}/{mediaId}",
            Auth::None,
        ),
        (
            "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}",
            Auth::None,
        ),
    ] {
        serve(router, media, Method::GET, template, auth, download);
    }
}

async fn download(
    media: Arc<Media>,
    _: RequestContext,
    request: http::Request<BodyStream>,
    args: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let (server_name, media_id) = (arg(&args, 0)?, arg(&args, 1)?);
    let fetch = Fetch::of(&request, &query_params(request.uri()))?;
    let content = if server_name == media.server_name {
        media.local_content(server_name, media_id, fetch).await?.1
    } else {
        media.remote_content(server_name, media_id, fetch).await?
    };
    let (file, length) = media.open_blob(&content.sha256).await?;
    let content_type = content
        .content_type
        .as_deref()
        .unwrap_or(FALLBACK_CONTENT_TYPE);
    // A name in the path is what the client wants the file called.
    let file_name = args
        .get(2)
        .map(String::as_str)
        .or(content.upload_name.as_deref());
    // Read from disk as the client takes it, never held whole.
    let chunks = ReaderStream::with_capacity(file, READ_CHUNK).boxed();
    let mut response = media_response(
        ResponseBody::Stream(chunks),
        content_type,
        &content_disposition(content_type, file_name),
    )?;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}
