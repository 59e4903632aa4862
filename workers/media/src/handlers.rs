//! Handlers, one module per ruma endpoint. Every media endpoint is a
//! streamed route: bodies and answers are bytes, not JSON, and may be large.

mod create_content;
mod create_content_async;
mod create_mxc_uri;
mod get_content;
mod get_content_thumbnail;
mod get_media_config;
mod get_media_preview;

use std::future::Future;
use std::sync::Arc;

use http::Method;
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router};

use crate::Media;

pub(crate) fn routes(media: &Arc<Media>, router: &mut Router) {
    create_content::routes(media, router);
    create_mxc_uri::routes(media, router);
    create_content_async::routes(media, router);
    get_content::routes(media, router);
    get_content_thumbnail::routes(media, router);
    get_media_config::routes(media, router);
    get_media_preview::routes(media, router);
}

/// Whether a route takes an access token. Handlers find it in the
/// request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    Required,
    /// The deprecated `/_matrix/media/v3` downloads: anyone with the URI.
    None,
}

/// Serves `template` with `handler`, which gets the role, the request (its
/// body as it arrives: uploads are never held whole) and the decoded path
/// arguments, and may answer with a stream (downloads).
pub(crate) fn serve<F, Fut>(
    router: &mut Router,
    media: &Arc<Media>,
    method: Method,
    template: &'static str,
    auth: Auth,
    handler: F,
) where
    F: Fn(Arc<Media>, RequestContext, http::Request<BodyStream>, Vec<String>) -> Fut
        + Copy
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<http::Response<ResponseBody>, MatrixError>> + Send + 'static,
{
    let media = Arc::clone(media);
    router.streamed(
        method,
        template,
        matches!(auth, Auth::Required),
        move |context, mut request: http::Request<BodyStream>, args| {
            request.extensions_mut().insert(auth);
            handler(Arc::clone(&media), context, request, args)
        },
    );
}

/// The path argument at `index` (the router matched the template, so it is there).
pub(crate) fn arg(args: &[String], index: usize) -> Result<&str, MatrixError> {
    args.get(index)
        .map(String::as_str)
        .ok_or_else(|| MatrixError::unrecognized("Unrecognized request"))
}
