//! The endpoint router: `(method, path template)` to a handler typed with
//! ruma's request and response types. Templates come from ruma's own path
//! history, so every spec path of an endpoint (r0, v3, unstable) is served.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Method, StatusCode};
use myelin_store::{DeviceStore, TokenOwner};
use ruma::OwnedServerName;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
};
use ruma::api::federation::authentication::ServerSignatures;
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};
use serde_json::Value;

use crate::MatrixError;
use crate::body::{BodyStream, ResponseBody, body_stream, limited, read_to_end};

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The authenticated user, for endpoints that take an access token.
    pub user: Option<TokenOwner>,
    pub access_token: Option<String>,
    /// The client's address (from `X-Forwarded-For` where the listener trusts it).
    pub remote_ip: Option<IpAddr>,
    /// The request came through a proxy the listener trusts, so its other
    /// `X-Forwarded-*` headers hold too.
    pub via_trusted_proxy: bool,
    pub request_id: String,
    /// The server whose `X-Matrix` signature the request carried, on
    /// federation endpoints.
    pub origin: Option<OwnedServerName>,
}

impl RequestContext {
    /// The authenticated user; only `None` on endpoints without auth.
    pub fn user(&self) -> Result<&TokenOwner, MatrixError> {
        self.user.as_ref().ok_or_else(MatrixError::missing_token)
    }

    /// The verified origin server; only `None` off federation endpoints.
    pub fn origin(&self) -> Result<&OwnedServerName, MatrixError> {
        self.origin
            .as_ref()
            .ok_or_else(|| MatrixError::unauthorized("Missing X-Matrix authorization"))
    }
}

/// Checks the `X-Matrix` signature of a federation request, body included,
/// and answers the server that signed it.
pub trait ServerRequestVerifier: Send + Sync + 'static {
    fn verify<'a>(
        &'a self,
        request: &'a http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<OwnedServerName, MatrixError>>;
}

/// A route whose handler gets the whole body; its answer may still be a
/// stream (see [`Router::route_streamed`]).
type Handler = Arc<
    dyn Fn(
            RequestContext,
            http::Request<Bytes>,
            Vec<String>,
        ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, MatrixError>>
        + Send
        + Sync,
>;

/// A route whose handler reads the body as it arrives and may answer with
/// a stream (see [`Router::streamed`]).
type StreamHandler = Arc<
    dyn Fn(
            RequestContext,
            http::Request<BodyStream>,
            Vec<String>,
        ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, MatrixError>>
        + Send
        + Sync,
>;

enum RouteHandler {
    /// Gets the whole body, gives a whole response.
    Whole(Handler),
    Streamed(StreamHandler),
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// An access token when one is sent.
    Optional,
    /// An access token.
    Required,
    /// An `X-Matrix` signature of another server, checked with the body.
    Server,
}

/// The ruma authentication schemes this router can check. An endpoint
/// whose scheme is not listed here does not compile, so no scheme is ever
/// served as if it needed nothing.
pub trait RouteAuth: 'static {
    const AUTH: Auth;
}

impl RouteAuth for NoAuthentication {
    const AUTH: Auth = Auth::None;
}

/// Endpoints that need no token but to which clients may send one anyway.
impl RouteAuth for NoAccessToken {
    const AUTH: Auth = Auth::None;
}

/// `/register` and `/login`, which an application service may call with
/// its token. No application service is registered here, so the token is
/// never honoured: the request proves itself in its body (password,
/// user-interactive auth) like any other.
impl RouteAuth for AppserviceTokenOptional {
    const AUTH: Auth = Auth::None;
}

impl RouteAuth for AccessToken {
    const AUTH: Auth = Auth::Required;
}

impl RouteAuth for AccessTokenOptional {
    const AUTH: Auth = Auth::Optional;
}

impl RouteAuth for ServerSignatures {
    const AUTH: Auth = Auth::Server;
}

struct Route {
    method: Method,
    template: &'static str,
    segments: Vec<Option<&'static str>>,
    auth: Auth,
    /// The body is JSON for ruma to parse (every route but raw ones).
    json_body: bool,
    handler: RouteHandler,
}

/// Request counters and latency per route, on the process registry.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<HttpMetrics> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "myelin_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "myelin_http_request_seconds",
                "HTTP request latency by route",
            ),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(HttpMetrics { requests, latency })
    }
}

