//! Logs and the process's own HTTP endpoints: `/health`, `/ready`, `/metrics`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use myelin_bus::Bus;
use myelin_config::{Config, LogLevel};
use myelin_http::{MatrixError, Router, json_response};
use myelin_store::Store;
use serde_json::json;

use crate::Role;

/// Structured logs at the level of the log config; `MYELIN_LOG` (an
/// `EnvFilter` directive such as `myelin=debug`) wins over it. Panics are
/// logged there too.
pub fn init_tracing(config: Option<&Config>) {
    let level = config
        .and_then(|config| config.log_config.as_deref())
        .and_then(myelin_config::log_level)
        .unwrap_or(LogLevel::Info);
    let default = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let filter = std::env::var("MYELIN_LOG").unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    crate::panics::log_panics();
}

pub(crate) fn add_process_routes(
    router: &mut Router,
    registry: prometheus::Registry,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    roles: Vec<Arc<dyn Role>>,
) {
    router.raw(Method::GET, "/health", false, |_, _, _| async {
        Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
    });
    router.raw(Method::GET, "/ready", false, move |_, _, _| {
        let (store, bus, roles) = (Arc::clone(&store), Arc::clone(&bus), roles.clone());
        async move {
            let mut problems = Vec::new();
            if let Err(error) = store.ping().await {
                problems.push(format!("store: {error}"));
            }
            if let Err(error) = bus.ping().await {
                problems.push(format!("bus: {error}"));
            }
            for role in &roles {
                if let Err(error) = role.ready().await {
                    problems.push(format!("{}: {error}", role.name()));
                }
            }
            if problems.is_empty() {
                Ok(json_response(StatusCode::OK, &json!({"status": "ready"})))
            } else {
                Err(MatrixError::unavailable(problems.join("; ")))
            }
        }
    });
    router.raw(Method::GET, "/metrics", false, move |_, _, _| {
        let registry = registry.clone();
        async move {
            let text = prometheus::TextEncoder::new()
                .encode_to_string(&registry.gather())
                .map_err(|error| MatrixError::internal(error.to_string()))?;
            let mut response = http::Response::new(Bytes::from(text));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(response)
        }
    });
}

/// A counter with labels, registered on the process's registry. A name the
/// registry refuses (only a duplicate can be) still counts, unexported.
pub fn labelled_counter(
    registry: &prometheus::Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::IntCounterVec {
    let counter = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
        .unwrap_or_else(|error| panic!("metric {name} is misdefined: {error}"));
    if let Err(error) = registry.register(Box::new(counter.clone())) {
        tracing::warn!(%error, name, "cannot export a metric");
    }
    counter
}
