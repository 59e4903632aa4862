//! The edge work every listener does before the router — request IDs,
//! `X-Forwarded-For`, the body's pace, CORS and preflights — as a warp
//! filter. The router applies each route's body limit.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::Filter;
use warp::path::FullPath;

use crate::body::ResponseBody;
use crate::body_pace::{BodyPace, paced};
use crate::connections::ConnectionGate;
use crate::forwarded::ProxyTrust;
use crate::{MatrixError, RequestContext, Router};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Whose `X-Forwarded-For` is believed (and who is exempt from the
    /// per-address connection cap).
    pub proxy_trust: ProxyTrust,
    pub body_pace: BodyPace,
    /// Shared by every listener of the process.
    pub connections: Arc<ConnectionGate>,
}

const CORS_HEADERS: &[(&str, &str)] = &[
    ("access-control-allow-origin", "*"),
    (
        "access-control-allow-methods",
        "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    ),
    (
        "access-control-allow-headers",
        "X-Requested-With, Content-Type, Authorization, Date",
    ),
    (
        "access-control-expose-headers",
        "Synapse-Trace-Id, Server, X-Request-Id",
    ),
];

/// The socket peer of a connection, put into each request's extensions by
/// the accept loop (see `listener.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// The warp filter behind every listener: the edge work, then the router.
pub(crate) fn edge_filter(
    router: Arc<Router>,
    options: ServeOptions,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let options = Arc::new(options);
    warp::method()
        .and(warp::path::full())
        .and(optional_query())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::body::stream())
        .then(
            move |method,
                  path: FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<PeerAddr>,
                  body| {
                let router = Arc::clone(&router);
                let options = Arc::clone(&options);
                async move {
                    let remote = peer.map(|PeerAddr(address)| address);
                    handle(
                        &router, &options, method, path, query, headers, remote, body,
                    )
                    .await
                }
            },
        )
}

fn optional_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

#[allow(clippy::too_many_arguments)]
async fn handle<S, B>(
    router: &Router,
    options: &ServeOptions,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| id.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let mut response = if method == Method::OPTIONS {
        let mut preflight = http::Response::new(ResponseBody::Full(Bytes::new()));
        *preflight.status_mut() = StatusCode::NO_CONTENT;
        preflight
    } else {
        let uri = if query.is_empty() {
            path.as_str().to_owned()
        } else {
            format!("{}?{query}", path.as_str())
        };
        let chunks = body.map(|chunk| match chunk {
            Ok(mut chunk) => Ok(chunk.copy_to_bytes(chunk.remaining())),
            Err(error) => Err(MatrixError::bad_json(format!("cannot read body: {error}"))),
        });
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(request_headers) = builder.headers_mut() {
            *request_headers = headers.clone();
        }
        match builder.body(paced(chunks, options.body_pace)) {
            Ok(request) => {
                let trust = &options.proxy_trust;
                let context = RequestContext {
                    remote_ip: trust.client_ip(&headers, remote),
                    via_trusted_proxy: remote.is_some_and(|peer| trust.trusts(peer.ip())),
                    request_id: request_id.clone(),
                    ..RequestContext::default()
                };
                router.serve(context, request).await
            }
            Err(error) => MatrixError::bad_json(format!("malformed request: {error}"))
                .into_response()
                .map(ResponseBody::Full),
        }
    };
    let body_left_unread = matches!(
        response.status(),
        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
    );
    let response_headers = response.headers_mut();
    if body_left_unread {
        // What is left of the body would be read as the next request, or
        // waited for: the connection ends with this answer.
        response_headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (name, value) in CORS_HEADERS {
        response_headers.insert(*name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response_headers.insert("x-request-id", value);
    }
    let (parts, body) = response.into_parts();
    let body = match body {
        ResponseBody::Full(bytes) => warp::reply::Response::new(bytes.into()).into_body(),
        // warp wants a stream it can share between threads; the wrapper
        // makes one of any stream that can move between them.
        ResponseBody::Stream(chunks) => {
            use warp::Reply;
            warp::reply::stream(sync_wrapper::SyncStream::new(chunks))
                .into_response()
                .into_body()
        }
    };
    http::Response::from_parts(parts, body)
}

fn new_request_id() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}
