//! Finding where a server name is served, in the spec's order: an IP
//! literal or an explicit port as given, then `/.well-known/matrix/server`
//! delegation, then port 8448. (SRV records are not consulted yet: a name
//! that relies on one alone is not reached.)

use std::net::IpAddr;

use serde_json::Value;

/// Where requests for a server go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://host:port`; TLS names `host`.
    pub base_url: String,
    /// The `Host` header: the server name, or the delegated one.
    pub host_header: String,
}

/// The spec's default federation port.
pub const DEFAULT_PORT: u16 = 8448;

/// A server name split into its host and port; `None` when it is not one.
pub fn split_server_name(server_name: &str) -> Option<(String, Option<u16>)> {
    let parsed = ruma::ServerName::parse(server_name).ok()?;
    let host = parsed.host();
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.to_owned(), parsed.port()))
}

fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_owned(),
    }
}

/// The destination of a name whose host is an IP literal or that names a
/// port; `None` when delegation must be looked up.
pub fn direct_destination(server_name: &str) -> Option<Destination> {
    let (host, port) = split_server_name(server_name)?;
    let is_ip = host.parse::<IpAddr>().is_ok();
    if !is_ip && port.is_none() {
        return None;
    }
    Some(Destination {
        base_url: format!(
            "https://{}:{}",
            url_host(&host),
            port.unwrap_or(DEFAULT_PORT)
        ),
        host_header: server_name.to_owned(),
    })
}

/// The destination after `/.well-known/matrix/server`: `delegated` is its
/// `m.server` when there was a valid one.
pub fn delegated_destination(server_name: &str, delegated: Option<&str>) -> Option<Destination> {
    let Some(delegated) = delegated else {
        let (host, _) = split_server_name(server_name)?;
        return Some(Destination {
            base_url: format!("https://{}:{DEFAULT_PORT}", url_host(&host)),
            host_header: server_name.to_owned(),
        });
    };
    let (host, port) = split_server_name(delegated)?;
    Some(Destination {
        base_url: format!(
            "https://{}:{}",
            url_host(&host),
            port.unwrap_or(DEFAULT_PORT)
        ),
        host_header: delegated.to_owned(),
    })
}

/// `m.server` of a well-known document, when it is a server name.
pub fn well_known_server(body: &[u8]) -> Option<String> {
    let document: Value = serde_json::from_slice(body).ok()?;
    let delegated = document.get("m.server")?.as_str()?;
    split_server_name(delegated)?;
    Some(delegated.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_ports_go_straight_there() {
        let ip = direct_destination("127.0.0.1:8449").expect("direct");
        assert_eq!(ip.base_url, "https://127.0.0.1:8449");
        assert_eq!(ip.host_header, "127.0.0.1:8449");
        let v6 = direct_destination("[::1]").expect("direct");
        assert_eq!(v6.base_url, "https://[::1]:8448");
        let named = direct_destination("hs.example:443").expect("direct");
        assert_eq!(named.base_url, "https://hs.example:443");
        assert_eq!(direct_destination("hs.example"), None);
        assert_eq!(direct_destination("not a name"), None);
    }

    #[test]
    fn delegation_names_the_host_and_host_header() {
        let delegated = delegated_destination("example.org", Some("matrix.example.org"));
        assert_eq!(
            delegated,
            Some(Destination {
                base_url: "https://matrix.example.org:8448".to_owned(),
                host_header: "matrix.example.org".to_owned(),
            })
        );
        let with_port =
            delegated_destination("example.org", Some("m.example.org:443")).expect("delegated");
        assert_eq!(with_port.base_url, "https://m.example.org:443");
        let none = delegated_destination("example.org", None).expect("fallback");
        assert_eq!(none.base_url, "https://example.org:8448");
        assert_eq!(none.host_header, "example.org");
        assert_eq!(
            well_known_server(br#"{"m.server": "m.example.org:443"}"#).as_deref(),
            Some("m.example.org:443")
        );
        assert_eq!(well_known_server(br#"{"m.server": "bad name!"}"#), None);
        assert_eq!(well_known_server(b"<html>"), None);
    }
}
