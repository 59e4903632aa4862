//! The media role inside `myelin run`: uploads and downloads byte for byte
//! with the headers that keep media sandboxed, IDs reserved with `/create`
//! and filled once by their owner, thumbnails of a real PNG checked by
//! decoding them and served from the media store the second time, the size
//! limit, downloads that wait for a reserved upload, new media kept off the
//! legacy routes, and the answers for media that is not there.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::client::{Client, Reply, encode};
use crate::harness::{Server, TempDir};

const PASSWORD: &str = "media-password-1";
/// Small enough to exceed cheaply; the server's body limit follows it.
const MAX_UPLOAD: usize = 64 * 1024;

struct MediaServer {
    server: Server,
    media_dir: TempDir,
}

impl MediaServer {
    async fn start() -> MediaServer {
        MediaServer::start_with(&[]).await
    }

    /// With extra `MYELIN_*` settings.
    async fn start_with(settings: &[(&str, &str)]) -> MediaServer {
        let media_dir = TempDir::new("media-store");
        let mut builder = Server::builder();
        for (key, value) in settings {
            builder = builder.env(key, *value);
        }
        let server = builder
            .open_registration()
            .env("MYELIN_MAX_UPLOAD_SIZE", format!("{}K", MAX_UPLOAD / 1024))
            .env(
                "MYELIN_MEDIA_STORE_PATH",
                media_dir.path().to_str().expect("temp paths are UTF-8"),
            )
            .start()
            .await;
        MediaServer { server, media_dir }
    }

    /// Every blob file in the media store.
    fn blobs(&self) -> BTreeSet<PathBuf> {
        fn walk(dir: &Path, found: &mut BTreeSet<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.insert(path);
                }
            }
        }
        let mut found = BTreeSet::new();
        walk(&self.media_dir.path().join("content"), &mut found);
        found
    }
}

/// One answer with its body as bytes.
pub(crate) struct Bytes {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Bytes {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{} answered {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    #[track_caller]
    fn assert_error(&self, status: u16, errcode: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, body["errcode"].as_str()),
            (status, Some(errcode)),
            "{body}"
        );
    }
}

