//! Fetching what a user asks to preview, without letting them reach this
//! server's own network: every address a name resolves to, every address
//! in a URL and every redirect is checked against the configured ranges.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::embedded_ipv4::embedded_ipv4;

/// Ranges no preview fetches from unless the whitelist names them:
/// loopback, private, link-local, shared, documentation, multicast and
/// otherwise reserved addresses.
const DEFAULT_BLACKLIST: &[&str] = &[
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

/// Redirects followed for one fetch.
const MAX_REDIRECTS: usize = 5;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Which addresses previews may fetch from.
#[derive(Debug, Clone)]
pub(crate) struct AddressPolicy {
    blocked: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// From the config's lists (unparsable entries were refused at load).
    pub(crate) fn new(blacklist: Option<&[String]>, whitelist: &[String]) -> AddressPolicy {
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
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
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
    pub(crate) fn permits_url(&self, url: &Url) -> bool {
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

/// Why a fetch gave nothing to preview.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The URL, or every address it leads to, is outside the policy.
    Blocked,
    TooLarge,
    Failed(String),
}

/// A fetched body and what the server said it is.
pub(crate) struct Fetched {
    pub(crate) url: Url,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// The HTTP client of previews.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
}

impl Fetcher {
    pub(crate) fn new(
        policy: AddressPolicy,
        max_bytes: u64,
        accept_language: &[String],
    ) -> reqwest::Result<Fetcher> {
        let policy = Arc::new(policy);
        let redirects = Arc::clone(&policy);
        let mut headers = reqwest::header::HeaderMap::new();
        let languages = if accept_language.is_empty() {
            "en".to_owned()
        } else {
            accept_language.join(", ")
        };
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&languages) {
            headers.insert(reqwest::header::ACCEPT_LANGUAGE, value);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("Myelin URL preview")
            .default_headers(headers)
            .timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: Arc::clone(&policy),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if redirects.permits_url(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirected outside the allowed addresses")
                }
            }))
            .build()?;
        Ok(Fetcher {
            client,
            policy,
            max_bytes,
        })
    }

    /// GETs `url` and reads at most the size limit of it.
    pub(crate) async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        if !self.policy.permits_url(url) {
            return Err(FetchError::Blocked);
        }
        if let Some(url::Host::Domain(name)) = url.host() {
            // Answer "blocked" rather than a vague failure when the name
            // itself leads nowhere allowed; the resolver checks again at
            // connect time, whatever the name resolves to then.
            let port = url.port_or_known_default().unwrap_or(80);
            let addresses = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| FetchError::Failed(format!("cannot resolve {name}: {error}")))?;
            if !addresses
                .into_iter()
                .any(|addr| self.policy.permits(addr.ip()))
            {
                return Err(FetchError::Blocked);
            }
        }
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| FetchError::Failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!(
                "the server answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes)
        {
            return Err(FetchError::TooLarge);
        }
        let url = response.url().clone();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| FetchError::Failed(error.to_string()))?;
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url,
            content_type,
            body: body.freeze(),
        })
    }
}

/// Resolves names as the system does, keeping only permitted addresses, so
/// a name that points inside (or is changed to, between checks) gets no
/// connection.
struct PolicyResolver {
    policy: Arc<AddressPolicy>,
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
                    format!("{} has no address previews may fetch from", name.as_str()).into(),
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