/// What answers requests for paths no route serves, when set.
type Fallback = Arc<
    dyn Fn(
            RequestContext,
            http::Request<BodyStream>,
        ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, MatrixError>>
        + Send
        + Sync,
>;

/// The metrics label of requests answered by the fallback.
const FALLBACK_ROUTE: &str = "<fallback>";

/// The largest request bodies the router lets through. A declared
/// `Content-Length` above the limit is refused before any of the body is
/// read; a body without one is cut off where it passes the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Routes that take their body whole (JSON), and fallback paths that
    /// are not uploads.
    pub api: u64,
    /// Streamed routes (media uploads), and fallback paths that are.
    pub upload: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            api: 1024 * 1024,
            upload: 50 * 1024 * 1024,
        }
    }
}

pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Fallback>,
    /// Which paths the fallback takes uploads on (the rest get the API limit).
    fallback_upload_paths: fn(&str) -> bool,
    body_limits: BodyLimits,
    device_store: Arc<dyn DeviceStore>,
    /// Checks federation requests; without one they are refused.
    server_verifier: Option<Arc<dyn ServerRequestVerifier>>,
    metrics: Option<HttpMetrics>,
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &Value) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn parse_template(template: &'static str) -> Vec<Option<&'static str>> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                None
            } else {
                Some(segment)
            }
        })
        .collect()
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Router {
    pub fn new(device_store: Arc<dyn DeviceStore>, metrics: Option<HttpMetrics>) -> Router {
        Router {
            routes: Vec::new(),
            fallback: None,
            fallback_upload_paths: |_| false,
            body_limits: BodyLimits::default(),
            device_store,
            server_verifier: None,
            metrics,
        }
    }

    /// Lets the federation endpoints in: their `X-Matrix` signatures are
    /// checked by `verifier`.
    pub fn set_server_verifier(&mut self, verifier: Arc<dyn ServerRequestVerifier>) -> &mut Self {
        self.server_verifier = Some(verifier);
        self
    }

    /// Serves the ruma endpoint `R` on every path the spec gives it.
    pub fn route<R, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: RouteAuth,
        R::OutgoingResponse: Send,
        F: Fn(RequestContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R::OutgoingResponse, MatrixError>> + Send + 'static,
    {
        self.ruma_endpoint::<R, _, _>(move |context, request| {
            let response = handler(context, request);
            async move { into_http_response(response.await?).map(whole) }
        })
    }

    /// Serves the ruma endpoint `R`, parsed (and its signature checked) as
    /// any other, answered by the handler's own response, whose body may
    /// be a stream: for files too large to hold whole.
    pub fn route_streamed<R, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: RouteAuth,
        F: Fn(RequestContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::Response<ResponseBody>, MatrixError>> + Send + 'static,
    {
        self.ruma_endpoint::<R, _, _>(handler)
    }

    /// Serves the ruma endpoint `R` with a named handler that takes the
    /// role's state, so `routes.rs` holds one line per endpoint:
    /// `router.handle(&api, push_rules::get_all)`.
    pub fn handle<S, R, F, Fut>(&mut self, state: &Arc<S>, handler: F) -> &mut Self
    where
        S: Send + Sync + 'static,
        R: IncomingRequest + Send + 'static,
        R::Authentication: RouteAuth,
        R::OutgoingResponse: Send,
        F: Fn(Arc<S>, RequestContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R::OutgoingResponse, MatrixError>> + Send + 'static,
    {
        let state = Arc::clone(state);
        self.route::<R, _, _>(move |context, request| handler(Arc::clone(&state), context, request))
    }

    /// Lets the routes of `R`, which ruma says take no access token, take
    /// one when it is sent: for endpoints a setting may close to guests
    /// (the handler then decides).
    pub fn accept_token<R: IncomingRequest>(&mut self) -> &mut Self {
        let paths: BTreeSet<&'static str> = R::PATH_BUILDER.all_paths().collect();
        for route in &mut self.routes {
            if route.method == R::METHOD
                && paths.contains(route.template)
                && route.auth == Auth::None
            {
                route.auth = Auth::Optional;
            }
        }
        self
    }

    /// Serves the ruma endpoint `R`, parsed by ruma, answered with JSON the
    /// handler builds (for responses full of raw events).
    pub fn route_json<R, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: RouteAuth,
        F: Fn(RequestContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, MatrixError>> + Send + 'static,
    {
        self.ruma_endpoint::<R, _, _>(move |context, request| {
            let body = handler(context, request);
            async move { Ok(whole(json_response(StatusCode::OK, &body.await?))) }
        })
    }

    /// Parses requests as `R` and registers every path ruma knows for it.
    fn ruma_endpoint<R, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        R: IncomingRequest + Send + 'static,
        R::Authentication: RouteAuth,
        F: Fn(RequestContext, R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::Response<ResponseBody>, MatrixError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let typed: Handler = Arc::new(move |context, request, args| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                let borrowed = http::Request::from_parts(parts, &body[..]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let parsed = parse_request::<R>(borrowed, &args)?;
                handler(context, parsed).await
            })
        });
        let paths: BTreeSet<&'static str> = R::PATH_BUILDER.all_paths().collect();
        for template in paths {
            self.add(
                R::METHOD,
                template,
                R::Authentication::AUTH,
                true,
                RouteHandler::Whole(Arc::clone(&typed)),
            );
        }
        self
    }

    /// Serves an endpoint that ruma does not model; the handler gets the
    /// request and the decoded path arguments and returns JSON.
    pub fn raw<F, Fut>(
        &mut self,
        method: Method,
        template: &'static str,
        requires_auth: bool,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(RequestContext, http::Request<Bytes>, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::Response<Bytes>, MatrixError>> + Send + 'static,
    {
        let raw: Handler = Arc::new(move |context, request, args| {
            let answer = handler(context, request, args);
            Box::pin(async move { Ok(whole(answer.await?)) })
        });
        self.add_raw(method, template, requires_auth, RouteHandler::Whole(raw))
    }

    /// Like [`Router::raw`], for bodies too large to hold whole: the handler
    /// reads the body as it arrives and may answer with a stream.
    pub fn streamed<F, Fut>(
        &mut self,
        method: Method,
        template: &'static str,
        requires_auth: bool,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(RequestContext, http::Request<BodyStream>, Vec<String>) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = Result<http::Response<ResponseBody>, MatrixError>> + Send + 'static,
    {
        let streamed: StreamHandler =
            Arc::new(move |context, request, args| Box::pin(handler(context, request, args)));
        self.add_raw(
            method,
            template,
            requires_auth,
            RouteHandler::Streamed(streamed),
        )
    }

    /// A route ruma does not model: no JSON checks, a token or none.
    fn add_raw(
        &mut self,
        method: Method,
        template: &'static str,
        requires_auth: bool,
        handler: RouteHandler,
    ) -> &mut Self {
        let auth = if requires_auth {
            Auth::Required
        } else {
            Auth::None
        };
        self.add(method, template, auth, false, handler);
        self
    }

    /// Answers requests whose path no route serves (a proxy): the raw
    /// request goes in as it arrives, without authentication or body
    /// checks. Without a fallback such requests get 404 `M_UNRECOGNIZED`; a
    /// path some route serves with another method still gets 405.
    pub fn fallback<F, Fut>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(RequestContext, http::Request<BodyStream>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::Response<ResponseBody>, MatrixError>> + Send + 'static,
    {
        self.fallback = Some(Arc::new(move |context, request| {
            Box::pin(handler(context, request))
        }));
        self
    }

    /// Paths on which the fallback takes bodies up to the upload limit.
    pub fn fallback_upload_paths(&mut self, is_upload: fn(&str) -> bool) -> &mut Self {
        self.fallback_upload_paths = is_upload;
        self
    }

    pub fn set_body_limits(&mut self, limits: BodyLimits) -> &mut Self {
        self.body_limits = limits;
        self
    }

    fn add(
        &mut self,
        method: Method,
        template: &'static str,
        auth: Auth,
        json_body: bool,
        handler: RouteHandler,
    ) {
        self.routes.push(Route {
            method,
            template,
            segments: parse_template(template),
            auth,
            json_body,
            handler,
        });
        // Literal segments win over parameters: `/register/available` before `/register/{kind}`.
        self.routes.sort_by_key(|route| {
            route
                .segments
                .iter()
                .filter(|segment| segment.is_none())
                .count()
        });
    }

    /// Every `(method, template)` served, for the route-table check.
    pub fn templates(&self) -> Vec<(Method, &'static str)> {
        self.routes
            .iter()
            .map(|route| (route.method.clone(), route.template))
            .collect()
    }

    /// Merges another role's routes into this one (the single process);
    /// this router's fallback, if set, wins over the other's.
    pub fn merge(&mut self, other: Router) {
        self.routes.extend(other.routes);
        if self.fallback.is_none() {
            self.fallback = other.fallback;
            self.fallback_upload_paths = other.fallback_upload_paths;
        }
        if self.server_verifier.is_none() {
            self.server_verifier = other.server_verifier;
        }
        self.routes.sort_by_key(|route| {
            route
                .segments
                .iter()
                .filter(|segment| segment.is_none())
                .count()
        });
    }

    /// Whether some route serves this path with any method.
    pub fn knows_path(&self, path: &str) -> bool {
        self.routes
            .iter()
            .any(|route| match_path(&route.segments, path).is_some())
    }

    /// [`Router::serve`] for a request whose body is already whole,
    /// answered whole (tests, and callers inside the process).
    pub async fn dispatch(
        &self,
        context: RequestContext,
        request: http::Request<Bytes>,
    ) -> http::Response<Bytes> {
        let (parts, body) = self
            .serve(context, request.map(body_stream))
            .await
            .into_parts();
        match body.collect().await {
            Ok(body) => http::Response::from_parts(parts, body),
            Err(error) => {
                MatrixError::internal(format!("cannot read the response: {error}")).into_response()
            }
        }
    }

    /// Finds the handler, authenticates, runs it; never panics and never
    /// answers with anything but a response (errors become Matrix errors).
    pub async fn serve(
        &self,
        mut context: RequestContext,
        request: http::Request<BodyStream>,
    ) -> http::Response<ResponseBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut path_known = false;
        let mut chosen = None;
        for route in &self.routes {
            if let Some(args) = match_path(&route.segments, &path) {
                path_known = true;
                let same_method = route.method == method
                    || (route.method == Method::GET && method == Method::HEAD);
                if same_method {
                    chosen = Some((route, args));
                    break;
                }
            }
        }
        let Some((route, args)) = chosen else {
            if path_known {
                return whole(MatrixError::method_not_allowed().into_response());
            }
            let Some(fallback) = &self.fallback else {
                return whole(MatrixError::unrecognized("Unrecognized request").into_response());
            };
            let limit = if (self.fallback_upload_paths)(&path) {
                self.body_limits.upload
            } else {
                self.body_limits.api
            };
            return match limit_body(request, limit) {
                Ok(request) => self.run_fallback(fallback, context, request).await,
                Err(error) => whole(error.into_response()),
            };
        };
        let limit = match route.handler {
            RouteHandler::Streamed(_) => self.body_limits.upload,
            RouteHandler::Whole(_) => self.body_limits.api,
        };
        let request = match limit_body(request, limit) {
            Ok(request) => request,
            Err(error) => return whole(error.into_response()),
        };
        // PostgreSQL text cannot hold a NUL and SQLite can: refused here, an
        // identifier named in a path reaches neither engine with one.
        if args.iter().any(|arg| arg.contains('\0')) {
            return whole(
                MatrixError::invalid_param("Path parameters must not contain NUL characters")
                    .into_response(),
            );
        }
        let timer = self.metrics.as_ref().map(|m| {
            m.latency
                .with_label_values(&[method.as_str(), route.template])
                .start_timer()
        });
        // Only the head is borrowed across the lookup: the body stream
        // cannot be shared between threads.
        let (parts, body) = request.into_parts();
        let response = match self.authenticate(&mut context, &parts, route.auth).await {
            Ok(()) => match AssertUnwindSafe(run_route(
                route,
                self.server_verifier.as_deref(),
                context,
                http::Request::from_parts(parts, body),
                args,
            ))
            .catch_unwind()
            .await
            {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => whole(error.into_response()),
                Err(_) => {
                    tracing::error!(route = route.template, "handler panicked");
                    whole(
                        MatrixError::internal("The server hit a bug handling this request")
                            .into_response(),
                    )
                }
            },
            Err(error) => whole(error.into_response()),
        };
        drop(timer);
        if let Some(metrics) = &self.metrics {
            metrics
                .requests
                .with_label_values(&[method.as_str(), route.template, response.status().as_str()])
                .inc();
        }
        response
    }

    async fn run_fallback(
        &self,
        fallback: &Fallback,
        context: RequestContext,
        request: http::Request<BodyStream>,
    ) -> http::Response<ResponseBody> {
        let method = request.method().clone();
        let timer = self.metrics.as_ref().map(|m| {
            m.latency
                .with_label_values(&[method.as_str(), FALLBACK_ROUTE])
                .start_timer()
        });
        let response = match AssertUnwindSafe(fallback(context, request))
            .catch_unwind()
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => whole(error.into_response()),
            Err(_) => {
                tracing::error!("fallback handler panicked");
                whole(
                    MatrixError::internal("The server hit a bug handling this request")
                        .into_response(),
                )
            }
        };
        drop(timer);
        if let Some(metrics) = &self.metrics {
            metrics
                .requests
                .with_label_values(&[method.as_str(), FALLBACK_ROUTE, response.status().as_str()])
                .inc();
        }
        response
    }

    async fn authenticate(
        &self,
        context: &mut RequestContext,
        request: &http::request::Parts,
        auth: Auth,
    ) -> Result<(), MatrixError> {
        // Signatures are checked with the body, in `run_route`.
        if matches!(auth, Auth::None | Auth::Server) {
            return Ok(());
        }
        let Some(token) = access_token(request) else {
            return if auth == Auth::Required {
                Err(MatrixError::missing_token())
            } else {
                Ok(())
            };
        };
        let owner = self
            .device_store
            .token_owner(&token)
            .await?
            .ok_or_else(MatrixError::unknown_token)?;
        context.user = Some(owner);
        context.access_token = Some(token);
        Ok(())
    }
}

/// Refuses a request whose declared length passes `limit` before reading
/// any of its body, and cuts off a body that passes it without declaring.
fn limit_body(
    request: http::Request<BodyStream>,
    limit: u64,
) -> Result<http::Request<BodyStream>, MatrixError> {
    let too_large = || MatrixError::too_large(format!("Request body is larger than {limit} bytes"));
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        let (parts, body) = request.into_parts();
        let client_waits_for_us = parts
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !client_waits_for_us {
            drain_refused_body(body);
        }
        return Err(too_large());
    }
    Ok(request.map(|body| limited(body, limit)))
}

/// How much of a refused body is read and dropped, and for how long, after
/// the answer: closing at once would reset a proxy that is still sending
/// the body, and some (traefik) then answer 502 instead of passing on 413.
const REFUSED_BODY_DRAIN_BYTES: u64 = 8 * 1024 * 1024;
const REFUSED_BODY_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

fn drain_refused_body(mut body: BodyStream) {
    use futures::StreamExt;
    tokio::spawn(async move {
        let drain = async {
            let mut drained = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                drained = drained.saturating_add(chunk.len() as u64);
                if drained > REFUSED_BODY_DRAIN_BYTES {
                    return;
                }
            }
        };
        // Memory stays flat: every chunk is dropped as it arrives.
        let _ = tokio::time::timeout(REFUSED_BODY_DRAIN_TIME, drain).await;
    });
}

fn whole(response: http::Response<Bytes>) -> http::Response<ResponseBody> {
    response.map(ResponseBody::Full)
}

/// Runs an authenticated request through its route: whole routes get the
/// body read first (and checked, for JSON ones).
async fn run_route(
    route: &Route,
    server_verifier: Option<&dyn ServerRequestVerifier>,
    mut context: RequestContext,
    request: http::Request<BodyStream>,
    args: Vec<String>,
) -> Result<http::Response<ResponseBody>, MatrixError> {
    match &route.handler {
        // Streamed routes take tokens only (`add_raw`): a signature covers
        // the body, which they do not hold.
        RouteHandler::Streamed(handler) => handler(context, request, args).await,
        RouteHandler::Whole(handler) => {
            let (parts, body) = request.into_parts();
            let body = read_to_end(body).await?;
            let request = http::Request::from_parts(parts, body);
            if route.auth == Auth::Server {
                let verifier = server_verifier.ok_or_else(|| {
                    MatrixError::unauthorized("This listener does not serve federation")
                })?;
                context.origin = Some(verifier.verify(&request).await?);
            }
            let request = prepare_json_body(route.json_body, request)?;
            handler(context, request, args).await
        }
    }
}

/// Parses with ruma, after the checks for bodies known to panic its
/// parsers; a panic that still happens becomes a Matrix error instead of a
/// dropped connection.
fn parse_request<R: IncomingRequest + 'static>(
    request: http::Request<&[u8]>,
    args: &[&str],
) -> Result<R, MatrixError> {
    crate::parser_guards::check_body::<R>(request.body())?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        R::try_from_http_request(request, args)
    })) {
        Ok(parsed) => Ok(parsed?),
        Err(_) => Err(MatrixError::bad_json(
            "The request body could not be parsed",
        )),
    }
}

