//! Requests to other servers: found by discovery, signed with `X-Matrix`,
//! sent only to addresses the configured ranges permit, answers bounded in
//! size and time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use myelin_config::Config;
use myelin_http::MatrixError;
use myelin_http::outbound::{AddressPolicy, BodyReadError, PolicyResolver, read_limited};
use myelin_room::ServerKey;
use reqwest::dns::{Name, Resolve, Resolving};
use ruma::api::auth_scheme::{AuthScheme, NoAuthentication};
use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;
use url::Url;

use crate::discovery::{self, Destination};

/// The longest an answer may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read; a room's full state can be large.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// The largest `/.well-known/matrix/server` document read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
/// How long a discovered destination is reused.
const DESTINATION_TTL: Duration = Duration::from_secs(60 * 60);
/// Destinations remembered at most; the memory is cleared when full.
const MAX_DESTINATIONS: usize = 10_000;

/// Why a request to another server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederationError {
    /// This server does not talk to that one (whitelist, own name, a name
    /// that is not a server name, an address outside the permitted ranges).
    NotAllowed(String),
    /// No answer: discovery, connection, TLS or time ran out.
    Unreachable(String),
    /// It answered with a Matrix error.
    Remote {
        status: u16,
        errcode: String,
        error: String,
    },
    /// It answered with something that is not the endpoint's answer.
    BadResponse(String),
}

impl fmt::Display for FederationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FederationError::NotAllowed(why) => write!(f, "not allowed: {why}"),
            FederationError::Unreachable(why) => write!(f, "unreachable: {why}"),
            FederationError::Remote {
                status,
                errcode,
                error,
            } => write!(f, "{status} {errcode}: {error}"),
            FederationError::BadResponse(why) => write!(f, "bad answer: {why}"),
        }
    }
}

impl FederationError {
    /// What a client is told: the remote's own "not found", "forbidden" or
    /// "bad request", and `502` for anything else, so that no other server
    /// can tell a client its session is gone (a `401` would log it out).
    pub fn into_matrix_error(self) -> MatrixError {
        match self {
            FederationError::NotAllowed(why) => MatrixError::forbidden(why),
            FederationError::Remote {
                status,
                errcode,
                error,
            } if matches!(status, 400 | 403 | 404) => MatrixError::new(
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY),
                errcode,
                error,
            ),
            other => MatrixError::new(
                http::StatusCode::BAD_GATEWAY,
                "M_UNKNOWN",
                format!("The other server could not be asked: {other}"),
            ),
        }
    }
}

/// The ruma authentication schemes federation requests go out with.
pub trait OutgoingAuth: AuthScheme {
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key_pair: &'a Ed25519KeyPair,
    ) -> Self::Input<'a>;
}

impl OutgoingAuth for NoAuthentication {
    fn input<'a>(_: &ServerName, _: &ServerName, _: &'a Ed25519KeyPair) -> Self::Input<'a> {}
}

impl OutgoingAuth for ServerSignatures {
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key_pair: &'a Ed25519KeyPair,
    ) -> Self::Input<'a> {
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key_pair)
    }
}

/// Resolves names for federation requests: a host name an SRV record
/// points elsewhere is resolved as its target, and only permitted
/// addresses come back.
struct FederationResolver {
    policy: PolicyResolver,
    /// Host name to SRV target, from discovery.
    targets: Arc<Mutex<HashMap<String, String>>>,
}

impl Resolve for FederationResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let target = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name.as_str())
            .and_then(|target| target.parse::<Name>().ok());
        self.policy.resolve(target.unwrap_or(name))
    }
}

/// Sends requests to other servers on this server's behalf.
pub struct FederationClient {
    server_name: OwnedServerName,
    key: Arc<ServerKey>,
    config: Arc<Config>,
    policy: Arc<AddressPolicy>,
    /// By whether certificates are checked (the config exempts some
    /// names), then whether host names are resolved as their SRV targets:
    /// only requests discovery sent through an SRV record use those, so
    /// `.well-known` fetches and explicit ports resolve plainly.
    clients: [[reqwest::Client; 2]; 2],
    destinations: Mutex<HashMap<String, (Destination, Instant)>>,
    /// Host names SRV records point elsewhere (read by the resolver).
    srv_targets: Arc<Mutex<HashMap<String, String>>>,
    /// For SRV records; `None` when the system's resolver settings could
    /// not be read (then no SRV record is looked up).
    dns: Option<TokioResolver>,
}

