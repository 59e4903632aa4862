//! The HTTP edge of Myelin: which role owns each `/_matrix` path (the only
//! routing table), and the answers the edge gives itself (the static page,
//! `.well-known`). The single process uses the edge routes directly; the
//! gateway binary of the split shape proxies by the route table.

mod buffered;
pub mod edge;
pub mod proxy;
pub mod route_table;
pub mod sticky;
pub mod upstreams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use myelin_config::Config;
use myelin_http::{BodyStream, MatrixError, RequestContext, ResponseBody, Router};
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::DeviceStore;

use crate::buffered::BufferedBody;
use crate::proxy::{Outgoing, ProxyError};
use crate::route_table::RouteRole;
use crate::sticky::TokenCache;
use crate::upstreams::{Pool, Replica};

/// How long connecting to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a non-sync request may take end to end (sync long-polls have
/// no limit but the client's own `timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Replicas tried for one request when connections fail.
const MAX_ATTEMPTS: usize = 3;
/// Request bodies up to this size are kept whole, so another replica can
/// be tried; larger ones (media uploads) stream to one replica.
const RETRYABLE_BODY: usize = 256 * 1024;

/// The gateway role: edge routes, and everything else proxied to the role
/// the route table names.
pub struct Gateway {
    config: Arc<Config>,
    store: Arc<dyn DeviceStore>,
    client_api: Pool,
    synchrotron: Pool,
    media: Pool,
    federation_api: Pool,
    tokens: TokenCache,
    /// Proxied requests.
    client: reqwest::Client,
    /// Health probes, on their own connections.
    probes: reqwest::Client,
    health_interval: Duration,
}

pub fn role(deps: &Deps) -> Arc<Gateway> {
    Gateway::new(Arc::clone(&deps.config), deps.store.clone())
}

/// How the replica of a request is chosen.
enum Choice {
    /// The same replica for the same user (sync).
    Sticky(String),
    RoundRobin,
}

fn http_client(pool_idle: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        // Upstreams are on the internal network; no system proxy applies.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(pool_idle)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|error| {
            tracing::error!(%error, "cannot configure the HTTP client; using the defaults");
            reqwest::Client::new()
        })
}

impl Gateway {
    pub fn new(config: Arc<Config>, store: Arc<dyn DeviceStore>) -> Arc<Gateway> {
        let settings = &config.gateway;
        let (client_api, mut problems) = Pool::new("client-api", &settings.client_api);
        let (synchrotron, more) = Pool::new("synchrotron", &settings.synchrotron);
        problems.extend(more);
        let (media, more) = Pool::new("media", &settings.media);
        problems.extend(more);
        let (federation_api, more) = Pool::new("federation-api", &settings.federation_api);
        problems.extend(more);
        for problem in problems {
            tracing::error!("{problem}; ignored");
        }
        for pool in [&client_api, &synchrotron] {
            if pool.is_unconfigured() {
                tracing::warn!(role = pool.role(), "no upstream configured for this role");
            }
        }
        let health_interval = Duration::from_millis(settings.health_interval_ms.max(10));
        Arc::new(Gateway {
            store,
            client_api,
            synchrotron,
            media,
            federation_api,
            tokens: TokenCache::new(sticky::TOKEN_TTL),
            // Idle connections are dropped well before a worker closes
            // them (it waits HEADER_READ_TIMEOUT for the next request), so
            // a request never goes out on a connection being closed.
            client: http_client(myelin_http::HEADER_READ_TIMEOUT / 2),
            probes: http_client(health_interval * 3),
            health_interval,
            config,
        })
    }

    /// Re-resolves and probes every upstream once.
    pub async fn check_upstreams(&self) {
        let timeout =
            (self.health_interval / 2).clamp(Duration::from_millis(200), Duration::from_secs(2));
        futures::join!(
            self.client_api.refresh(&self.probes, timeout),
            self.synchrotron.refresh(&self.probes, timeout),
            self.media.refresh(&self.probes, timeout),
            self.federation_api.refresh(&self.probes, timeout),
        );
    }

    /// The replicas of a role as last probed (for tests and diagnostics).
    pub fn replicas(&self, role: RouteRole) -> Vec<Replica> {
        match role {
            RouteRole::ClientApi => self.client_api.replicas(),
            RouteRole::Synchrotron => self.synchrotron.replicas(),
            RouteRole::Media => self.media.replicas(),
            RouteRole::FederationApi => self.federation_api.replicas(),
            RouteRole::Edge => Vec::new(),
        }
    }

