//! HTTP glue shared by every role: the Matrix error type, the router that
//! dispatches to handlers typed with ruma's request and response types,
//! access-token authentication, rate limits, CORS and the warp server.
//!
//! Invariant: the only shared crate that knows warp. Every error a client
//! sees is a [`MatrixError`]; store and bus errors become one in exactly one
//! place ([`error`]).

pub mod body;
mod body_pace;
mod connections;
pub mod error;
mod forwarded;
mod json_limits;
mod listener;
pub mod outbound;
mod parser_guards;
pub mod ratelimit;
mod router;
mod server;
mod tls;

pub use body::{BodyStream, ResponseBody};
pub use body_pace::BodyPace;
pub use connections::{ConnectionGate, ConnectionMetrics, max_connections, open_file_limit};
pub use error::MatrixError;
pub use forwarded::ProxyTrust;
pub use json_limits::check_json_depth;
pub use listener::{HEADER_READ_TIMEOUT, serve};
pub use ratelimit::RateLimiter;
pub use router::{
    Auth, BodyLimits, HttpMetrics, RequestContext, RouteAuth, Router, ServerRequestVerifier,
    json_response,
};
pub use server::ServeOptions;
pub use tls::{TlsSetupError, tls_acceptor};
pub use tokio_rustls::TlsAcceptor;