impl FederationClient {
    pub fn new(config: Arc<Config>, key: Arc<ServerKey>) -> Result<FederationClient, String> {
        let server_name = OwnedServerName::try_from(config.server_name.as_str())
            .map_err(|error| format!("server_name is not a server name: {error}"))?;
        let policy = Arc::new(AddressPolicy::new(
            config.ip_range_blacklist.as_deref(),
            &config.ip_range_whitelist,
        ));
        let srv_targets = Arc::new(Mutex::new(HashMap::new()));
        let build = |accept_any_certificate: bool, through_srv: bool| {
            let targets = if through_srv {
                Arc::clone(&srv_targets)
            } else {
                Arc::new(Mutex::new(HashMap::new()))
            };
            reqwest::Client::builder()
                .dns_resolver(Arc::new(FederationResolver {
                    policy: PolicyResolver::new(Arc::clone(&policy)),
                    targets,
                }))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(90))
                .danger_accept_invalid_certs(accept_any_certificate)
                .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|error| format!("cannot build the federation client: {error}"))
        };
        Ok(FederationClient {
            server_name,
            key,
            policy: Arc::clone(&policy),
            clients: [
                [build(false, false)?, build(false, true)?],
                [build(true, false)?, build(true, true)?],
            ],
            config,
            destinations: Mutex::new(HashMap::new()),
            srv_targets,
            dns: match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
                Ok(resolver) => Some(resolver),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the DNS settings; SRV records will not be used");
                    None
                }
            },
        })
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Sends `request` to `destination` and parses its answer.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: OutgoingAuth,
    {
        self.send_limited(destination, request, MAX_RESPONSE_BYTES)
            .await
    }

    /// [`FederationClient::send`] for an answer of at most `limit` bytes.
    pub async fn send_limited<R>(
        &self,
        destination: &ServerName,
        request: R,
        limit: usize,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: OutgoingAuth,
    {
        self.check_allowed(destination)?;
        let target = self.destination(destination).await?;
        let input = R::Authentication::input(&self.server_name, destination, self.key.key_pair());
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url, input, ())
            .map_err(|error| FederationError::BadResponse(format!("cannot build: {error}")))?;
        let response = self
            .execute(destination, &target, http_request, limit)
            .await?;
        let (parts, body) = response.into_parts();
        R::IncomingResponse::try_from_http_response(http::Response::from_parts(parts, &body[..]))
            .map_err(|error| FederationError::BadResponse(error.to_string()))
    }

    /// `GET` of a path on `destination` without signing, for endpoints of
    /// the client API other servers serve (legacy media); the answer is
    /// read up to `limit` bytes.
    pub async fn get_unsigned(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        limit: usize,
    ) -> Result<http::Response<Bytes>, FederationError> {
        self.check_allowed(destination)?;
        let target = self.destination(destination).await?;
        let request = http::Request::get(format!("{}{path_and_query}", target.base_url))
            .body(Vec::new())
            .map_err(|error| FederationError::BadResponse(format!("cannot build: {error}")))?;
        self.execute(destination, &target, request, limit).await
    }

    /// `GET` of a URL another server's answer pointed to (a media
    /// `Location`), with the same address rules and certificate checks
    /// as a request to that host, following no further redirect; the
    /// answer is read up to `limit` bytes.
    pub async fn get_location(
        &self,
        url: &str,
        limit: usize,
    ) -> Result<http::Response<Bytes>, FederationError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .ok_or_else(|| {
                FederationError::BadResponse("a location that is no web address".to_owned())
            })?;
        let host = url.host_str().unwrap_or_default().to_owned();
        if !self.policy.permits_url(&url) {
            return Err(FederationError::NotAllowed(format!(
                "{host} is at an address this server may not send to"
            )));
        }
        let response = self
            .client_for(&host, false)
            .get(url)
            .send()
            .await
            .map_err(|error| FederationError::Unreachable(error_chain(&error)))?;
        read_response(response, limit).await
    }

    fn check_allowed(&self, destination: &ServerName) -> Result<(), FederationError> {
        if destination == self.server_name {
            return Err(FederationError::NotAllowed(
                "requests to this server itself are not sent".to_owned(),
            ));
        }
        if !self.config.federates_with(destination.as_str()) {
            return Err(FederationError::NotAllowed(format!(
                "federation with {destination} is not allowed"
            )));
        }
        Ok(())
    }

    fn client_for(&self, destination: &str, through_srv: bool) -> &reqwest::Client {
        let unchecked = !self.config.verifies_certificate_of(destination);
        &self.clients[usize::from(unchecked)][usize::from(through_srv)]
    }

    /// Sends one request and reads its answer whole, up to `limit` bytes.
    async fn execute(
        &self,
        destination: &ServerName,
        target: &Destination,
        request: http::Request<Vec<u8>>,
        limit: usize,
    ) -> Result<http::Response<Bytes>, FederationError> {
        let mut request = reqwest::Request::try_from(request)
            .map_err(|error| FederationError::BadResponse(format!("cannot build: {error}")))?;
        if !self.policy.permits_url(request.url()) {
            return Err(FederationError::NotAllowed(format!(
                "{destination} is at an address this server may not send to"
            )));
        }
        if let Ok(host) = http::HeaderValue::from_str(&target.host_header) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let response = self
            .client_for(destination.as_str(), target.connect_to.is_some())
            .execute(request)
            .await
            .map_err(|error| FederationError::Unreachable(error_chain(&error)))?;
        read_response(response, limit).await
    }

    /// Where `server_name` is served, from memory or found anew.
    async fn destination(&self, server_name: &ServerName) -> Result<Destination, FederationError> {
        if let Some(direct) = discovery::direct_destination(server_name.as_str()) {
            return Ok(direct);
        }
        let remembered = self
            .destinations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(server_name.as_str())
            .filter(|(_, found)| found.elapsed() < DESTINATION_TTL)
            .map(|(destination, _)| destination.clone());
        if let Some(destination) = remembered {
            return Ok(destination);
        }
        let destination = self.discover(server_name).await?;
        let mut destinations = self
            .destinations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut srv_targets = self
            .srv_targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if destinations.len() >= MAX_DESTINATIONS {
            destinations.clear();
            srv_targets.clear();
        }
        let (host, _) = discovery::split_server_name(&destination.host_header)
            .unwrap_or_else(|| (destination.host_header.clone(), None));
        match &destination.connect_to {
            Some(target) => srv_targets.insert(host, target.clone()),
            None => srv_targets.remove(&host),
        };
        destinations.insert(
            server_name.as_str().to_owned(),
            (destination.clone(), Instant::now()),
        );
        Ok(destination)
    }

    /// Delegation first, then SRV records, then port 8448.
    async fn discover(&self, server_name: &ServerName) -> Result<Destination, FederationError> {
        let (host, _) = discovery::split_server_name(server_name.as_str()).ok_or_else(|| {
            FederationError::NotAllowed(format!("{server_name} is not a server name"))
        })?;
        if let Some(delegated) = self.well_known(server_name).await {
            if let Some(direct) = discovery::direct_destination(&delegated) {
                return Ok(direct);
            }
            let srv = self.srv(&delegated).await;
            return Ok(discovery::srv_destination(&delegated, &delegated, srv));
        }
        let srv = self.srv(&host).await;
        Ok(discovery::srv_destination(&host, server_name.as_str(), srv))
    }

    /// The `_matrix-fed._tcp` record of `hostname`, else `_matrix._tcp`.
    async fn srv(&self, hostname: &str) -> Option<discovery::SrvTarget> {
        let resolver = self.dns.as_ref()?;
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Ok(Ok(found)) = tokio::time::timeout(
                Duration::from_secs(10),
                resolver.srv_lookup(format!("{service}.{hostname}.")),
            )
            .await
            else {
                continue;
            };
            let picked =
                discovery::pick_srv(found.answers().iter().filter_map(
                    |record| match &record.data {
                        RData::SRV(srv) => {
                            Some((srv.priority, srv.weight, srv.target.to_string(), srv.port))
                        }
                        _ => None,
                    },
                ));
            if picked.is_some() {
                return picked;
            }
        }
        None
    }

    /// `m.server` from the server's `/.well-known/matrix/server`, if any.
    async fn well_known(&self, server_name: &ServerName) -> Option<String> {
        let (host, _) = discovery::split_server_name(server_name.as_str())?;
        let url = Url::parse(&format!("https://{host}/.well-known/matrix/server")).ok()?;
        if !self.policy.permits_url(&url) {
            return None;
        }
        let response = self
            .client_for(server_name.as_str(), false)
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = read_response(response, MAX_WELL_KNOWN_BYTES).await.ok()?;
        discovery::well_known_server(body.body())
    }
}

/// The answer whole, or the remote's Matrix error.
async fn read_response(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<http::Response<Bytes>, FederationError> {
    let status = response.status();
    let body = read_limited(&mut response, limit)
        .await
        .map_err(|error| match error {
            BodyReadError::TooLarge => {
                FederationError::BadResponse(format!("answer larger than {limit} bytes"))
            }
            BodyReadError::Transport(error) => FederationError::Unreachable(error_chain(&error)),
        })?;
    if !status.is_success() {
        let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
        return Err(FederationError::Remote {
            status: status.as_u16(),
            errcode: text("errcode").unwrap_or_else(|| "M_UNKNOWN".to_owned()),
            error: text("error").unwrap_or_else(|| format!("answered {status}")),
        });
    }
    let mut answer = http::Response::new(Bytes::from(body));
    *answer.status_mut() = status;
    for header in [
        http::header::CONTENT_TYPE,
        http::header::CONTENT_DISPOSITION,
    ] {
        if let Some(value) = response.headers().get(&header) {
            answer.headers_mut().insert(header, value.clone());
        }
    }
    Ok(answer)
}

/// An error with its causes, which reqwest keeps apart.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
