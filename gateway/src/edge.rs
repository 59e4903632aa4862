//! What the edge answers itself: the "is it running" page operators open
//! after putting a proxy in front, and `.well-known` discovery.

use bytes::Bytes;
use http::{Method, StatusCode};
use myelin_config::Config;
use myelin_http::{MatrixError, Router, json_response};
use serde_json::json;

const STATIC_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Myelin is running</title></head>\
<body><h1>Myelin is running</h1><p>This Matrix homeserver is up. Point a Matrix client at this address to use it.</p></body></html>\n";

pub fn add_edge_routes(router: &mut Router, config: &Config) {
    for path in ["/_matrix/static", "/_matrix/static/"] {
        router.raw(Method::GET, path, false, |_, _, _| async {
            let mut response = http::Response::new(Bytes::from_static(STATIC_PAGE.as_bytes()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Ok(response)
        });
    }
    let base_url = config.public_baseurl.clone();
    router.raw(
        Method::GET,
        "/.well-known/matrix/client",
        false,
        move |_, _, _| {
            let base_url = base_url.clone();
            async move {
                let base_url = base_url
                    .ok_or_else(|| MatrixError::not_found("No .well-known client configuration"))?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"m.homeserver": {"base_url": base_url}}),
                ))
            }
        },
    );
}