fn into_http_response<T: OutgoingResponse>(
    response: T,
) -> Result<http::Response<Bytes>, MatrixError> {
    let response = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|error| MatrixError::internal(format!("cannot encode the response: {error}")))?;
    Ok(response.map(Bytes::from))
}

/// Checks a JSON body before ruma parses it: too deep, or JSON but no object
/// (every Matrix request body is one; serde would read an array into a
/// struct field by field) is `M_BAD_JSON`, not JSON at all is `M_NOT_JSON`
/// (whatever the content type claims), and an empty `POST`/`PUT` body reads
/// as `{}`, since clients leave it out where every field is optional.
fn prepare_json_body(
    json_body: bool,
    request: http::Request<Bytes>,
) -> Result<http::Request<Bytes>, MatrixError> {
    let is_write = matches!(*request.method(), Method::POST | Method::PUT);
    if !json_body || !is_write {
        return Ok(request);
    }
    if request.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(request.map(|_| Bytes::from_static(b"{}")));
    }
    crate::check_json_depth(request.body()).map_err(MatrixError::bad_json)?;
    let raw = serde_json::from_slice::<&serde_json::value::RawValue>(request.body())
        .map_err(|error| MatrixError::not_json(format!("Content not JSON: {error}")))?;
    if !raw.get().starts_with('{') {
        return Err(MatrixError::bad_json("Content must be a JSON object"));
    }
    Ok(request)
}

