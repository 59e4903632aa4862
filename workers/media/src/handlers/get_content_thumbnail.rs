//! `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` and the
//! deprecated, unauthenticated `/_matrix/media/v3/thumbnail/...`: a smaller
//! copy of an image, made on the first request for a size and method and
//! served from the media store after that.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router};
use myelin_store::{MediaContent, ThumbnailRecord};

use crate::content::Fetch;
use crate::handlers::{Auth, arg, serve};
use crate::headers::{content_disposition, media_response};
use crate::query::query_params;
use crate::thumbnailer::{self, Thumbnail, ThumbnailError};
use crate::{Media, content};

pub(super) fn routes(media: &Arc<Media>, router: &mut Router) {
    for (template, auth) in [
        (
            "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}",
            Auth::Required,
        ),
        (
            "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}",
            Auth::None,
        ),
    ] {
        serve(router, media, Method::GET, template, auth, thumbnail);
    }
}

/// What a thumbnail request asks for.
#[derive(Debug, PartialEq)]
struct ThumbnailRequest {
    width: u32,
    height: u32,
    method: thumbnailer::Method,
}

fn parse_request(params: &BTreeMap<String, String>) -> Result<ThumbnailRequest, MatrixError> {
    let dimension = |name: &str| {
        let text = params
            .get(name)
            .ok_or_else(|| MatrixError::missing_param(format!("Missing {name}")))?;
        text.parse::<u32>()
            .ok()
            .filter(|value| *value > 0)
            .ok_or_else(|| MatrixError::invalid_param(format!("{name} must be a positive integer")))
    };
    let method = match params.get("method") {
        None => thumbnailer::Method::Scale,
        Some(text) => thumbnailer::Method::parse(text)
            .ok_or_else(|| MatrixError::invalid_param("method must be crop or scale"))?,
    };
    Ok(ThumbnailRequest::snapped(
        dimension("width")?,
        dimension("height")?,
        method,
    ))
}

impl ThumbnailRequest {
    /// The size made and kept for a request of `width` by `height`.
    fn snapped(width: u32, height: u32, method: thumbnailer::Method) -> ThumbnailRequest {
        let (width, height) = snap_box(width, height, method);
        ThumbnailRequest {
            width,
            height,
            method,
        }
    }
}

/// A scale box grows side by side (the result only has to cover it); a
/// crop box grows as a whole, by the factor that snaps its longer side, so
/// the crop keeps the shape the client asked for.
fn snap_box(width: u32, height: u32, method: thumbnailer::Method) -> (u32, u32) {
    match method {
        thumbnailer::Method::Scale => (snap_side(width), snap_side(height)),
        thumbnailer::Method::Crop => {
            let longer = width.max(height);
            let snapped = snap_side(longer);
            let grow = |side: u32| {
                let grown = (u64::from(side) * u64::from(snapped)).div_ceil(u64::from(longer));
                u32::try_from(grown).unwrap_or(snapped).clamp(1, snapped)
            };
            (grow(width), grow(height))
        }
    }
}

/// The sides a thumbnail box is rounded up to (the spec asks for at least
/// the requested size; clients' usual 32, 96, 320x240, 640x480 and 800x600
/// are all here), so one image collects far fewer cached sizes than one per
/// pixel count. Larger asks get the largest, bounding the work per request.
const THUMBNAIL_SIDES: &[u32] = &[
    32, 48, 64, 96, 128, 192, 256, 320, 480, 600, 640, 800, 1200, 1600,
];

fn snap_side(requested: u32) -> u32 {
    let largest = THUMBNAIL_SIDES[THUMBNAIL_SIDES.len() - 1];
    THUMBNAIL_SIDES
        .iter()
        .copied()
        .find(|side| *side >= requested)
        .unwrap_or(largest)
}

fn cannot_thumbnail() -> MatrixError {
    MatrixError::new(
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
        "Cannot generate thumbnails for the requested content",
    )
}

/// Thumbnails are always shown inline, under a name that says what they are.
fn thumbnail_response(
    bytes: Bytes,
    content_type: &str,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let extension = match crate::headers::essence(content_type).as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "png",
    };
    let name = format!("thumbnail.{extension}");
    media_response(
        ResponseBody::Full(bytes),
        content_type,
        &content_disposition(content_type, Some(&name)),
    )
}

async fn thumbnail(
    media: Arc<Media>,
    _: RequestContext,
    request: http::Request<BodyStream>,
    args: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let (server_name, media_id) = (arg(&args, 0)?, arg(&args, 1)?);
    let params = query_params(request.uri());
    let wanted = parse_request(&params)?;
    let fetch = Fetch::of(&request, &params)?;
    let wanted = (wanted.width, wanted.height, wanted.method);
    let (bytes, content_type) = if server_name == media.server_name {
        media.local_thumbnail(media_id, wanted, fetch).await?
    } else {
        media
            .remote_thumbnail(server_name, media_id, wanted, fetch)
            .await?
    };
    thumbnail_response(bytes, &content_type)
}

