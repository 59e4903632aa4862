//! Forwarding one request to one replica, and the headers that cross.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Uri};
use myelin_http::{RequestContext, ResponseBody};

use crate::upstreams::Replica;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_REQUEST_ID: &str = "x-request-id";

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// `headers` minus hop-by-hop ones, including those the `Connection`
/// header names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !named.iter().any(|n| n == name.as_str()) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// The headers a worker gets: the client's end-to-end headers, and
/// `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Request-Id` from the
/// gateway. `X-Forwarded-For` holds only the client address the gateway
/// settled on (see `ProxyTrust::client_ip`), so the workers, which trust
/// the gateway, see the same client; whatever chain the client or the
/// proxies sent stays behind. `X-Forwarded-Proto` passes on only from a
/// trusted proxy.
pub fn request_headers(incoming: &HeaderMap, context: &RequestContext) -> HeaderMap {
    let mut headers = end_to_end(incoming);
    // The HTTP client frames the body itself: a length for a whole one,
    // chunks for a streamed one.
    headers.remove(CONTENT_LENGTH);
    let proto = headers.remove(X_FORWARDED_PROTO);
    headers.remove(X_FORWARDED_FOR);
    if let Some(ip) = context.remote_ip
        && let Ok(value) = HeaderValue::from_str(&ip.to_string())
    {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = proto
        .filter(|_| context.via_trusted_proxy)
        .unwrap_or_else(|| HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_PROTO, proto);
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers
}

/// The headers the client gets back: the worker's end-to-end headers. The
/// body passes through unchanged, so its length (if the worker gave one)
/// still holds.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    end_to_end(upstream)
}

/// Why a request did not get a response from the replica.
#[derive(Debug)]
pub enum ProxyError {
    /// No connection could be made; the request never reached the replica,
    /// so another replica may take it.
    Connect(reqwest::Error),
    /// No response head within this long.
    Timeout(Duration),
    /// The connection broke or the response was malformed.
    Other(reqwest::Error),
}

impl ProxyError {
    fn from_reqwest(error: reqwest::Error) -> ProxyError {
        if error.is_connect() {
            ProxyError::Connect(error)
        } else {
            ProxyError::Other(error)
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Connect(error) => write!(formatter, "cannot connect: {error}"),
            ProxyError::Timeout(after) => write!(formatter, "no answer within {after:?}"),
            ProxyError::Other(error) => write!(formatter, "{error}"),
        }
    }
}

/// What goes to the replica besides the headers.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub body: reqwest::Body,
    /// Bounds the wait for the response head, and so the sending of the
    /// body before it; the response body then takes as long as the client
    /// reads it.
    pub timeout: Option<Duration>,
}

/// Sends the request to `replica`; the response body streams through as
/// the client reads it.
pub async fn forward(
    client: &reqwest::Client,
    replica: &Replica,
    outgoing: Outgoing<'_>,
    headers: HeaderMap,
) -> Result<http::Response<ResponseBody>, ProxyError> {
    let path_and_query = outgoing
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let sent = client
        .request(
            outgoing.method.clone(),
            format!("{}{path_and_query}", replica.base),
        )
        .headers(headers)
        .body(outgoing.body)
        .send();
    let upstream = match outgoing.timeout {
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| ProxyError::Timeout(limit))?,
        None => sent.await,
    }
    .map_err(ProxyError::from_reqwest)?;
    let mut response = http::Response::new(ResponseBody::Full(Bytes::new()));
    *response.status_mut() = upstream.status();
    *response.headers_mut() = response_headers(upstream.headers());
    let chunks = upstream.bytes_stream().map_err(std::io::Error::other);
    *response.body_mut() = ResponseBody::Stream(chunks.boxed());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(remote_ip: Option<&str>) -> RequestContext {
        RequestContext {
            remote_ip: remote_ip.map(|ip| ip.parse().expect("ip")),
            via_trusted_proxy: false,
            request_id: "req-7".to_owned(),
            ..RequestContext::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().expect("ascii"))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let incoming = headers(&[
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-connection", "keep-alive"),
            ("x-private", "secret"),
            ("content-length", "12"),
            ("authorization", "Bearer tok"),
            ("content-type", "application/json"),
            ("accept", "a"),
            ("accept", "b"),
            ("host", "matrix.example.org"),
        ]);
        let forwarded = request_headers(&incoming, &context(Some("198.51.100.4")));
        for gone in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
            "x-private",
            "content-length",
        ] {
            assert!(!forwarded.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(values(&forwarded, "authorization"), ["Bearer tok"]);
        assert_eq!(values(&forwarded, "content-type"), ["application/json"]);
        assert_eq!(values(&forwarded, "accept"), ["a", "b"]);
        assert_eq!(values(&forwarded, "host"), ["matrix.example.org"]);
        assert_eq!(values(&forwarded, "x-forwarded-for"), ["198.51.100.4"]);
        assert_eq!(values(&forwarded, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&forwarded, "x-request-id"), ["req-7"]);

        let upstream = headers(&[
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
            ("content-type", "application/json"),
        ]);
        let back = response_headers(&upstream);
        assert_eq!(back.len(), 2);
        assert_eq!(values(&back, "content-type"), ["application/json"]);
        assert_eq!(values(&back, "content-length"), ["3"]);
    }

    #[test]
    fn forwarded_for_names_the_client_the_gateway_settled_on() {
        // Behind a trusted proxy: the settled client alone, the proto kept.
        let trusted = headers(&[
            ("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let behind_proxy = RequestContext {
            via_trusted_proxy: true,
            ..context(Some("203.0.113.7"))
        };
        let forwarded = request_headers(&trusted, &behind_proxy);
        assert_eq!(values(&forwarded, "x-forwarded-for"), ["203.0.113.7"]);
        assert_eq!(values(&forwarded, "x-forwarded-proto"), ["https"]);

        // From anyone else nothing the client sent is passed on.
        let spoofed = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "client-chosen"),
        ]);
        let forwarded = request_headers(&spoofed, &context(Some("198.51.100.4")));
        assert_eq!(values(&forwarded, "x-forwarded-for"), ["198.51.100.4"]);
        assert_eq!(values(&forwarded, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&forwarded, "x-request-id"), ["req-7"]);

        let unknown = request_headers(&spoofed, &context(None));
        assert!(!unknown.contains_key("x-forwarded-for"));
    }
}
