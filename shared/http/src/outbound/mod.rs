//! Requests this server makes to addresses its users name (URL previews,
//! push gateways): every address a name resolves to, every address in a URL
//! and every redirect is checked against the configured ranges, so users
//! cannot reach this server's own network through it.

mod embedded_ipv4;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use embedded_ipv4::embedded_ipv4;

/// Ranges nothing is fetched from unless the whitelist names them:
/// loopback, private, link-local, shared, documentation, multicast and
/// otherwise reserved addresses.
pub const DEFAULT_BLACKLIST: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::1/128",
    "::/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
    // Local-use NAT64 (RFC 8215): translators inside someone's network.
    "64:ff9b:1::/48",
];

/// Which addresses requests may go to.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    blocked: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// From the config's lists (unparsable entries were refused at load).
    pub fn new(blacklist: Option<&[String]>, whitelist: &[String]) -> AddressPolicy {
        let parse = |ranges: &mut dyn Iterator<Item = &str>| -> Vec<IpNet> {
            ranges.filter_map(myelin_config::parse_ip_range).collect()
        };
        let blocked = match blacklist {
            Some(ranges) => parse(&mut ranges.iter().map(String::as_str)),
            None => parse(&mut DEFAULT_BLACKLIST.iter().copied()),
        };
        AddressPolicy {
            blocked,
            allowed: parse(&mut whitelist.iter().map(String::as_str)),
        }
    }

    /// The address's own ranges decide first; an IPv6 address that also
    /// carries IPv4 addresses (NAT64, 6to4, Teredo, ...) leads to them, so
    /// each of those must be permitted too.
    pub fn permits(&self, ip: IpAddr) -> bool {
        // `::ffff:127.0.0.1` is 127.0.0.1.
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|range| range.contains(&ip)) {
            return true;
        }
        if self.blocked.iter().any(|range| range.contains(&ip)) {
            return false;
        }
        match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(ip) => embedded_ipv4(ip)
                .into_iter()
                .all(|embedded| self.permits(IpAddr::V4(embedded))),
        }
    }

    /// Whether a URL may be fetched as far as its own text tells: http(s)
    /// and, for an address written in it, a permitted one.
    pub fn permits_url(&self, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => true,
            None => false,
        }
    }
}

/// Why an answer's body could not be read whole.
#[derive(Debug)]
pub enum BodyReadError {
    /// It declared, or sent, more than the limit.
    TooLarge,
    /// The connection failed while it was read.
    Transport(reqwest::Error),
}

/// Reads an answer's body, refusing one that declares or sends more than
/// `limit` bytes, so another server cannot make this one hold much.
pub async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Resolves names as the system does, keeping only permitted addresses, so
/// a name that points inside (or is changed to, between checks) gets no
/// connection.
pub struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> PolicyResolver {
        PolicyResolver { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|addr| policy.permits(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(
                    format!("{} has no address this server may send to", name.as_str()).into(),
                );
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_default_policy_keeps_previews_off_internal_addresses() {
        let policy = AddressPolicy::new(None, &[]);
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!policy.permits(ip(inside)), "{inside} must be blocked");
        }
        for outside in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(policy.permits(ip(outside)), "{outside} must be allowed");
        }
        let url = |text: &str| Url::parse(text).expect("url");
        assert!(!policy.permits_url(&url("http://127.0.0.1:8008/")));
        assert!(!policy.permits_url(&url("http://[::1]/")));
        assert!(!policy.permits_url(&url("file:///etc/passwd")));
        assert!(policy.permits_url(&url("https://example.org/")));
    }

    #[test]
    fn a_whitelist_opens_ranges_and_a_blacklist_replaces_the_default() {
        let whitelisted = AddressPolicy::new(None, &["127.0.0.1/32".to_owned()]);
        assert!(whitelisted.permits(ip("127.0.0.1")));
        assert!(!whitelisted.permits(ip("127.0.0.2")));
        let own = AddressPolicy::new(Some(&["93.184.216.0/24".to_owned()]), &[]);
        assert!(!own.permits(ip("93.184.216.34")));
        assert!(own.permits(ip("10.0.0.1")), "only the configured ranges");
    }

    #[test]
    fn ipv6_addresses_are_judged_by_the_ipv4_addresses_they_carry() {
        let policy = AddressPolicy::new(None, &[]);
        for inside in [
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::5db8:d822",
            "2002:7f00:1::1",
            "2002:c0a8:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a00:1:8000:63bf:a247:29dd",
            "2001:4860::5efe:a00:1",
        ] {
            assert!(!policy.permits(ip(inside)), "{inside} must be blocked");
        }
        for outside in [
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            // Teredo server 65.54.227.120, client 93.184.216.34.
            "2001:0:4136:e378:8000:63bf:a247:27dd",
        ] {
            assert!(policy.permits(ip(outside)), "{outside} must be allowed");
        }
        let url = |text: &str| Url::parse(text).expect("url");
        assert!(!policy.permits_url(&url("http://[64:ff9b::7f00:1]:8008/")));
        assert!(!policy.permits_url(&url("http://[2002:7f00:1::1]/")));
    }

    #[test]
    fn the_configured_ranges_of_the_ipv6_address_itself_still_apply() {
        let no_nat64 = AddressPolicy::new(Some(&["64:ff9b::/96".to_owned()]), &[]);
        assert!(!no_nat64.permits(ip("64:ff9b::5db8:d822")));
        let own = AddressPolicy::new(Some(&["93.184.216.0/24".to_owned()]), &[]);
        assert!(
            !own.permits(ip("64:ff9b::5db8:d822")),
            "embeds a blocked IPv4"
        );
        assert!(
            own.permits(ip("64:ff9b::7f00:1")),
            "only the configured ranges"
        );
        let whitelisted = AddressPolicy::new(None, &["127.0.0.1/32".to_owned()]);
        assert!(whitelisted.permits(ip("64:ff9b::7f00:1")));
        assert!(!whitelisted.permits(ip("64:ff9b::7f00:2")));
    }
}
