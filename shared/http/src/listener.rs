//! The accept loop: plain TCP or TLS connections, each served by hyper's
//! HTTP/1.1 + HTTP/2 connection builder around the edge filter, with
//! graceful draining. (warp's own server cannot take a TLS acceptor.)

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Router;
use crate::server::{PeerAddr, ServeOptions, edge_filter};

/// A client that opens a connection gets this long to finish the handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and this long to send a request's headers (also between requests
/// on a kept-alive HTTP/1.1 connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// An HTTP/2 peer is pinged this often and dropped when a ping goes
/// unanswered this long.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` (through `tls` when given) until `shutdown`
/// resolves; connections in flight then finish before this returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Arc<Router>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let filter = edge_filter(router, options.clone());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    pause_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let exempt = options.proxy_trust.trusts(peer.ip());
        let permit = match options.connections.admit(peer.ip().to_canonical(), exempt) {
            Ok(permit) => permit,
            Err(refusal) => {
                // Closed unread: answering would cost what the cap saves.
                tracing::debug!(%peer, ?refusal, "connection refused over a cap");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = warp::service(filter.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // The filter reads the peer from the request's extensions, so
            // plain and TLS connections report it the same way.
            let service =
                hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    tower_service::Service::call(&mut service.clone(), request)
                });
            match tls {
                None => serve_connection(stream, service, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => serve_connection(stream, service, watcher, peer).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve_connection<IO, S>(io: IO, service: S, watcher: Watcher, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper has no timeouts: a client that opens a
    // connection and sends nothing would hold it until shutdown.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Errors of one connection (reset before accept) need nothing; running out
/// of file descriptors does: back off instead of spinning.
async fn pause_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection; pausing");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