/// `Authorization: Bearer <token>` or the `access_token` query parameter.
fn access_token(request: &http::request::Parts) -> Option<String> {
    if let Some(header) = request
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = header.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    request.uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("access_token=")?;
        percent_decode(value)
    })
}

fn match_path(segments: &[Option<&'static str>], path: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut parts = path.trim_start_matches('/').split('/');
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Some(literal) if *literal == part => {}
            Some(_) => return None,
            None => args.push(percent_decode(part)?),
        }
    }
    parts.next().is_none().then_some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates_and_decode_arguments() {
        let segments =
            parse_template("/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}");
        let args = match_path(
            &segments,
            "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/t1",
        )
        .expect("match");
        assert_eq!(args, vec!["!r:hs", "m.room.message", "t1"]);
        assert!(match_path(&segments, "/_matrix/client/v3/rooms/x/send/y").is_none());
        assert!(match_path(&segments, "/_matrix/client/v3/rooms/x/send/y/z/extra").is_none());
    }

    #[test]
    fn tokens_come_from_header_or_query() {
        let with_header = http::Request::builder()
            .uri("/x")
            .header("authorization", "Bearer abc")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(
            access_token(&with_header.into_parts().0).as_deref(),
            Some("abc")
        );
        let with_query = http::Request::builder()
            .uri("/x?a=1&access_token=d%2Be")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(
            access_token(&with_query.into_parts().0).as_deref(),
            Some("d+e")
        );
    }

    /// A device store that knows no tokens (the routes here take none).
    struct NoDevices;

    type StoreFuture<'a, T> =
        std::pin::Pin<Box<dyn Future<Output = myelin_store::StoreResult<T>> + Send + 'a>>;

    impl DeviceStore for NoDevices {
        fn add_device_token<'s, 'u, 'd, 'n, 't, 'a>(
            &'s self,
            _: &'u str,
            _: &'d str,
            _: Option<&'n str>,
            _: &'t str,
        ) -> StoreFuture<'a, ()>
        where
            's: 'a,
            'u: 'a,
            'd: 'a,
            'n: 'a,
            't: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(()) })
        }
        fn token_owner<'s, 't, 'a>(&'s self, _: &'t str) -> StoreFuture<'a, Option<TokenOwner>>
        where
            's: 'a,
            't: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(None) })
        }
        fn devices<'s, 'u, 'a>(&'s self, _: &'u str) -> StoreFuture<'a, Vec<myelin_store::Device>>
        where
            's: 'a,
            'u: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn device<'s, 'u, 'd, 'a>(
            &'s self,
            _: &'u str,
            _: &'d str,
        ) -> StoreFuture<'a, Option<myelin_store::Device>>
        where
            's: 'a,
            'u: 'a,
            'd: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(None) })
        }
        fn rename_device<'s, 'u, 'd, 'n, 'a>(
            &'s self,
            _: &'u str,
            _: &'d str,
            _: Option<&'n str>,
        ) -> StoreFuture<'a, ()>
        where
            's: 'a,
            'u: 'a,
            'd: 'a,
            'n: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(()) })
        }
        fn delete_devices<'s, 'u, 'd, 'a>(
            &'s self,
            _: &'u str,
            _: &'d [String],
        ) -> StoreFuture<'a, ()>
        where
            's: 'a,
            'u: 'a,
            'd: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(()) })
        }
        fn delete_token<'s, 't, 'a>(&'s self, _: &'t str) -> StoreFuture<'a, ()>
        where
            's: 'a,
            't: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(()) })
        }
        fn delete_other_devices<'s, 'u, 'k, 'a>(
            &'s self,
            _: &'u str,
            _: Option<&'k str>,
        ) -> StoreFuture<'a, ()>
        where
            's: 'a,
            'u: 'a,
            'k: 'a,
            Self: 'a,
        {
            Box::pin(async { Ok(()) })
        }
    }

    fn request(method: Method, uri: &str) -> http::Request<Bytes> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Bytes::from_static(b"not json"))
            .expect("request")
    }

    fn router_with_ping() -> Router {
        let mut router = Router::new(Arc::new(NoDevices), None);
        router.raw(Method::GET, "/ping", false, |_, _, _| async {
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"pong": true}),
            ))
        });
        router
    }

    #[test]
    fn json_bodies_must_be_objects() {
        let body = |method: Method, text: &'static str| {
            let request = http::Request::builder()
                .method(method)
                .uri("/x")
                .body(Bytes::from_static(text.as_bytes()))
                .expect("request");
            prepare_json_body(true, request).map(|request| request.into_body())
        };
        for good in [r#"{"admin":true}"#, r#"  {} "#] {
            assert_eq!(body(Method::PUT, good).expect(good), good.as_bytes());
        }
        assert_eq!(&body(Method::POST, " \n").expect("empty")[..], b"{}");
        for (bad, errcode) in [
            ("[true]", "M_BAD_JSON"),
            ("true", "M_BAD_JSON"),
            ("null", "M_BAD_JSON"),
            ("1", "M_BAD_JSON"),
            (r#""{}""#, "M_BAD_JSON"),
            ("not json", "M_NOT_JSON"),
            ("{", "M_NOT_JSON"),
        ] {
            let error = body(Method::PUT, bad).expect_err(bad);
            assert_eq!(
                (error.status, &*error.errcode),
                (StatusCode::BAD_REQUEST, errcode),
                "{bad}"
            );
        }
        // Reads carry no body to check.
        assert!(body(Method::GET, "[1]").is_ok());
    }

    /// Accepts the one signature `X-Matrix origin="peer.example",sig="good"`
    /// over a body that must be `{"signed":true}` when there is one.
    struct OneSignature;

    impl ServerRequestVerifier for OneSignature {
        fn verify<'a>(
            &'a self,
            request: &'a http::Request<Bytes>,
        ) -> BoxFuture<'a, Result<OwnedServerName, MatrixError>> {
            Box::pin(async move {
                let header = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                let body_ok =
                    request.body().is_empty() || &request.body()[..] == b"{\"signed\":true}";
                if header == Some(r#"X-Matrix origin="peer.example",sig="good""#) && body_ok {
                    Ok(OwnedServerName::try_from("peer.example").expect("server name"))
                } else {
                    Err(MatrixError::unauthorized("bad signature"))
                }
            })
        }
    }

    /// A federation endpoint that answers with the verified origin.
    fn router_with_profile_query() -> Router {
        use ruma::api::federation::query::get_profile_information::v1 as profile;
        let mut router = Router::new(Arc::new(NoDevices), None);
        router.route(|context: RequestContext, _: profile::Request| async move {
            let mut response = profile::Response::new();
            response.set(
                "displayname".to_owned(),
                context.origin()?.to_string().into(),
            );
            Ok(response)
        });
        router
    }

    #[tokio::test]
    async fn federation_routes_need_a_verified_signature() {
        let uri = "/_matrix/federation/v1/query/profile?user_id=%40a%3Ahere";
        let signed = |signature: &str| {
            http::Request::builder()
                .uri(uri)
                .header("authorization", signature)
                .body(Bytes::new())
                .expect("request")
        };
        let good = r#"X-Matrix origin="peer.example",sig="good""#;

        // Without a verifier even a good signature is refused.
        let closed = router_with_profile_query()
            .dispatch(RequestContext::default(), signed(good))
            .await;
        assert_eq!(closed.status(), StatusCode::UNAUTHORIZED);
        assert!(String::from_utf8_lossy(closed.body()).contains("M_UNAUTHORIZED"));

        let mut router = router_with_profile_query();
        router.set_server_verifier(Arc::new(OneSignature));
        for refused in [
            "",
            "Bearer token",
            r#"X-Matrix origin="peer.example",sig="bad""#,
        ] {
            let answer = router
                .dispatch(RequestContext::default(), signed(refused))
                .await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{refused}");
        }
        let accepted = router
            .dispatch(RequestContext::default(), signed(good))
            .await;
        assert_eq!(accepted.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(accepted.body()).expect("json");
        assert_eq!(body["displayname"], "peer.example");
    }

    #[tokio::test]
    async fn unmatched_requests_go_to_the_fallback_when_set() {
        let router = router_with_ping();
        let unmatched = router
            .dispatch(
                RequestContext::default(),
                request(Method::POST, "/elsewhere"),
            )
            .await;
        assert_eq!(unmatched.status(), StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(unmatched.body()).contains("M_UNRECOGNIZED"));

        let mut router = router_with_ping();
        router.fallback(|context, request| async move {
            let (parts, body) = request.into_parts();
            let body = read_to_end(body).await?;
            let text = format!(
                "{} {} {} {}",
                parts.method,
                parts.uri,
                context.request_id,
                String::from_utf8_lossy(&body)
            );
            let mut response = http::Response::new(ResponseBody::from(Bytes::from(text)));
            *response.status_mut() = StatusCode::ACCEPTED;
            Ok(response)
        });
        let context = RequestContext {
            request_id: "r1".to_owned(),
            ..RequestContext::default()
        };
        let proxied = router
            .dispatch(context, request(Method::POST, "/elsewhere?a=b"))
            .await;
        assert_eq!(proxied.status(), StatusCode::ACCEPTED);
        assert_eq!(&proxied.body()[..], b"POST /elsewhere?a=b r1 not json");

        let routed = router
            .dispatch(RequestContext::default(), request(Method::GET, "/ping"))
            .await;
        assert_eq!(routed.status(), StatusCode::OK);
        let wrong_method = router
            .dispatch(RequestContext::default(), request(Method::DELETE, "/ping"))
            .await;
        assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn fallback_errors_and_panics_become_matrix_errors() {
        let mut router = router_with_ping();
        router.fallback(|_, request| async move {
            if request.uri().path() == "/boom" {
                panic!("boom");
            }
            Err(MatrixError::unavailable("nothing there"))
        });
        let failed = router
            .dispatch(RequestContext::default(), request(Method::GET, "/other"))
            .await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let panicked = router
            .dispatch(RequestContext::default(), request(Method::GET, "/boom"))
            .await;
        assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A request whose body never arrives: any attempt to read it hangs.
    fn unsent_body(method: Method, uri: &str, declared: u64) -> http::Request<BodyStream> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_LENGTH, declared)
            .body(futures::StreamExt::boxed(futures::stream::pending()))
            .expect("request")
    }

    fn router_with_limits() -> Router {
        let mut router = router_with_ping();
        router.set_body_limits(BodyLimits {
            api: 100,
            upload: 1000,
        });
        router.raw(Method::POST, "/json", false, |_, request, _| async move {
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"bytes": request.body().len()}),
            ))
        });
        router.streamed(Method::POST, "/upload", false, |_, request, _| async move {
            let body = read_to_end(request.into_body()).await?;
            let text = format!("{}", body.len());
            Ok(http::Response::new(ResponseBody::from(Bytes::from(text))))
        });
        router.fallback(|_, request| async move {
            let body = read_to_end(request.into_body()).await?;
            let text = format!("{}", body.len());
            Ok(http::Response::new(ResponseBody::from(Bytes::from(text))))
        });
        router.fallback_upload_paths(|path| path.starts_with("/media/"));
        router
    }

    #[tokio::test]
    async fn declared_lengths_over_the_route_limit_are_refused_unread() {
        let router = router_with_limits();
        for (uri, declared) in [
            ("/json", 101),
            ("/upload", 1001),
            ("/elsewhere", 101),
            ("/media/up", 1001),
        ] {
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                router.serve(
                    RequestContext::default(),
                    unsent_body(Method::POST, uri, declared),
                ),
            )
            .await
            .unwrap_or_else(|_| panic!("{uri}: the body was waited for"));
            assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
        }
    }

    #[tokio::test]
    async fn each_route_kind_takes_bodies_up_to_its_own_limit() {
        let router = router_with_limits();
        let send = |uri: &'static str, size: usize| {
            let request = http::Request::builder()
                .method(Method::POST)
                .uri(uri)
                .body(Bytes::from(vec![b' '; size]))
                .expect("request");
            router.dispatch(RequestContext::default(), request)
        };
        // Without a declared length the body is cut off where it passes.
        assert_eq!(send("/json", 100).await.status(), StatusCode::OK);
        assert_eq!(
            send("/json", 101).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(send("/upload", 1000).await.status(), StatusCode::OK);
        assert_eq!(
            send("/upload", 1001).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            send("/elsewhere", 500).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(&send("/media/up", 500).await.body()[..], b"500");
    }
}
