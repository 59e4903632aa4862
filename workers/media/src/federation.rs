//! Media across servers. Served: this server's media to other servers
//! (`/_matrix/federation/v1/media/download` and `/thumbnail`, signed with
//! `X-Matrix`, answered as `multipart/mixed`). Fetched: another server's
//! media for a local client, once, then kept beside local media; a remote
//! thumbnail of each size likewise.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use myelin_federation::FederationError;
use myelin_http::{MatrixError, RequestContext, ResponseBody};
use myelin_store::MediaContent;
use ruma::api::federation::authenticated_media::{
    Content, ContentMetadata, FileOrLocation, get_content, get_content_thumbnail,
};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};
use ruma::{OwnedServerName, UInt};

use tokio_util::io::ReaderStream;

use crate::content::{self, Fetch, MAX_UPLOAD_WAIT, READ_CHUNK};
use crate::headers::{FALLBACK_CONTENT_TYPE, servable_content_type};
use crate::thumbnailer;
use crate::{Media, media_ids};

/// The most a remote thumbnail may weigh.
const MAX_REMOTE_THUMBNAIL_BYTES: usize = 10 * 1024 * 1024;
/// Room for the multipart framing around a file of the largest size.
const MULTIPART_SLACK_BYTES: u64 = 64 * 1024;

fn remote_server(origin: &str, media_id: &str) -> Result<OwnedServerName, MatrixError> {
    if !media_ids::is_valid(media_id) {
        return Err(MatrixError::not_found("Media not found"));
    }
    OwnedServerName::try_from(origin)
        .map_err(|_| MatrixError::invalid_param("The media's server name is not valid"))
}

/// The disposition other servers get: the uploader's name, if any.
fn disposition(content: &MediaContent) -> ContentDisposition {
    ContentDisposition::new(ContentDispositionType::Attachment)
        .with_filename(content.upload_name.clone())
}

impl Media {
    /// Another server's media: kept here from an earlier fetch, else
    /// fetched over federation now and kept. Requests without a token (the
    /// old unauthenticated routes) get what is kept but fetch nothing new.
    pub(crate) async fn remote_content(
        &self,
        origin: &str,
        media_id: &str,
        fetch: Fetch,
    ) -> Result<MediaContent, MatrixError> {
        let server = remote_server(origin, media_id)?;
        if let Some(kept) = self.media_store.remote_media(origin, media_id).await? {
            return Ok(kept);
        }
        if fetch.without_token && self.authenticated_media {
            return Err(MatrixError::not_found("Media not found"));
        }
        let _turn = self
            .remote_fetches
            .acquire()
            .await
            .map_err(|_| MatrixError::unavailable("The media service is stopping"))?;
        // Another request may have fetched it while this one waited.
        if let Some(kept) = self.media_store.remote_media(origin, media_id).await? {
            return Ok(kept);
        }
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = fetch.wait;
        let limit =
            usize::try_from(self.max_upload_bytes + MULTIPART_SLACK_BYTES).unwrap_or(usize::MAX);
        let legacy = format!("/_matrix/media/v3/download/{origin}/{media_id}?allow_remote=false");
        let answer = self.federation.send_limited(&server, request, limit).await;
        let file = self
            .file_of(answer.map(|answer| answer.content), &server, &legacy, limit)
            .await?;
        let stored = self
            .files
            .store(file.bytes)
            .await
            .map_err(content::files_unavailable)?;
        let kept = MediaContent {
            content_type: file.content_type,
            upload_name: file.upload_name,
            size: stored.size,
            sha256: stored.sha256,
        };
        self.media_store
            .put_remote_media(origin, media_id, &kept, content::now_ms())
            .await?;
        // Of two fetches at once the first row wins: serve what is kept.
        Ok(self
            .media_store
            .remote_media(origin, media_id)
            .await?
            .unwrap_or(kept))
    }

