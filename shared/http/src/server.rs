//! The edge work every listener does before the router — request IDs,
//! `X-Forwarded-For`, the body limit, CORS and preflights — as a warp filter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::Filter;
use warp::path::FullPath;

use crate::body::{ResponseBody, limited};
use crate::{MatrixError, RequestContext, Router};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Trust `X-Forwarded-For` (the listener sits behind a proxy).
    pub x_forwarded: bool,
    pub max_body_bytes: usize,
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
        match builder.body(limited(chunks, options.max_body_bytes as u64)) {
            Ok(request) => {
                let context = RequestContext {
                    remote_ip: client_ip(&headers, remote, options.x_forwarded),
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
    let response_headers = response.headers_mut();
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

/// The client's address: the first `X-Forwarded-For` entry behind a trusted
/// proxy, the socket peer otherwise.
fn client_ip(
    headers: &HeaderMap,
    remote: Option<SocketAddr>,
    trust_forwarded: bool,
) -> Option<IpAddr> {
    if trust_forwarded
        && let Some(forwarded) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(first) = forwarded.split(',').next()
        && let Ok(ip) = first.trim().parse()
    {
        return Some(ip);
    }
    remote.map(|addr| addr.ip())
}

fn new_request_id() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );
        let peer: Option<SocketAddr> = "127.0.0.1:5000".parse().ok();
        assert_eq!(client_ip(&headers, peer, true), "203.0.113.7".parse().ok());
        assert_eq!(client_ip(&headers, peer, false), "127.0.0.1".parse().ok());
    }
}