    /// A request no edge route answers: to the role the route table names.
    pub async fn handle(
        &self,
        context: RequestContext,
        request: http::Request<BodyStream>,
    ) -> Result<http::Response<ResponseBody>, MatrixError> {
        let unrecognized = || MatrixError::unrecognized("Unrecognized request");
        let (pool, choice, timeout) = match route_table::role_for(request.uri().path()) {
            // The edge's own paths it does not serve (other `.well-known`
            // documents).
            None | Some(RouteRole::Edge) => return Err(unrecognized()),
            Some(RouteRole::Media) if self.media.is_unconfigured() => return Err(unrecognized()),
            // A deployment without federation.
            Some(RouteRole::FederationApi) if self.federation_api.is_unconfigured() => {
                return Err(unrecognized());
            }
            Some(RouteRole::FederationApi) => (
                &self.federation_api,
                Choice::RoundRobin,
                Some(REQUEST_TIMEOUT),
            ),
            Some(RouteRole::Media) => (&self.media, Choice::RoundRobin, Some(REQUEST_TIMEOUT)),
            Some(RouteRole::ClientApi) => {
                (&self.client_api, Choice::RoundRobin, Some(REQUEST_TIMEOUT))
            }
            Some(RouteRole::Synchrotron) => {
                let token = sticky::access_token(&request);
                let user = match token {
                    Some(token) => self.tokens.user_for(self.store.as_ref(), &token).await,
                    None => None,
                };
                let choice = user.map_or(Choice::RoundRobin, Choice::Sticky);
                (&self.synchrotron, choice, None)
            }
        };
        let (parts, body) = request.into_parts();
        let headers = proxy::request_headers(&parts.headers, &context);
        let outgoing = |body, timeout| Outgoing {
            method: &parts.method,
            uri: &parts.uri,
            body,
            timeout,
        };
        match BufferedBody::read(body, RETRYABLE_BODY).await? {
            BufferedBody::Whole(body) => {
                self.proxy(pool, &choice, &context, headers, || {
                    outgoing(reqwest::Body::from(body.clone()), timeout)
                })
                .await
            }
            // Too large to keep whole: it streams to the first replica that
            // can be connected to, as slowly as the client sends it, so no
            // time limit applies.
            BufferedBody::Streaming(body) => {
                let refusal = body.refusal();
                let sent = self
                    .proxy(pool, &choice, &context, headers, || {
                        outgoing(body.to_send(), None)
                    })
                    .await;
                match refusal.take() {
                    // The client's body broke off or passed the limit: that
                    // is the answer, not the replica's reaction to it.
                    Some(error) => Err(error),
                    None => sent,
                }
            }
        }
    }

    /// Sends a request to a replica of `pool`, trying another when one
    /// cannot be connected to; `outgoing` makes each attempt's request.
    async fn proxy<'a>(
        &self,
        pool: &Pool,
        choice: &Choice,
        context: &RequestContext,
        headers: HeaderMap,
        outgoing: impl Fn() -> Outgoing<'a>,
    ) -> Result<http::Response<ResponseBody>, MatrixError> {
        let mut failed: Vec<SocketAddr> = Vec::new();
        while failed.len() < MAX_ATTEMPTS {
            let healthy = pool.healthy(&failed);
            let replica = match choice {
                Choice::Sticky(user) => sticky::rendezvous(user, &healthy, |r| r.base.as_str()),
                Choice::RoundRobin => pool.round_robin(&healthy),
            };
            let Some(replica) = replica else {
                break;
            };
            match proxy::forward(&self.client, replica, outgoing(), headers.clone()).await {
                Ok(response) => return Ok(response),
                Err(ProxyError::Connect(error)) => {
                    tracing::warn!(
                        role = pool.role(),
                        addr = %replica.addr,
                        request_id = %context.request_id,
                        %error,
                        "cannot connect to replica"
                    );
                    pool.mark_unhealthy(replica.addr);
                    failed.push(replica.addr);
                }
                Err(ProxyError::Timeout(after)) => {
                    tracing::warn!(role = pool.role(), addr = %replica.addr, request_id = %context.request_id, ?after, "replica did not answer in time");
                    return Err(MatrixError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "M_UNKNOWN",
                        format!("The {} replica did not answer in time", pool.role()),
                    ));
                }
                Err(ProxyError::Other(error)) => {
                    tracing::warn!(role = pool.role(), addr = %replica.addr, request_id = %context.request_id, %error, "proxying failed");
                    return Err(bad_gateway(pool.role()));
                }
            }
        }
        if failed.is_empty() {
            Err(MatrixError::unavailable(format!(
                "no healthy {} replica",
                pool.role()
            )))
        } else {
            Err(bad_gateway(pool.role()))
        }
    }
}

fn bad_gateway(role: &str) -> MatrixError {
    MatrixError::new(
        StatusCode::BAD_GATEWAY,
        "M_UNKNOWN",
        format!("The {role} replica could not be reached"),
    )
}

#[async_trait]
impl Role for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        edge::add_edge_routes(router, &self.config);
        router.fallback(move |context, request| {
            let gateway = Arc::clone(&self);
            async move { gateway.handle(context, request).await }
        });
        // Only the media role takes uploads; every other proxied body gets
        // the small limit here, before the gateway reads any of it.
        router.fallback_upload_paths(|path| route_table::role_for(path) == Some(RouteRole::Media));
    }

    /// Probes the upstreams every health interval until shutdown.
    async fn run(self: Arc<Self>, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let mut ticks = tokio::time::interval(self.health_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                _ = ticks.tick() => self.check_upstreams().await,
            }
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let missing: Vec<&str> = [&self.client_api, &self.synchrotron]
            .into_iter()
            .filter(|pool| pool.healthy(&[]).is_empty())
            .map(|pool| pool.role())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no healthy {} replica", missing.join(" or ")))
        }
    }
}