    /// A thumbnail of another server's media (of a snapped size): kept here
    /// from an earlier fetch, else asked of that server now and kept.
    pub(crate) async fn remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        wanted: (u32, u32, thumbnailer::Method),
        fetch: Fetch,
    ) -> Result<(Bytes, String), MatrixError> {
        let server = remote_server(origin, media_id)?;
        let (width, height, method) = wanted;
        // Kept beside the remote media, under an ID no media can have.
        let kept_id = format!("{media_id}/{width}x{height}/{}", method.as_str());
        if let Some(kept) = self.kept_thumbnail(origin, &kept_id).await? {
            return Ok(kept);
        }
        if fetch.without_token && self.authenticated_media {
            return Err(MatrixError::not_found("Media not found"));
        }
        let _turn = self
            .remote_fetches
            .acquire()
            .await
            .map_err(|_| MatrixError::unavailable("The media service is stopping"))?;
        if let Some(kept) = self.kept_thumbnail(origin, &kept_id).await? {
            return Ok(kept);
        }
        let mut request = get_content_thumbnail::v1::Request::new(
            media_id.to_owned(),
            UInt::from(width),
            UInt::from(height),
        );
        request.method = Some(match method {
            thumbnailer::Method::Scale => ruma::media::Method::Scale,
            thumbnailer::Method::Crop => ruma::media::Method::Crop,
        });
        request.timeout_ms = fetch.wait;
        let limit = MAX_REMOTE_THUMBNAIL_BYTES;
        let legacy = format!(
            "/_matrix/media/v3/thumbnail/{origin}/{media_id}?width={width}&height={height}\
             &method={}&allow_remote=false",
            method.as_str()
        );
        let answer = self.federation.send_limited(&server, request, limit).await;
        let file = self
            .file_of(answer.map(|answer| answer.content), &server, &legacy, limit)
            .await?;
        let content_type = file
            .content_type
            .unwrap_or_else(|| FALLBACK_CONTENT_TYPE.to_owned());
        let bytes = file.bytes;
        let stored = self
            .files
            .store(bytes.clone())
            .await
            .map_err(content::files_unavailable)?;
        let kept = MediaContent {
            content_type: Some(content_type.clone()),
            upload_name: None,
            size: stored.size,
            sha256: stored.sha256,
        };
        self.media_store
            .put_remote_media(origin, &kept_id, &kept, content::now_ms())
            .await?;
        Ok((bytes, content_type))
    }

    /// The file a federation media answer holds, or the one at the
    /// location it names (fetched now); from a server that predates
    /// federation media, the file at `legacy_path` (the client API's
    /// unauthenticated route, as servers served it before).
    async fn file_of(
        &self,
        answer: Result<FileOrLocation, FederationError>,
        server: &ruma::ServerName,
        legacy_path: &str,
        limit: usize,
    ) -> Result<RemoteFile, MatrixError> {
        match answer {
            Ok(FileOrLocation::File(file)) => Ok(RemoteFile {
                bytes: Bytes::from(file.file),
                content_type: file.content_type,
                upload_name: file
                    .content_disposition
                    .and_then(|disposition| disposition.filename),
            }),
            Ok(FileOrLocation::Location(url)) => self
                .federation
                .get_location(&url, limit)
                .await
                .map(RemoteFile::from_answer),
            Ok(_) => Err(FederationError::BadResponse(
                "media in a form this server does not know".to_owned(),
            )),
            Err(error) if predates_federation_media(&error) => self
                .federation
                .get_unsigned(server, legacy_path, limit)
                .await
                .map(RemoteFile::from_answer),
            Err(error) => Err(error),
        }
        .map_err(FederationError::into_matrix_error)
    }

    /// A remote thumbnail kept here, with its content type.
    async fn kept_thumbnail(
        &self,
        origin: &str,
        kept_id: &str,
    ) -> Result<Option<(Bytes, String)>, MatrixError> {
        let Some(kept) = self.media_store.remote_media(origin, kept_id).await? else {
            return Ok(None);
        };
        let bytes = self
            .files
            .read(&kept.sha256)
            .await
            .map_err(content::files_unavailable)?;
        Ok(bytes.map(|bytes| {
            let content_type = kept
                .content_type
                .unwrap_or_else(|| FALLBACK_CONTENT_TYPE.to_owned());
            (bytes, content_type)
        }))
    }
}

/// Another server's file, as fetched.
struct RemoteFile {
    bytes: Bytes,
    content_type: Option<String>,
    upload_name: Option<String>,
}

