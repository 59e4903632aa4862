//! What the edge answers itself: the "is it running" page operators open
//! after putting a proxy in front, and `.well-known` discovery.

use bytes::Bytes;
use http::{Method, StatusCode};
use myelin_config::Config;
use myelin_http::{MatrixError, Router, json_response};
use serde_json::{Value, json};

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
    let well_known = client_well_known(config);
    router.raw(
        Method::GET,
        "/.well-known/matrix/client",
        false,
        move |_, _, _| {
            let well_known = well_known.clone();
            async move {
                let well_known = well_known
                    .ok_or_else(|| MatrixError::not_found("No .well-known client configuration"))?;
                Ok(json_response(StatusCode::OK, &well_known))
            }
        },
    );
    let server = server_well_known(config);
    router.raw(
        Method::GET,
        "/.well-known/matrix/server",
        false,
        move |_, _, _| {
            let server = server.clone();
            async move {
                let server = server
                    .ok_or_else(|| MatrixError::not_found("No .well-known server configuration"))?;
                Ok(json_response(StatusCode::OK, &server))
            }
        },
    );
}

/// `/.well-known/matrix/server` when `serve_server_wellknown` is set: other
/// servers reach this one at `public_baseurl`'s host, on its port or 443
/// (as Synapse answers). Nothing without a `public_baseurl`.
fn server_well_known(config: &Config) -> Option<Value> {
    if !config.serve_server_wellknown {
        return None;
    }
    let base_url = url::Url::parse(config.public_baseurl.as_deref()?).ok()?;
    let host = match base_url.host()? {
        url::Host::Ipv6(ip) => format!("[{ip}]"),
        host => host.to_string(),
    };
    let port = base_url.port().unwrap_or(443);
    Some(json!({"m.server": format!("{host}:{port}")}))
}

/// `/.well-known/matrix/client`: the homeserver clients should use and, when
/// configured, the identity server; nothing without a `public_baseurl`.
fn client_well_known(config: &Config) -> Option<Value> {
    let base_url = config.public_baseurl.as_deref()?;
    let mut well_known = json!({"m.homeserver": {"base_url": base_url}});
    if let Some(identity_server) = config
        .default_identity_server
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    {
        well_known["m.identity_server"] = json!({"base_url": identity_server});
    }
    Some(well_known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_well_known_names_public_baseurl_when_asked_to() {
        let mut config = Config {
            public_baseurl: Some("https://matrix.example.org/".to_owned()),
            ..Config::default()
        };
        assert_eq!(server_well_known(&config), None, "off by default");
        config.serve_server_wellknown = true;
        assert_eq!(
            server_well_known(&config),
            Some(json!({"m.server": "matrix.example.org:443"}))
        );
        config.public_baseurl = Some("http://[::1]:8008".to_owned());
        assert_eq!(
            server_well_known(&config),
            Some(json!({"m.server": "[::1]:8008"}))
        );
        config.public_baseurl = None;
        assert_eq!(server_well_known(&config), None);
    }

    #[test]
    fn the_identity_server_is_advertised_when_configured() {
        let mut config = Config {
            default_identity_server: Some("https://id.example.org".to_owned()),
            ..Config::default()
        };
        assert_eq!(client_well_known(&config), None, "no public_baseurl");
        config.public_baseurl = Some("https://matrix.example.org/".to_owned());
        assert_eq!(
            client_well_known(&config),
            Some(json!({
                "m.homeserver": {"base_url": "https://matrix.example.org/"},
                "m.identity_server": {"base_url": "https://id.example.org"},
            }))
        );
        for unset in [None, Some(String::new())] {
            config.default_identity_server = unset;
            assert_eq!(
                client_well_known(&config),
                Some(json!({"m.homeserver": {"base_url": "https://matrix.example.org/"}}))
            );
        }
    }
}