pub(crate) async fn send(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Bytes {
    let mut request = client.http().request(method, client.url(path)).body(body);
    if let Some(token) = &client.access_token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let response = request.send().await.expect("an answer");
    Bytes {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

async fn get(client: &Client, path: &str) -> Bytes {
    send(client, reqwest::Method::GET, path, None, Vec::new()).await
}

/// Uploads and returns the media ID of the `mxc://` URI.
async fn upload(client: &Client, query: &str, content_type: &str, body: &[u8]) -> String {
    let uri = upload_mxc(client, query, content_type, body).await;
    uri.strip_prefix("mxc://it.test/")
        .unwrap_or_else(|| panic!("{uri} is not an mxc URI of it.test"))
        .to_owned()
}

/// Uploads through `client`'s server and returns the `mxc://` URI.
pub(crate) async fn upload_mxc(
    client: &Client,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> String {
    let answer = send(
        client,
        reqwest::Method::POST,
        &format!("/_matrix/media/v3/upload{query}"),
        Some(content_type),
        body.to_vec(),
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["content_uri"]
        .as_str()
        .expect("a content_uri")
        .to_owned()
}

pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 200])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

pub(crate) fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("the thumbnail decodes");
    (image.width(), image.height())
}

#[tokio::test]
async fn media_uploads_download_byte_for_byte_with_sandbox_headers() {
    let media = MediaServer::start().await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    let anonymous = media.server.client();
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();

    let media_id = upload(&alice, "?filename=cat.png", "image/png", &body).await;
    let served = get(
        &alice,
        &format!("/_matrix/client/v1/media/download/it.test/{media_id}"),
    )
    .await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, body);
    assert_eq!(served.header("content-type"), "image/png");
    assert_eq!(
        served.header("content-disposition"),
        "inline; filename=\"cat.png\""
    );
    assert!(
        served
            .header("content-security-policy")
            .starts_with("sandbox; default-src 'none';"),
        "{}",
        served.header("content-security-policy")
    );
    assert_eq!(
        served.header("cross-origin-resource-policy"),
        "cross-origin"
    );

    // The authenticated endpoint takes a token, and a name in the path wins.
    let path = format!("/_matrix/client/v1/media/download/it.test/{media_id}/other%20name.png");
    Bytes::assert_error(&get(&anonymous, &path).await, 401, "M_MISSING_TOKEN");
    let named = get(&alice, &path).await;
    assert_eq!(named.body, body);
    assert_eq!(
        named.header("content-disposition"),
        "inline; filename=\"other name.png\""
    );

    // Unsafe types are attachments; names beyond ASCII use filename*.
    let page_id = upload(
        &alice,
        "?filename=r%C3%A9sum%C3%A9.html",
        "text/html",
        b"<script>alert(1)</script>",
    )
    .await;
    let page = get(
        &alice,
        &format!("/_matrix/client/v1/media/download/it.test/{page_id}"),
    )
    .await;
    assert_eq!(page.header("content-type"), "text/html");
    assert_eq!(
        page.header("content-disposition"),
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.html"
    );

    // The same bytes uploaded again are a new ID over the same file.
    let blobs = media.blobs().len();
    let again = upload(&alice, "", "application/octet-stream", &body).await;
    assert_ne!(again, media_id);
    assert_eq!(
        media.blobs().len(),
        blobs,
        "identical content is stored once"
    );

    let no_token = send(
        &anonymous,
        reqwest::Method::POST,
        "/_matrix/media/v3/upload",
        Some("text/plain"),
        b"x".to_vec(),
    )
    .await;
    no_token.assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn media_config_limit_and_missing_media() {
    let media = MediaServer::start().await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    for path in [
        "/_matrix/client/v1/media/config",
        "/_matrix/media/v3/config",
    ] {
        let config: Reply = alice.get(path).await;
        assert_eq!(config.ok(), json!({"m.upload.size": MAX_UPLOAD}));
    }

    let too_large = send(
        &alice,
        reqwest::Method::POST,
        "/_matrix/media/v3/upload",
        Some("application/octet-stream"),
        vec![7; MAX_UPLOAD + 1],
    )
    .await;
    too_large.assert_error(413, "M_TOO_LARGE");
    let at_limit = upload(&alice, "", "application/octet-stream", &vec![7; MAX_UPLOAD]).await;
    assert!(!at_limit.is_empty());

    // Sent in chunks without a length, the body is refused once it passes
    // the limit, and nothing of it stays on disk.
    let blobs = media.blobs();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..=MAX_UPLOAD / 4096).map(|_| Ok(vec![9; 4096])).collect();
    let streamed = alice
        .http()
        .post(alice.url("/_matrix/media/v3/upload"))
        .bearer_auth(alice.access_token.as_deref().expect("a token"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("an answer to a chunked upload");
    assert_eq!(streamed.status(), 413);
    assert_eq!(media.blobs(), blobs, "no blob from a refused upload");
    let leftovers =
        std::fs::read_dir(media.media_dir.path().join("tmp")).map_or(0, Iterator::count);
    assert_eq!(leftovers, 0, "no partial file from a refused upload");

    for path in [
        "/_matrix/client/v1/media/download/it.test/NoSuchMedia",
        "/_matrix/media/v3/download/it.test/NoSuchMedia",
        "/_matrix/media/v3/download/it.test/bad.id",
        // Remote media needs federation, which is not there yet.
        &format!("/_matrix/media/v3/download/elsewhere.test/{at_limit}"),
        "/_matrix/client/v1/media/thumbnail/it.test/NoSuchMedia?width=32&height=32",
    ] {
        get(&alice, path).await.assert_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn media_reserved_ids_are_filled_once_by_their_owner() {
    let media = MediaServer::start().await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    let bob = media.server.client().register("bob", PASSWORD).await;

    let created = alice
        .post("/_matrix/media/v1/create", &json!({}))
        .await
        .ok();
    let uri = created["content_uri"].as_str().expect("a content_uri");
    let media_id = uri.strip_prefix("mxc://it.test/").expect("ours").to_owned();
    let expires = created["unused_expires_at"].as_i64().expect("an expiry");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert!(expires > now_ms, "{expires} is not in the future");

    let download = format!("/_matrix/client/v1/media/download/it.test/{media_id}");
    get(&alice, &format!("{download}?timeout_ms=0"))
        .await
        .assert_error(504, "M_NOT_YET_UPLOADED");
    get(&alice, &format!("{download}?timeout_ms=soon"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // A download that waits for the upload (the default wait is 20 s) gets
    // the bytes as soon as they arrive.
    let waiting = tokio::spawn({
        let (bob, download) = (bob.clone(), download.clone());
        async move { get(&bob, &download).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the download did not wait");

    let put_path = format!("/_matrix/media/v3/upload/it.test/{media_id}?filename=late.txt");
    let put = |client: &Client, body: &'static [u8]| {
        let (client, put_path) = (client.clone(), put_path.clone());
        async move {
            send(
                &client,
                reqwest::Method::PUT,
                &put_path,
                Some("text/plain"),
                body.to_vec(),
            )
            .await
        }
    };
    put(&bob, b"not yours")
        .await
        .assert_error(403, "M_FORBIDDEN");
    let filled = put(&alice, b"arrived later").await;
    assert_eq!((filled.status, filled.json()), (200, json!({})));
    let waited = waiting.await.expect("the waiting download");
    assert_eq!(
        (waited.status, &waited.body[..]),
        (200, &b"arrived later"[..])
    );
    put(&alice, b"second try")
        .await
        .assert_error(409, "M_CANNOT_OVERWRITE_MEDIA");
    put(&bob, b"still not yours")
        .await
        .assert_error(403, "M_FORBIDDEN");

    let served = get(&bob, &download).await;
    assert_eq!(served.body, b"arrived later");
    assert_eq!(
        served.header("content-disposition"),
        "inline; filename=\"late.txt\""
    );
    send(
        &alice,
        reqwest::Method::PUT,
        "/_matrix/media/v3/upload/it.test/NeverReserved",
        Some("text/plain"),
        b"x".to_vec(),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
}

/// `enable_authenticated_media` (on by default) keeps new uploads off the
/// legacy, unauthenticated routes; what was uploaded while it was off stays
/// there.
#[tokio::test]
async fn media_uploaded_under_authenticated_media_is_off_the_legacy_routes() {
    let mut media =
        MediaServer::start_with(&[("MYELIN_ENABLE_AUTHENTICATED_MEDIA", "false")]).await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    let anonymous = media.server.client();
    let legacy = |media_id: &str| format!("/_matrix/media/v3/download/it.test/{media_id}");
    let legacy_thumbnail = |media_id: &str| {
        format!("/_matrix/media/v3/thumbnail/it.test/{media_id}?width=32&height=32")
    };
    let old_id = upload(&alice, "", "image/png", &png(64, 64)).await;
    assert_eq!(get(&anonymous, &legacy(&old_id)).await.status, 200);

    media
        .server
        .set_env("MYELIN_ENABLE_AUTHENTICATED_MEDIA", "true");
    media.server.restart().await;
    let new_id = upload(&alice, "", "image/png", &png(64, 64)).await;
    get(&anonymous, &legacy(&new_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    get(&anonymous, &legacy_thumbnail(&new_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let authenticated = get(
        &alice,
        &format!("/_matrix/client/v1/media/download/it.test/{new_id}"),
    )
    .await;
    assert_eq!(authenticated.status, 200);
    // A reservation is marked too: absent there, not "not yet uploaded".
    let created = alice
        .post("/_matrix/media/v1/create", &json!({}))
        .await
        .ok();
    let reserved = created["content_uri"]
        .as_str()
        .and_then(|uri| uri.strip_prefix("mxc://it.test/"))
        .expect("a content_uri of ours")
        .to_owned();
    get(&anonymous, &format!("{}?timeout_ms=0", legacy(&reserved)))
        .await
        .assert_error(404, "M_NOT_FOUND");

    let old = get(&anonymous, &legacy(&old_id)).await;
    assert_eq!((old.status, dimensions(&old.body)), (200, (64, 64)));
    assert_eq!(
        get(&anonymous, &legacy_thumbnail(&old_id)).await.status,
        200
    );
}

/// A web site for previews on a loopback port: `/page` (HTML whose
/// OpenGraph image is the relative `/cat.png`), `/cat.png`, and 404s.
async fn preview_site(picture: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PAGE: &str = r#"<html><head><title>ignored</title>
        <meta property="og:title" content="Cats of the week">
        <meta property="og:description" content="Seven cats, ranked.">
        <meta property="og:image" content="/cat.png"></head><body>cats</body></html>"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the site");
    let base = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("its address").port()
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let picture = picture.clone();
            tokio::spawn(async move {
                let mut head = vec![0; 4096];
                let read = stream.read(&mut head).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&head[..read]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, content_type, body) = match path {
                    "/page" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        PAGE.as_bytes().to_vec(),
                    ),
                    "/cat.png" => ("200 OK", "image/png", picture),
                    _ => ("404 Not Found", "text/plain", b"no".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    base
}

/// With `url_preview_enabled`, a page is described by its OpenGraph tags
/// and its image becomes media of this server; internal addresses stay out
/// of reach unless whitelisted, and without the setting there is no such
/// endpoint.
#[tokio::test]
async fn media_previews_describe_pages_and_keep_their_images() {
    let picture = png(64, 48);
    let site = preview_site(picture.clone()).await;
    let media = MediaServer::start_with(&[
        ("MYELIN_URL_PREVIEW_ENABLED", "true"),
        ("MYELIN_URL_PREVIEW_IP_RANGE_WHITELIST", "['127.0.0.1/32']"),
    ])
    .await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    let preview = |url: String| {
        let alice = alice.clone();
        async move {
            let path = format!("/_matrix/client/v1/media/preview_url?url={}", encode(&url));
            get(&alice, &path).await
        }
    };
    let page = preview(format!("{site}/page")).await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let found = page.json();
    assert_eq!(found["og:title"], "Cats of the week");
    assert_eq!(found["og:description"], "Seven cats, ranked.");
    assert_eq!(found["og:image:type"], "image/png");
    assert_eq!(
        (
            found["og:image:width"].as_u64(),
            found["og:image:height"].as_u64()
        ),
        (Some(64), Some(48))
    );
    assert_eq!(
        found["matrix:image:size"].as_u64(),
        Some(picture.len() as u64)
    );
    let image_id = found["og:image"]
        .as_str()
        .and_then(|uri| uri.strip_prefix("mxc://it.test/"))
        .unwrap_or_else(|| panic!("og:image is no mxc URI of ours: {found}"));
    let image = get(
        &alice,
        &format!("/_matrix/client/v1/media/download/it.test/{image_id}"),
    )
    .await;
    assert_eq!(image.body, picture, "the page's image, kept as media");

    let direct = preview(format!("{site}/cat.png")).await.json();
    assert_eq!(direct["og:image:type"], "image/png");
    preview(format!("{site}/missing"))
        .await
        .assert_error(502, "M_UNKNOWN");
    preview("ftp://example.org/x".to_owned())
        .await
        .assert_error(400, "M_INVALID_PARAM");
    get(&alice, "/_matrix/client/v1/media/preview_url")
        .await
        .assert_error(400, "M_MISSING_PARAM");

    // The default ranges keep loopback out; no setting, no endpoint.
    let guarded = MediaServer::start_with(&[("MYELIN_URL_PREVIEW_ENABLED", "true")]).await;
    let bob = guarded.server.client().register("bob", PASSWORD).await;
    let path = format!(
        "/_matrix/client/v1/media/preview_url?url={}",
        encode(&format!("{site}/page"))
    );
    get(&bob, &path).await.assert_error(403, "M_FORBIDDEN");
    let plain = MediaServer::start().await;
    let carol = plain.server.client().register("carol", PASSWORD).await;
    get(&carol, &path).await.assert_error(404, "M_UNRECOGNIZED");
}

/// At most five empty reservations per user, also when the requests race.
#[tokio::test]
async fn media_reservations_stop_at_five_even_when_racing() {
    let media = MediaServer::start().await;
    let carol = media.server.client().register("carol", PASSWORD).await;
    let empty = json!({});
    let replies =
        futures::future::join_all((0..8).map(|_| carol.post("/_matrix/media/v1/create", &empty)))
            .await;
    let granted = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(granted, 5, "parallel /create calls passed the limit");
    for refused in replies.iter().filter(|reply| reply.status != 200) {
        refused.assert_error(429, "M_LIMIT_EXCEEDED");
    }
}

#[tokio::test]
async fn media_thumbnails_scale_crop_and_come_from_the_store_the_second_time() {
    let media = MediaServer::start().await;
    let alice = media.server.client().register("alice", PASSWORD).await;
    let anonymous = media.server.client();
    let picture = png(400, 300);
    let media_id = upload(&alice, "?filename=pic.png", "image/png", &picture).await;
    let thumbnail =
        |query: &str| format!("/_matrix/client/v1/media/thumbnail/it.test/{media_id}?{query}");

    let scaled = get(&alice, &thumbnail("width=100&height=100&method=scale")).await;
    assert_eq!(
        scaled.status,
        200,
        "{}",
        String::from_utf8_lossy(&scaled.body)
    );
    assert_eq!(scaled.header("content-type"), "image/png");
    assert!(
        scaled.header("content-disposition").starts_with("inline"),
        "{}",
        scaled.header("content-disposition")
    );
    // Boxes are rounded up to a fixed set of sides (100 to 128), so an
    // image keeps a bounded number of cached sizes; `scale` covers the box
    // on both sides, so one side may pass it.
    assert_eq!(dimensions(&scaled.body), (171, 128));
    // As clients expect: 64x64 of a 4:3 picture is 85x64, not 64x48.
    let small = get(&alice, &thumbnail("width=64&height=64&method=scale")).await;
    assert_eq!(small.status, 200);
    assert_eq!(dimensions(&small.body), (85, 64));

    let before = media.blobs();
    let crop_query = "width=64&height=64&method=crop";
    let cropped = get(&alice, &thumbnail(crop_query)).await;
    assert_eq!(cropped.status, 200);
    assert_eq!(dimensions(&cropped.body), (64, 64));
    let made: Vec<PathBuf> = media.blobs().difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new file for the crop: {made:?}");

    // Served from the store: the file is what comes back, nothing is scaled again.
    let marker = png(3, 2);
    std::fs::write(&made[0], &marker).expect("replace the stored thumbnail");
    let again = get(&alice, &thumbnail(crop_query)).await;
    assert_eq!(
        again.body, marker,
        "the second request scaled the image again"
    );
    assert_eq!(media.blobs().len(), before.len() + 1);

    // Never enlarged: a box larger than the picture gets the original.
    let original = get(&alice, &thumbnail("width=800&height=600")).await;
    assert_eq!(original.body, picture);

    let authenticated = format!(
        "/_matrix/client/v1/media/thumbnail/it.test/{media_id}?width=32&height=32&method=crop"
    );
    get(&anonymous, &authenticated)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    assert_eq!(
        dimensions(&get(&alice, &authenticated).await.body),
        (32, 32)
    );

    get(&alice, &thumbnail("height=32"))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    get(&alice, &thumbnail("width=32&height=32&method=stretch"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    get(&alice, &thumbnail("width=abc&height=32"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let text_id = upload(&alice, "", "text/plain", b"no pixels here").await;
    get(
        &alice,
        &format!("/_matrix/client/v1/media/thumbnail/it.test/{text_id}?width=32&height=32"),
    )
    .await
    .assert_error(400, "M_UNKNOWN");
}