impl RemoteFile {
    /// The file of a plain HTTP answer: its body, with the type and name
    /// its headers give.
    fn from_answer(answer: http::Response<Bytes>) -> RemoteFile {
        let header = |name| {
            answer
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let upload_name = header(http::header::CONTENT_DISPOSITION)
            .and_then(|value| value.parse::<ContentDisposition>().ok())
            .and_then(|disposition| disposition.filename);
        RemoteFile {
            bytes: answer.into_body(),
            content_type,
            upload_name,
        }
    }
}

/// Whether the answer says the server has no federation media endpoints
/// (it predates them): it does not know the route, or the method.
fn predates_federation_media(error: &FederationError) -> bool {
    matches!(
        error,
        FederationError::Remote { status, errcode, .. }
            if errcode == "M_UNRECOGNIZED" || *status == 405
    )
}

fn federation_fetch(timeout: std::time::Duration) -> Fetch {
    Fetch {
        wait: timeout.min(MAX_UPLOAD_WAIT),
        without_token: false,
    }
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`: the file read
/// from disk as the other server takes it, never held whole, inside the
/// `multipart/mixed` framing the spec gives (the metadata, `{}`, then the
/// file with its type and disposition).
pub(crate) async fn download(
    media: Arc<Media>,
    _: RequestContext,
    request: get_content::v1::Request,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    let fetch = federation_fetch(request.timeout_ms);
    let own = media.server_name.clone();
    let (_, content) = media.local_content(&own, &request.media_id, fetch).await?;
    let (file, length) = media.open_blob(&content.sha256).await?;
    let content_type = servable_content_type(content.content_type.as_deref());
    let framing = MultipartFraming::new(content_type, &disposition(&content).to_string());
    let body_length = framing.length(length);
    let part = |bytes: &Bytes| futures::stream::once(futures::future::ready(Ok(bytes.clone())));
    let chunks = part(&framing.head)
        .chain(ReaderStream::with_capacity(file, READ_CHUNK))
        .chain(part(&framing.tail))
        .boxed();
    let mut response = http::Response::new(ResponseBody::Stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_str(&framing.content_type())
            .map_err(|_| MatrixError::internal("cannot frame the media"))?,
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body_length),
    );
    Ok(response)
}

/// The bytes around a file in a `multipart/mixed` answer.
struct MultipartFraming {
    boundary: String,
    /// The metadata part and the file part's headers.
    head: Bytes,
    /// The closing boundary.
    tail: Bytes,
}

impl MultipartFraming {
    fn new(content_type: &str, disposition: &str) -> MultipartFraming {
        // Random, so no file can hold it by chance.
        let boundary = format!("{:032x}", rand::random::<u128>());
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n\
             --{boundary}\r\nContent-Type: {content_type}\r\n\
             Content-Disposition: {disposition}\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        MultipartFraming {
            boundary,
            head: Bytes::from(head),
            tail: Bytes::from(tail),
        }
    }

    fn content_type(&self) -> String {
        format!("multipart/mixed; boundary={}", self.boundary)
    }

    /// The whole body's length around a file of `file_length` bytes.
    fn length(&self, file_length: u64) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + file_length
    }
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`.
pub(crate) async fn thumbnail(
    media: Arc<Media>,
    _: RequestContext,
    request: get_content_thumbnail::v1::Request,
) -> Result<get_content_thumbnail::v1::Response, MatrixError> {
    let fetch = federation_fetch(request.timeout_ms);
    let side = |value: UInt| {
        u32::try_from(u64::from(value))
            .ok()
            .filter(|side| *side > 0)
            .ok_or_else(|| MatrixError::invalid_param("width and height must be positive"))
    };
    let method = match request.method {
        None | Some(ruma::media::Method::Scale) => thumbnailer::Method::Scale,
        Some(ruma::media::Method::Crop) => thumbnailer::Method::Crop,
        Some(_) => return Err(MatrixError::invalid_param("method must be crop or scale")),
    };
    let wanted = (side(request.width)?, side(request.height)?, method);
    let (bytes, content_type) = media
        .local_thumbnail(&request.media_id, wanted, fetch)
        .await?;
    let name = ContentDisposition::new(ContentDispositionType::Inline)
        .with_filename(Some("thumbnail".to_owned()));
    let file = Content::new(bytes.to_vec(), content_type, name);
    Ok(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        FileOrLocation::File(file),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unknown_route_or_method_means_a_server_predates_federation_media() {
        let remote = |status, errcode: &str| FederationError::Remote {
            status,
            errcode: errcode.to_owned(),
            error: String::new(),
        };
        assert!(predates_federation_media(&remote(404, "M_UNRECOGNIZED")));
        assert!(predates_federation_media(&remote(405, "M_UNKNOWN")));
        assert!(!predates_federation_media(&remote(404, "M_NOT_FOUND")));
        assert!(!predates_federation_media(&remote(403, "M_FORBIDDEN")));
        assert!(!predates_federation_media(&FederationError::Unreachable(
            "down".to_owned()
        )));
    }

    /// The framing, read back by ruma's own parser of these answers (what
    /// a Myelin fetching our media uses): the file comes out byte for byte
    /// with its type and name, whatever bytes it holds.
    #[test]
    fn framed_files_parse_back_whole() {
        use ruma::api::IncomingResponseExt;
        let file: Vec<u8> = b"--\r\n--not-a-boundary\r\n\r\n\x00\xff end".to_vec();
        let content = MediaContent {
            content_type: Some("image/png".to_owned()),
            upload_name: Some("caf\u{e9} photo.png".to_owned()),
            size: file.len() as u64,
            sha256: String::new(),
        };
        let framing = MultipartFraming::new("image/png", &disposition(&content).to_string());
        let mut body = framing.head.to_vec();
        body.extend_from_slice(&file);
        body.extend_from_slice(&framing.tail);
        assert_eq!(body.len() as u64, framing.length(file.len() as u64));
        let answer = http::Response::builder()
            .header(http::header::CONTENT_TYPE, framing.content_type())
            .body(&body[..])
            .expect("response");
        let parsed = get_content::v1::Response::try_from_http_response(answer).expect("parsed");
        let FileOrLocation::File(parsed) = parsed.content else {
            panic!("a file was framed");
        };
        assert_eq!(parsed.file, file);
        assert_eq!(parsed.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            parsed
                .content_disposition
                .and_then(|disposition| disposition.filename)
                .as_deref(),
            Some("caf\u{e9} photo.png")
        );
    }
}
