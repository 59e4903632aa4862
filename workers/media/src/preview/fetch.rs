//! Fetching what a user asks to preview, without letting them reach this
//! server's own network: every address a name resolves to, every address
//! in a URL and every redirect is checked against the configured ranges.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use myelin_http::outbound::{AddressPolicy, PolicyResolver};
use reqwest::Url;

/// Redirects followed for one fetch.
const MAX_REDIRECTS: usize = 5;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a fetch gave nothing to preview.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The URL, or every address it leads to, is outside the policy.
    Blocked,
    TooLarge,
    Failed(String),
}

/// A fetched body and what the server said it is.
pub(crate) struct Fetched {
    pub(crate) url: Url,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// The HTTP client of previews.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
}

impl Fetcher {
    pub(crate) fn new(
        policy: AddressPolicy,
        max_bytes: u64,
        accept_language: &[String],
    ) -> reqwest::Result<Fetcher> {
        let policy = Arc::new(policy);
        let redirects = Arc::clone(&policy);
        let mut headers = reqwest::header::HeaderMap::new();
        let languages = if accept_language.is_empty() {
            "en".to_owned()
        } else {
            accept_language.join(", ")
        };
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&languages) {
            headers.insert(reqwest::header::ACCEPT_LANGUAGE, value);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("Myelin URL preview")
            .default_headers(headers)
            .timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(&policy))))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if redirects.permits_url(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirected outside the allowed addresses")
                }
            }))
            .build()?;
        Ok(Fetcher {
            client,
            policy,
            max_bytes,
        })
    }

    /// GETs `url` and reads at most the size limit of it.
    pub(crate) async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        if !self.policy.permits_url(url) {
            return Err(FetchError::Blocked);
        }
        if let Some(url::Host::Domain(name)) = url.host() {
            // Answer "blocked" rather than a vague failure when the name
            // itself leads nowhere allowed; the resolver checks again at
            // connect time, whatever the name resolves to then.
            let port = url.port_or_known_default().unwrap_or(80);
            let addresses = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| FetchError::Failed(format!("cannot resolve {name}: {error}")))?;
            if !addresses
                .into_iter()
                .any(|addr| self.policy.permits(addr.ip()))
            {
                return Err(FetchError::Blocked);
            }
        }
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| FetchError::Failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!(
                "the server answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes)
        {
            return Err(FetchError::TooLarge);
        }
        let url = response.url().clone();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| FetchError::Failed(error.to_string()))?;
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url,
            content_type,
            body: body.freeze(),
        })
    }
}
