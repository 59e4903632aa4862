//! Who the client is: the socket peer, or, behind a trusted proxy, the
//! address the proxies recorded in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The listener's trust in the proxies in front of it.
#[derive(Debug, Clone, Default)]
pub struct ProxyTrust {
    /// `X-Forwarded-For` is read at all (the listener's `x_forwarded`).
    pub x_forwarded: bool,
    pub trusted_proxies: Vec<IpNet>,
}

impl ProxyTrust {
    /// Whether `peer` is a proxy whose `X-Forwarded-For` is believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.x_forwarded && self.is_proxy(peer)
    }

    fn is_proxy(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted_proxies
            .iter()
            .any(|range| range.contains(&address))
    }

    /// The client's address. From a trusted peer, the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy: each
    /// proxy appends the address it saw, so entries left of the first
    /// untrusted one are whatever the client chose to send. From any other
    /// peer, the peer.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer.map(|address| address.ip().to_canonical());
        let Some(peer) = peer.filter(|peer| self.trusts(*peer)) else {
            return peer;
        };
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(address) = parse_entry(entry) else {
                // Garbage in the chain: nothing left of it can be believed.
                break;
            };
            client = address;
            if !self.is_proxy(address) {
                break;
            }
        }
        Some(client)
    }
}

/// An `X-Forwarded-For` entry: an address, possibly bracketed (IPv6) or
/// with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|address| address.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trust(x_forwarded: bool, ranges: &[&str]) -> ProxyTrust {
        ProxyTrust {
            x_forwarded,
            trusted_proxies: ranges
                .iter()
                .map(|range| range.parse().expect("a range"))
                .collect(),
        }
    }

    fn forwarded(chain: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(chain));
        headers
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        text.parse().ok()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded("203.0.113.7");
        let behind_proxy = trust(true, &["10.0.0.0/8"]);
        assert_eq!(
            behind_proxy.client_ip(&headers, peer("198.51.100.4:5000")),
            ip("198.51.100.4")
        );
        // x_forwarded off: not even a listed proxy is believed.
        let off = trust(false, &["10.0.0.0/8"]);
        assert_eq!(
            off.client_ip(&headers, peer("10.1.2.3:5000")),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trust = trust(true, &["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged the first entry; traefik appended the real
        // address, an inner proxy appended traefik's.
        let headers = forwarded("1.2.3.4, 203.0.113.7, 10.0.0.5");
        assert_eq!(
            trust.client_ip(&headers, peer("127.0.0.1:4000")),
            ip("203.0.113.7")
        );
        // Only proxies in the chain: the left-most of them.
        let headers = forwarded("10.0.0.9, 10.0.0.5");
        assert_eq!(
            trust.client_ip(&headers, peer("127.0.0.1:4000")),
            ip("10.0.0.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            trust.client_ip(&HeaderMap::new(), peer("10.0.0.5:1")),
            ip("10.0.0.5")
        );
        // Garbage stops the walk at the last address right of it.
        let headers = forwarded("1.2.3.4, nonsense, 10.0.0.7");
        assert_eq!(
            trust.client_ip(&headers, peer("127.0.0.1:4000")),
            ip("10.0.0.7")
        );
        // Ports, brackets and IPv4-mapped peers read as plain addresses.
        let headers = forwarded("[2001:db8::1]:443");
        assert_eq!(
            trust.client_ip(&headers, peer("[::ffff:10.0.0.5]:80")),
            ip("2001:db8::1")
        );
    }
}
