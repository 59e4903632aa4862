//! The replicas of one role: configured base URLs, each resolved to every
//! address its name has (Docker Swarm's `tasks.<service>`, a headless
//! Kubernetes service), re-resolved and probed on `GET /health` every
//! health interval. Only replicas whose last probe passed get traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One configured upstream URL.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    scheme: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let parsed = reqwest::Url::parse(url).map_err(|error| format!("`{url}`: {error}"))?;
        if parsed.scheme() != "http" {
            return Err(format!("`{url}`: only http:// upstreams are supported"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("`{url}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("`{url}` has no port"))?;
        Ok(Target {
            url: url.to_owned(),
            scheme: parsed.scheme().to_owned(),
            host,
            port,
        })
    }
}

/// One address of one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub addr: SocketAddr,
    /// `http://10.0.1.7:8008`: where requests go, and the replica's name
    /// for rendezvous hashing.
    pub base: String,
    pub healthy: bool,
    /// Which configured URL it came from.
    target: usize,
}

/// The replicas of one role.
pub struct Pool {
    role: &'static str,
    targets: Vec<Target>,
    replicas: RwLock<Vec<Replica>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of the URLs that parse; the others come back as problems.
    pub fn new(role: &'static str, urls: &[String]) -> (Pool, Vec<String>) {
        let mut targets = Vec::new();
        let mut problems = Vec::new();
        for url in urls {
            match Target::parse(url) {
                Ok(target) => targets.push(target),
                Err(problem) => {
                    problems.push(format!("gateway.{}: {problem}", role.replace('-', "_")));
                }
            }
        }
        let pool = Pool {
            role,
            targets,
            replicas: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        };
        (pool, problems)
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    /// No upstream is configured at all.
    pub fn is_unconfigured(&self) -> bool {
        self.targets.is_empty()
    }

    /// Every known replica, healthy or not, ordered by address.
    pub fn replicas(&self) -> Vec<Replica> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The healthy replicas not in `exclude`, ordered by address.
    pub fn healthy(&self, exclude: &[SocketAddr]) -> Vec<Replica> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|replica| replica.healthy && !exclude.contains(&replica.addr))
            .cloned()
            .collect()
    }

    /// The next of `candidates` in turn.
    pub fn round_robin<'a>(&self, candidates: &'a [Replica]) -> Option<&'a Replica> {
        if candidates.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        candidates.get(turn % candidates.len())
    }

    /// Takes a replica out of rotation until its next probe passes (after a
    /// request could not connect to it).
    pub fn mark_unhealthy(&self, addr: SocketAddr) {
        let mut replicas = self.replicas.write().unwrap_or_else(|e| e.into_inner());
        for replica in replicas.iter_mut().filter(|replica| replica.addr == addr) {
            if replica.healthy {
                tracing::warn!(role = self.role, %addr, "replica unreachable; out of rotation");
            }
            replica.healthy = false;
        }
    }

    /// Re-resolves every configured name and probes every address.
    pub async fn refresh(&self, client: &reqwest::Client, probe_timeout: Duration) {
        let previous = self.replicas();
        let mut addresses: BTreeMap<SocketAddr, (usize, &Target)> = BTreeMap::new();
        for (index, target) in self.targets.iter().enumerate() {
            match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                Ok(resolved) => {
                    for addr in resolved {
                        addresses.entry(addr).or_insert((index, target));
                    }
                }
                Err(error) => {
                    // A resolver hiccup must not empty the pool: keep probing
                    // the addresses the name had.
                    tracing::warn!(role = self.role, url = %target.url, %error, "cannot resolve upstream");
                    for replica in previous.iter().filter(|replica| replica.target == index) {
                        addresses.entry(replica.addr).or_insert((index, target));
                    }
                }
            }
        }
        let probes = addresses
            .into_iter()
            .map(|(addr, (index, target))| async move {
                let base = format!("{}://{addr}", target.scheme);
                let healthy = probe(client, &base, probe_timeout).await;
                Replica {
                    addr,
                    base,
                    healthy,
                    target: index,
                }
            });
        let fresh: Vec<Replica> = futures::future::join_all(probes).await;
        self.log_changes(&previous, &fresh);
        *self.replicas.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    fn log_changes(&self, previous: &[Replica], fresh: &[Replica]) {
        for replica in fresh {
            let was = previous.iter().find(|old| old.addr == replica.addr);
            match (was.map(|old| old.healthy), replica.healthy) {
                (Some(true), true) | (Some(false) | None, false) => {}
                (_, true) => {
                    tracing::info!(role = self.role, addr = %replica.addr, "replica healthy");
                }
                (Some(true), false) => {
                    tracing::warn!(role = self.role, addr = %replica.addr, "replica failed its health check");
                }
            }
        }
        for old in previous {
            if !fresh.iter().any(|replica| replica.addr == old.addr) {
                tracing::info!(role = self.role, addr = %old.addr, "replica gone");
            }
        }
    }
}

async fn probe(client: &reqwest::Client, base: &str, timeout: Duration) -> bool {
    match client
        .get(format!("{base}/health"))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_targets() {
        let (pool, problems) = Pool::new(
            "client-api",
            &[
                "http://client-api:8008".to_owned(),
                "http://[::1]:9000".to_owned(),
                "http://tasks.synchrotron".to_owned(),
                "https://tls:8448".to_owned(),
                "not a url".to_owned(),
            ],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("gateway.client_api: "));
        let targets: Vec<(&str, u16)> = pool
            .targets
            .iter()
            .map(|target| (target.host.as_str(), target.port))
            .collect();
        assert_eq!(
            targets,
            [
                ("client-api", 8008),
                ("::1", 9000),
                ("tasks.synchrotron", 80)
            ]
        );
    }

    #[tokio::test]
    async fn unreachable_addresses_are_known_but_unhealthy() {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = unused.local_addr().expect("addr").port();
        drop(unused);
        let (pool, _) = Pool::new("media", &[format!("http://127.0.0.1:{port}")]);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        pool.refresh(&client, Duration::from_millis(500)).await;
        let replicas = pool.replicas();
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].base, format!("http://127.0.0.1:{port}"));
        assert!(!replicas[0].healthy);
        assert!(pool.healthy(&[]).is_empty());
        assert!(pool.round_robin(&[]).is_none());
    }
}
