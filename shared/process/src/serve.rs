//! Binding listeners, running roles, and draining on a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use myelin_config::Config;
use myelin_http::{
    BodyLimits, BodyPace, ConnectionGate, ConnectionMetrics, HttpMetrics, ProxyTrust, Router,
    ServeOptions, TlsAcceptor,
};
use myelin_store::DeviceStore;
use tokio::task::JoinSet;

use crate::observability::add_process_routes;
use crate::{Deps, Role, Shutdown};

/// Long-polls get this long to finish after a shutdown signal.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Serves the roles until SIGTERM or ctrl-c, then drains.
pub async fn run_roles(
    deps: &Deps,
    roles: Vec<Arc<dyn Role>>,
    add_routes: impl FnOnce(&mut Router),
) -> anyhow::Result<()> {
    let tls = tls_acceptor(&deps.config)?;
    let metrics = HttpMetrics::register(&deps.registry).context("cannot register metrics")?;
    let device_store: Arc<dyn DeviceStore> = deps.store.clone();
    let mut router = Router::new(device_store, Some(metrics));
    router.set_body_limits(BodyLimits {
        api: deps.config.max_request_bytes(),
        upload: deps.config.max_upload_bytes(),
    });
    for role in &roles {
        Arc::clone(role).routes(&mut router);
    }
    add_routes(&mut router);
    add_process_routes(
        &mut router,
        deps.registry.clone(),
        deps.store.clone(),
        deps.bus.clone(),
        roles.clone(),
    );
    let router = Arc::new(router);

    let (stop, shutdown) = Shutdown::new();
    let mut role_tasks = JoinSet::new();
    for role in &roles {
        let (role, shutdown) = (Arc::clone(role), shutdown.clone());
        role_tasks.spawn(async move {
            let name = role.name();
            (name, role.run(shutdown).await)
        });
    }

    let mut servers = JoinSet::new();
    let mut addresses = Vec::new();
    let connection_metrics =
        ConnectionMetrics::register(&deps.registry).context("cannot register metrics")?;
    let connections = connection_gate(&deps.config, connection_metrics);
    let body_pace = body_pace(&deps.config);
    for listener in &deps.config.listeners {
        let (scheme, listener_tls) = match (listener.tls, &tls) {
            (true, Some(acceptor)) => ("https", Some(acceptor.clone())),
            _ => ("http", None),
        };
        for address in &listener.bind_addresses {
            let bind: SocketAddr = format!("{}:{}", bracket_v6(address), listener.port)
                .parse()
                .with_context(|| format!("bad bind address {address}"))?;
            let tcp = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            let local = tcp.local_addr()?;
            tracing::info!(%local, "listening");
            println!("Myelin listening on {scheme}://{local}");
            addresses.push(local);
            let options = ServeOptions {
                proxy_trust: ProxyTrust {
                    x_forwarded: listener.x_forwarded,
                    trusted_proxies: listener.trusted_proxy_ranges(),
                },
                body_pace,
                connections: Arc::clone(&connections),
            };
            let mut server_shutdown = shutdown.clone();
            servers.spawn(myelin_http::serve(
                tcp,
                listener_tls.clone(),
                Arc::clone(&router),
                options,
                async move {
                    server_shutdown.wait().await;
                },
            ));
        }
    }
    anyhow::ensure!(!addresses.is_empty(), "no HTTP listener is configured");

    tokio::select! {
        () = stop_signal() => tracing::info!("shutting down"),
        Some(finished) = role_tasks.join_next() => match finished {
            Ok((name, Err(error))) => tracing::error!(role = name, %error, "role failed; shutting down"),
            Ok((name, Ok(()))) => tracing::error!(role = name, "role stopped; shutting down"),
            Err(error) => tracing::error!(%error, "role panicked; shutting down"),
        },
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while servers.join_next().await.is_some() {}
        while role_tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain grace period passed; exiting with work in flight");
    }
    Ok(())
}

/// One gate for every listener: the open-file limit is the process's.
fn connection_gate(config: &Config, metrics: ConnectionMetrics) -> Arc<ConnectionGate> {
    let limits = &config.edge_limits;
    let open_files = myelin_http::open_file_limit();
    let max_total = myelin_http::max_connections(limits.max_connections, open_files);
    if let Some(configured) = limits.max_connections
        && configured > max_total
    {
        tracing::warn!(
            configured,
            max_total,
            ?open_files,
            "edge_limits.max_connections is above what the open-file limit allows; lowered"
        );
    }
    tracing::info!(
        max_total,
        per_address = limits.max_connections_per_address,
        "connection caps"
    );
    ConnectionGate::new(max_total, limits.max_connections_per_address, Some(metrics))
}

fn body_pace(config: &Config) -> BodyPace {
    let limits = &config.edge_limits;
    BodyPace {
        idle_timeout: Duration::from_millis(limits.body_read_timeout_ms),
        min_bytes_per_second: limits.min_body_rate_bytes_per_second,
        grace: Duration::from_millis(limits.min_body_rate_grace_ms),
    }
}

/// The acceptor TLS listeners share, when any listener asks for TLS: its
/// certificate and key come from Synapse's top-level keys.
fn tls_acceptor(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    if !config.listeners.iter().any(|listener| listener.tls) {
        return Ok(None);
    }
    let (Some(certificate), Some(key)) =
        (&config.tls_certificate_path, &config.tls_private_key_path)
    else {
        anyhow::bail!(
            "a listener has `tls: true` but tls_certificate_path and tls_private_key_path are not both set"
        );
    };
    Ok(Some(myelin_http::tls_acceptor(certificate, key)?))
}

fn bracket_v6(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_owned()
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
