//! Finding where a server name is served, in the spec's order: an IP
//! literal or an explicit port as given; then `/.well-known/matrix/server`
//! delegation (whose name goes through the same steps); then the SRV
//! records `_matrix-fed._tcp` and the older `_matrix._tcp`; then port 8448.

use std::net::IpAddr;

use serde_json::Value;

/// Where requests for a server go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://host:port`; TLS names `host`.
    pub base_url: String,
    /// The `Host` header: the server name, or the delegated one.
    pub host_header: String,
    /// From an SRV record: the host the URL's host name stands for. TLS
    /// still names the URL's host, as the spec asks.
    pub connect_to: Option<String>,
}

/// An SRV record's answer: where the service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub target: String,
    pub port: u16,
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
        connect_to: None,
    })
}

/// The destination of a host name (no port) that names no delegation:
/// where its SRV record points, else port 8448. `host_header` is what the
/// request names as its `Host`.
pub fn srv_destination(hostname: &str, host_header: &str, srv: Option<SrvTarget>) -> Destination {
    match srv {
        Some(srv) => Destination {
            base_url: format!("https://{}:{}", url_host(hostname), srv.port),
            host_header: hostname.to_owned(),
            connect_to: Some(srv.target),
        },
        None => Destination {
            base_url: format!("https://{}:{DEFAULT_PORT}", url_host(hostname)),
            host_header: host_header.to_owned(),
            connect_to: None,
        },
    }
}

/// The SRV answer to use: the lowest priority, then the highest weight;
/// a target of `.` says the service is not offered.
pub fn pick_srv(records: impl IntoIterator<Item = (u16, u16, String, u16)>) -> Option<SrvTarget> {
    records
        .into_iter()
        .map(|(priority, weight, target, port)| {
            (
                priority,
                std::cmp::Reverse(weight),
                target.trim_end_matches('.').to_owned(),
                port,
            )
        })
        .filter(|(_, _, target, _)| !target.is_empty())
        .min()
        .map(|(_, _, target, port)| SrvTarget { target, port })
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
    fn srv_records_name_where_to_connect_not_what_to_ask_for() {
        let srv = pick_srv([
            (20, 0, "backup.example.org.".to_owned(), 8448),
            (10, 5, "light.example.org.".to_owned(), 8443),
            (10, 50, "heavy.example.org.".to_owned(), 8444),
        ])
        .expect("a target");
        assert_eq!(
            srv,
            SrvTarget {
                target: "heavy.example.org".to_owned(),
                port: 8444
            }
        );
        assert_eq!(pick_srv([(0, 0, ".".to_owned(), 0)]), None);
        let through = srv_destination("example.org", "example.org", Some(srv));
        assert_eq!(through.base_url, "https://example.org:8444");
        assert_eq!(through.host_header, "example.org");
        assert_eq!(through.connect_to.as_deref(), Some("heavy.example.org"));
        let plain = srv_destination("m.example.org", "m.example.org", None);
        assert_eq!(plain.base_url, "https://m.example.org:8448");
        assert_eq!(plain.connect_to, None);
    }

    #[test]
    fn well_known_documents_name_a_server() {
        assert_eq!(
            well_known_server(br#"{"m.server": "m.example.org:443"}"#).as_deref(),
            Some("m.example.org:443")
        );
        assert_eq!(well_known_server(br#"{"m.server": "bad name!"}"#), None);
        assert_eq!(well_known_server(b"<html>"), None);
    }
}