impl Media {
    /// A thumbnail of this server's media: kept from an earlier request
    /// for the same (snapped) size and method, else made now and kept.
    pub(crate) async fn local_thumbnail(
        &self,
        media_id: &str,
        (width, height, method): (u32, u32, thumbnailer::Method),
        fetch: Fetch,
    ) -> Result<(Bytes, String), MatrixError> {
        let wanted = ThumbnailRequest::snapped(width, height, method);
        let own = self.server_name.clone();
        let (_, original) = self.local_content(&own, media_id, fetch).await?;
        let content_type = original.content_type.clone().unwrap_or_default();
        if !thumbnailer::can_thumbnail(&content_type) {
            return Err(cannot_thumbnail());
        }
        if let Some(cached) = self
            .media_store
            .thumbnail(
                media_id,
                wanted.width,
                wanted.height,
                wanted.method.as_str(),
            )
            .await?
            && let Some(bytes) = self
                .files
                .read(&cached.sha256)
                .await
                .map_err(content::files_unavailable)?
        {
            return Ok((bytes, cached.content_type));
        }
        match self.make_thumbnail(&original, &wanted).await? {
            Thumbnail::Original => Ok((self.blob(&original.sha256).await?, content_type)),
            Thumbnail::Made {
                bytes,
                content_type,
            } => {
                let stored = self
                    .files
                    .store(Bytes::from(bytes.clone()))
                    .await
                    .map_err(content::files_unavailable)?;
                self.media_store
                    .put_thumbnail(&ThumbnailRecord {
                        media_id: media_id.to_owned(),
                        width: wanted.width,
                        height: wanted.height,
                        method: wanted.method.as_str().to_owned(),
                        content_type: content_type.to_owned(),
                        size: stored.size,
                        sha256: stored.sha256,
                    })
                    .await?;
                Ok((Bytes::from(bytes), content_type.to_owned()))
            }
        }
    }
}

impl Media {
    /// Scales on a blocking thread: decoding and resizing take real CPU.
    async fn make_thumbnail(
        &self,
        original: &MediaContent,
        wanted: &ThumbnailRequest,
    ) -> Result<Thumbnail, MatrixError> {
        // At most one decode per core at a time: each may take the
        // decoder's whole memory allowance.
        let _turn = self
            .thumbnailing
            .acquire()
            .await
            .map_err(|_| MatrixError::unavailable("The media service is stopping"))?;
        let bytes = self.blob(&original.sha256).await?;
        let (requested, method) = ((wanted.width, wanted.height), wanted.method);
        let made =
            tokio::task::spawn_blocking(move || thumbnailer::make(&bytes, requested, method))
                .await
                .map_err(|_| MatrixError::internal("Thumbnailing failed"))?;
        made.map_err(|error| match error {
            ThumbnailError::TooLarge => {
                MatrixError::too_large("The image is too large to thumbnail")
            }
            ThumbnailError::Unreadable(why) => {
                tracing::debug!(%why, "cannot read an image to thumbnail");
                cannot_thumbnail()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn sizes_and_method_are_checked() {
        assert_eq!(
            parse_request(&params(&[("width", "32"), ("height", "24")])),
            Ok(ThumbnailRequest {
                width: 32,
                height: 32,
                method: thumbnailer::Method::Scale
            })
        );
        assert_eq!(
            parse_request(&params(&[
                ("width", "5000"),
                ("height", "100"),
                ("method", "crop")
            ])),
            Ok(ThumbnailRequest {
                width: 1600,
                height: 32,
                method: thumbnailer::Method::Crop
            })
        );
        let crop = |w, h| snap_box(w, h, thumbnailer::Method::Crop);
        let scale = |w, h| snap_box(w, h, thumbnailer::Method::Scale);
        // Crops keep their shape; scale boxes snap side by side.
        assert_eq!(crop(300, 200), (320, 214));
        assert_eq!(crop(33, 32), (48, 47));
        assert_eq!(crop(64, 64), (64, 64));
        assert_eq!(scale(300, 200), (320, 256));
        assert_eq!(scale(100, 100), (128, 128));
        let errcode = |pairs: &[(&str, &str)]| {
            parse_request(&params(pairs))
                .err()
                .map(|error| error.errcode.into_owned())
        };
        assert_eq!(
            errcode(&[("height", "24")]).as_deref(),
            Some("M_MISSING_PARAM")
        );
        assert_eq!(
            errcode(&[("width", "-1"), ("height", "24")]).as_deref(),
            Some("M_INVALID_PARAM")
        );
        assert_eq!(
            errcode(&[("width", "0"), ("height", "24")]).as_deref(),
            Some("M_INVALID_PARAM")
        );
        assert_eq!(
            errcode(&[("width", "1.5"), ("height", "24")]).as_deref(),
            Some("M_INVALID_PARAM")
        );
        assert_eq!(
            errcode(&[("width", "32"), ("height", "24"), ("method", "stretch")]).as_deref(),
            Some("M_INVALID_PARAM")
        );
    }
}
