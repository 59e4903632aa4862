//! The HTTP side: one notification to one push gateway, as the Push Gateway
//! API's typed request, to an address the configured ranges allow.

use std::sync::Arc;
use std::time::Duration;

use myelin_http::outbound::{AddressPolicy, BodyReadError, PolicyResolver, read_limited};
use ruma::api::push_gateway::send_event_notification::v1 as notify;
use ruma::api::{IncomingResponseExt, OutgoingRequestExt};

/// A gateway that answers slower than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a gateway's answer that is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a notification did not reach its gateway.
#[derive(Debug)]
pub(crate) struct DeliveryFailed(pub(crate) String);

impl std::fmt::Display for DeliveryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Gateways {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Gateways {
    pub(crate) fn new(policy: AddressPolicy) -> reqwest::Result<Gateways> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("Myelin pusher")
            .timeout(REQUEST_TIMEOUT)
            .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(&policy))))
            // A redirect could lead anywhere; gateways answer directly.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Gateways { client, policy })
    }

    /// Sends the notification to the gateway at `url` (which ends in the
    /// notify path) and returns the pushkeys it rejected.
    pub(crate) async fn send(
        &self,
        url: &str,
        notification: notify::Notification,
    ) -> Result<Vec<String>, DeliveryFailed> {
        let parsed =
            url::Url::parse(url).map_err(|_| DeliveryFailed(format!("{url} is not a URL")))?;
        if !self.policy.permits_url(&parsed) {
            return Err(DeliveryFailed(format!(
                "{url} is in a range this server sends nothing to"
            )));
        }
        // The typed request adds the notify path to the gateway's base.
        let base = parsed[..url::Position::BeforePath].to_owned();
        let request = notify::Request::new(notification)
            .try_into_http_request::<Vec<u8>>(&base, (), ())
            .map_err(|error| DeliveryFailed(format!("cannot build the request: {error}")))?;
        let request = reqwest::Request::try_from(request)
            .map_err(|error| DeliveryFailed(format!("cannot build the request: {error}")))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|error| DeliveryFailed(format!("{url}: {error}")))?;
        let status = response.status();
        let body = read_limited(&mut response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|error| match error {
                BodyReadError::TooLarge => DeliveryFailed(format!("{url} answered too much")),
                BodyReadError::Transport(error) => DeliveryFailed(format!("{url}: {error}")),
            })?;
        if !status.is_success() {
            return Err(DeliveryFailed(format!("{url} answered {status}")));
        }
        let answer = http::Response::builder()
            .status(status)
            .body(body.as_slice())
            .map_err(|error| DeliveryFailed(error.to_string()))?;
        // A gateway that accepts without a readable body rejected nothing.
        Ok(notify::Response::try_from_http_response(answer)
            .map(|response| response.rejected)
            .unwrap_or_default())
    }
}
