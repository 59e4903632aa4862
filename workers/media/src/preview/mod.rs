//! URL previews: the OpenGraph description of a page (or an image) a user
//! is about to share, with its image kept as media of this server so
//! clients never fetch from the page's site themselves.

mod fetch;
mod opengraph;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use myelin_config::Config;
use myelin_http::MatrixError;
use reqwest::Url;
use serde_json::{Map, Value};

pub(crate) use fetch::{FetchError, Fetcher};
pub(crate) use myelin_http::outbound::AddressPolicy;

use crate::Media;
use crate::headers::essence;

/// How long a preview is answered from memory.
const CACHE_TTL: Duration = Duration::from_secs(60 * 60);
/// Previews kept per replica.
const CACHE_ENTRIES: usize = 1024;

/// Previews, when the config turns them on.
pub(crate) struct Previews {
    fetcher: Fetcher,
    cache: Mutex<HashMap<String, Remembered>>,
}

/// A preview and when it was made.
type Remembered = (Instant, Map<String, Value>);

impl Previews {
    /// `None` when `url_preview_enabled` is off.
    pub(crate) fn from_config(config: &Config) -> Option<Previews> {
        if !config.url_preview_enabled {
            return None;
        }
        let policy = AddressPolicy::new(
            config.url_preview_ip_range_blacklist.as_deref(),
            &config.url_preview_ip_range_whitelist,
        );
        match Fetcher::new(
            policy,
            config.max_spider_bytes(),
            &config.url_preview_accept_language,
        ) {
            Ok(fetcher) => Some(Previews {
                fetcher,
                cache: Mutex::new(HashMap::new()),
            }),
            Err(error) => {
                tracing::error!(%error, "cannot build the URL preview client; previews are off");
                None
            }
        }
    }

    fn cached(&self, url: &str) -> Option<Map<String, Value>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(url)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, preview)| preview.clone())
    }

    fn remember(&self, url: &str, preview: &Map<String, Value>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        if cache.len() >= CACHE_ENTRIES {
            // Still full of fresh entries: start over rather than grow.
            cache.clear();
        }
        cache.insert(url.to_owned(), (Instant::now(), preview.clone()));
    }
}

impl Media {
    /// The preview of `url` for `user`.
    pub(crate) async fn preview(
        &self,
        previews: &Previews,
        url: &str,
        user: &str,
    ) -> Result<Map<String, Value>, MatrixError> {
        let parsed = Url::parse(url)
            .ok()
            .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
            .ok_or_else(|| {
                MatrixError::new(
                    http::StatusCode::BAD_REQUEST,
                    "M_INVALID_PARAM",
                    "url must be an http or https URL",
                )
            })?;
        if let Some(preview) = previews.cached(url) {
            return Ok(preview);
        }
        let page = previews
            .fetcher
            .fetch(&parsed)
            .await
            .map_err(fetch_refusal)?;
        let page_type = page
            .content_type
            .as_deref()
            .map(essence)
            .unwrap_or_default();
        let preview = if page_type.starts_with("image/") {
            self.image_fields(&page_type, page.body, user).await?
        } else if page_type == "text/html" || page_type == "application/xhtml+xml" {
            let html = String::from_utf8_lossy(&page.body);
            let mut found = opengraph::opengraph(&html, &page.url);
            if let Some(image) = found.remove("og:image") {
                found.extend(self.page_image(previews, &image, user).await);
            }
            found
        } else {
            Map::new()
        };
        previews.remember(url, &preview);
        Ok(preview)
    }

    /// The page's image kept as local media; nothing when it cannot be.
    async fn page_image(
        &self,
        previews: &Previews,
        image: &Value,
        user: &str,
    ) -> Map<String, Value> {
        let Some(url) = image.as_str().and_then(|url| Url::parse(url).ok()) else {
            return Map::new();
        };
        let fetched = match previews.fetcher.fetch(&url).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::debug!(%url, ?error, "cannot fetch a preview image");
                return Map::new();
            }
        };
        let image_type = fetched
            .content_type
            .as_deref()
            .map(essence)
            .unwrap_or_default();
        if !image_type.starts_with("image/") {
            return Map::new();
        }
        self.image_fields(&image_type, fetched.body, user)
            .await
            .unwrap_or_default()
    }

    /// Stores an image as media of `user` and describes it the way
    /// previews do: `og:image` (its `mxc://` URI), type, size, dimensions.
    async fn image_fields(
        &self,
        content_type: &str,
        bytes: bytes::Bytes,
        user: &str,
    ) -> Result<Map<String, Value>, MatrixError> {
        let dimensions = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
            .with_guessed_format()
            .ok()
            .and_then(|reader| reader.into_dimensions().ok());
        let stored = self
            .files
            .store(bytes)
            .await
            .map_err(crate::content::files_unavailable)?;
        let content = myelin_store::MediaContent {
            content_type: Some(content_type.to_owned()),
            upload_name: None,
            size: stored.size,
            sha256: stored.sha256,
        };
        let media_id = self.record_upload(user, &content).await?;
        let mut fields = Map::new();
        fields.insert("og:image".to_owned(), self.content_uri(&media_id).into());
        fields.insert("og:image:type".to_owned(), content_type.into());
        fields.insert("matrix:image:size".to_owned(), content.size.into());
        if let Some((width, height)) = dimensions {
            fields.insert("og:image:width".to_owned(), width.into());
            fields.insert("og:image:height".to_owned(), height.into());
        }
        Ok(fields)
    }
}

fn fetch_refusal(error: FetchError) -> MatrixError {
    match error {
        FetchError::Blocked => MatrixError::forbidden("Previews may not fetch from that address"),
        FetchError::TooLarge => MatrixError::too_large("The content is too large to preview"),
        FetchError::Failed(why) => {
            tracing::debug!(%why, "a URL preview fetch failed");
            MatrixError::new(
                http::StatusCode::BAD_GATEWAY,
                "M_UNKNOWN",
                "The content could not be fetched for a preview",
            )
        }
    }
}
