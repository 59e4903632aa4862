//! Caps on open connections: in total, so the process never runs out of
//! file descriptors and stops accepting anyone, and per client address, so
//! one client cannot take them all. A connection over a cap is closed at
//! once instead of waiting in a queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// File descriptors kept for everything but client connections: the
/// database pool, the bus, log and media files, upstream health probes.
const RESERVED_FILES: u64 = 64;
/// The total cap when the open-file limit cannot be read (or is unlimited).
const FALLBACK_MAX_CONNECTIONS: usize = 4096;

/// The process's soft open-file limit (`RLIMIT_NOFILE`), when it has one.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The total connection cap: `configured`, but never more than half of
/// what `open_files` leaves after the reserve, since a proxied request also
/// holds a connection to its upstream.
pub fn max_connections(configured: Option<usize>, open_files: Option<u64>) -> usize {
    let bound = open_files.map(|limit| {
        let usable = limit.saturating_sub(RESERVED_FILES) / 2;
        usize::try_from(usable).unwrap_or(usize::MAX).max(1)
    });
    match (configured, bound) {
        (Some(configured), Some(bound)) => configured.min(bound),
        (Some(configured), None) => configured,
        (None, Some(bound)) => bound,
        (None, None) => FALLBACK_MAX_CONNECTIONS,
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ProcessFull,
    AddressFull,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::ProcessFull => "process",
            Refusal::AddressFull => "address",
        }
    }
}

/// What operators see of the caps: refusals are otherwise silent, since
/// logging each one would let a flood fill the logs instead.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    refused: prometheus::IntCounterVec,
    open: prometheus::IntGauge,
}

impl ConnectionMetrics {
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<ConnectionMetrics> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "myelin_http_connections_refused_total",
                "Connections closed at accept because a cap was reached, by cap",
            ),
            &["cap"],
        )?;
        let open = prometheus::IntGauge::new(
            "myelin_http_connections_open",
            "Client connections open now",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(ConnectionMetrics { refused, open })
    }
}

/// The open connections of a process, shared by all its listeners.
#[derive(Debug)]
pub struct ConnectionGate {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<OpenConnections>,
    metrics: Option<ConnectionMetrics>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    /// Only addresses subject to the per-address cap are counted here.
    by_address: HashMap<IpAddr, usize>,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    address: Option<IpAddr>,
}

impl ConnectionGate {
    pub fn new(
        max_total: usize,
        max_per_address: usize,
        metrics: Option<ConnectionMetrics>,
    ) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            open: Mutex::new(OpenConnections::default()),
            metrics,
        })
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Admits a connection from `peer` if both caps allow it; a trusted
    /// proxy's connections count only towards the total.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        exempt_from_address_cap: bool,
    ) -> Result<ConnectionPermit, Refusal> {
        let admitted = self.try_admit(peer, exempt_from_address_cap);
        if let Some(metrics) = &self.metrics {
            match &admitted {
                Ok(_) => metrics.open.inc(),
                Err(refusal) => metrics.refused.with_label_values(&[refusal.label()]).inc(),
            }
        }
        admitted
    }

    fn try_admit(
        self: &Arc<Self>,
        peer: IpAddr,
        exempt_from_address_cap: bool,
    ) -> Result<ConnectionPermit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refusal::ProcessFull);
        }
        let address = if exempt_from_address_cap {
            None
        } else {
            let from_peer = open.by_address.entry(peer).or_insert(0);
            if *from_peer >= self.max_per_address {
                return Err(Refusal::AddressFull);
            }
            *from_peer += 1;
            Some(peer)
        };
        open.total += 1;
        Ok(ConnectionPermit {
            gate: Arc::clone(self),
            address,
        })
    }

    /// Connections open now (for tests and diagnostics).
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(metrics) = &self.gate.metrics {
            metrics.open.dec();
        }
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(address) = self.address
            && let Some(from_peer) = open.by_address.get_mut(&address)
        {
            *from_peer = from_peer.saturating_sub(1);
            if *from_peer == 0 {
                // Addresses that left take no memory.
                open.by_address.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_total_cap_stays_below_the_open_file_limit() {
        assert_eq!(max_connections(None, Some(256)), 96);
        assert_eq!(max_connections(Some(10_000), Some(256)), 96);
        assert_eq!(max_connections(Some(50), Some(256)), 50);
        assert_eq!(max_connections(None, Some(10)), 1);
        assert_eq!(max_connections(Some(7), None), 7);
        assert_eq!(max_connections(None, None), FALLBACK_MAX_CONNECTIONS);
        assert!(open_file_limit().is_some_and(|limit| limit > 0));
    }

    #[test]
    fn caps_apply_per_address_and_in_total_and_free_on_drop() {
        let registry = prometheus::Registry::new();
        let metrics = ConnectionMetrics::register(&registry).expect("metrics");
        let gate = ConnectionGate::new(4, 2, Some(metrics.clone()));
        let first = gate.admit(ip("192.0.2.1"), false).expect("first");
        let _second = gate.admit(ip("192.0.2.1"), false).expect("second");
        assert_eq!(
            gate.admit(ip("192.0.2.1"), false).err(),
            Some(Refusal::AddressFull)
        );
        // A trusted proxy carries many clients: only the total applies.
        let _proxy_one = gate.admit(ip("10.0.0.1"), true).expect("proxy");
        let _proxy_two = gate.admit(ip("10.0.0.1"), true).expect("proxy");
        assert_eq!(
            gate.admit(ip("198.51.100.9"), false).err(),
            Some(Refusal::ProcessFull)
        );
        assert_eq!(metrics.refused.with_label_values(&["address"]).get(), 1);
        assert_eq!(metrics.refused.with_label_values(&["process"]).get(), 1);
        assert_eq!(metrics.open.get(), 4);
        drop(first);
        assert_eq!(gate.open(), 3);
        assert_eq!(metrics.open.get(), 3);
        let _again = gate.admit(ip("192.0.2.1"), false).expect("a freed place");
        assert_eq!(gate.open(), 4);
    }
}
