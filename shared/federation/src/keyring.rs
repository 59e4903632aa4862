//! Other servers' verify keys: from memory, then the store, then fetched
//! from the server itself and, failing that, from the configured notaries.
//! A fetched document is checked before anything in it is used or kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use myelin_config::{Config, TrustedKeyServer};
use myelin_room::ServerKey;
use myelin_store::{ServerKeyDocument, ServerKeyStore, ServerVerifyKey};
use ruma::api::federation::discovery::{get_remote_server_keys_batch, get_server_keys};
use ruma::{CanonicalJsonObject, OwnedServerName, ServerName};
use serde_json::Value;

use crate::client::{FederationClient, FederationError};
use crate::key_document::{MAX_KEY_VALIDITY_MS, check_key_document, signed_by};

/// Servers whose keys are held in memory at most; cleared when full.
const MAX_CACHED_SERVERS: usize = 10_000;
/// After a fetch, failed or not, a server's keys are not asked for again so
/// soon: a request naming a key the server does not have cannot make this
/// server fetch again and again.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// The longest a fetch may take, notaries included.
const FETCH_DEADLINE: Duration = Duration::from_secs(30);
/// The largest key document read from a server, and notary answer.
const MAX_KEY_DOCUMENT_BYTES: usize = 64 * 1024;
const MAX_NOTARY_ANSWER_BYTES: usize = 1024 * 1024;

/// Why no key could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoKey(pub String);

impl std::fmt::Display for NoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct KeyRing {
    own: Arc<ServerKey>,
    config: Arc<Config>,
    store: Arc<dyn ServerKeyStore>,
    client: Arc<FederationClient>,
    notaries: Vec<TrustedKeyServer>,
    cached: Mutex<HashMap<String, Vec<ServerVerifyKey>>>,
    /// One fetch per server at a time; the others wait for its result.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When each server's keys were last fetched.
    fetched: Mutex<HashMap<String, Instant>>,
}

impl KeyRing {
    pub fn new(
        own: Arc<ServerKey>,
        config: Arc<Config>,
        store: Arc<dyn ServerKeyStore>,
        client: Arc<FederationClient>,
    ) -> KeyRing {
        KeyRing {
            notaries: config.trusted_key_servers(),
            own,
            config,
            store,
            client,
            cached: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            fetched: Mutex::new(HashMap::new()),
        }
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        self.client.server_name()
    }

    /// The keys of `server` valid at `at` (ms), as key ID to unpadded
    /// base64; only `key_id` when one is named. Fetches when nothing known
    /// covers it.
    pub fn verify_keys<'a>(
        &'a self,
        server: &'a ServerName,
        key_id: Option<&'a str>,
        at: i64,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, NoKey>> {
        self.keys_of(server, key_id, at, true)
    }

    /// [`KeyRing::verify_keys`]; `via_notaries` false fetches from the
    /// server alone (for a notary's own keys, so no fetch waits on another).
    fn keys_of<'a>(
        &'a self,
        server: &'a ServerName,
        key_id: Option<&'a str>,
        at: i64,
        via_notaries: bool,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, NoKey>> {
        Box::pin(async move {
            if server == self.client.server_name() {
                return Ok(self.own_keys(key_id, at));
            }
            let usable = |keys: &[ServerVerifyKey]| -> BTreeMap<String, String> {
                keys.iter()
                    .filter(|key| key.valid_until_ts >= at)
                    .filter(|key| key_id.is_none_or(|wanted| wanted == key.key_id))
                    .map(|key| (key.key_id.clone(), key.public_key.clone()))
                    .collect()
            };
            if let Some(keys) = self.cached_keys(server.as_str()) {
                let found = usable(&keys);
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            let stored = self.stored_keys(server).await;
            let found = usable(&stored);
            if !found.is_empty() {
                return Ok(found);
            }
            let lock = self.fetch_lock(server.as_str());
            let _fetching = lock.lock().await;
            // Another request may have fetched while this one waited.
            let stored = self.stored_keys(server).await;
            let found = usable(&stored);
            if !found.is_empty() {
                return Ok(found);
            }
            if self.fetched_recently(server.as_str()) {
                return Err(NoKey(format!(
                    "{server} has no key {} valid at {at} (fetched just now)",
                    key_id.unwrap_or("at all")
                )));
            }
            let fetched = tokio::time::timeout(FETCH_DEADLINE, self.fetch(server, via_notaries))
                .await
                .unwrap_or_else(|_| {
                    Err(NoKey(format!(
                        "fetching the keys of {server} took too long"
                    )))
                });
            self.note_fetch(server.as_str());
            match fetched {
                Ok(document) => {
                    if let Err(error) = self.store.store_server_keys(&document).await {
                        tracing::warn!(%error, %server, "cannot keep fetched server keys");
                    }
                    let stored = self.stored_keys(server).await;
                    let keys = if stored.is_empty() {
                        document.keys
                    } else {
                        stored
                    };
                    self.remember(server.as_str(), keys.clone());
                    let found = usable(&keys);
                    if found.is_empty() {
                        Err(NoKey(format!(
                            "{server} has no key {} valid at {at}",
                            key_id.unwrap_or("at all")
                        )))
                    } else {
                        Ok(found)
                    }
                }
                Err(why) => Err(why),
            }
        })
    }

    /// The server's newest document this server holds, fetched first when
    /// none is held or it is not valid until `minimum_valid_until_ts`:
    /// what a notary passes on.
    pub async fn document_for_notary(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Option<Value> {
        let held = self
            .store
            .server_key_document(server.as_str())
            .await
            .ok()
            .flatten();
        if let Some(held) = held.filter(|held| held.valid_until_ts >= minimum_valid_until_ts) {
            return serde_json::from_str(&held.document).ok();
        }
        // Asking makes the key ring fetch and keep a fresh document; no
        // document is trusted for more than a week, so no more is asked.
        let now = myelin_types::now_millis();
        let wanted = minimum_valid_until_ts.clamp(now, now + MAX_KEY_VALIDITY_MS);
        let _ = self.verify_keys(server, None, wanted).await;
        let held = self
            .store
            .server_key_document(server.as_str())
            .await
            .ok()
            .flatten()?;
        serde_json::from_str(&held.document).ok()
    }

    fn own_keys(&self, key_id: Option<&str>, at: i64) -> BTreeMap<String, String> {
        let mut keys = BTreeMap::from([(self.own.key_id.clone(), self.own.public_key.clone())]);
        for (id, old) in &self.config.old_signing_keys {
            if old.expired_ts >= at {
                keys.insert(id.clone(), old.key.clone());
            }
        }
        keys.retain(|id, _| key_id.is_none_or(|wanted| wanted == id));
        keys
    }

    fn cached_keys(&self, server: &str) -> Option<Vec<ServerVerifyKey>> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(server)
            .cloned()
    }

    fn remember(&self, server: &str, keys: Vec<ServerVerifyKey>) {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.len() >= MAX_CACHED_SERVERS {
            cached.clear();
        }
        cached.insert(server.to_owned(), keys);
    }

    async fn stored_keys(&self, server: &ServerName) -> Vec<ServerVerifyKey> {
        match self.store.server_verify_keys(server.as_str()).await {
            Ok(keys) => {
                if !keys.is_empty() {
                    self.remember(server.as_str(), keys.clone());
                }
                keys
            }
            Err(error) => {
                tracing::warn!(%error, %server, "cannot read server keys");
                Vec::new()
            }
        }
    }

    fn fetch_lock(&self, server: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self
            .fetching
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Locks nobody holds are dropped so the map stays small.
        fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(fetching.entry(server.to_owned()).or_default())
    }

    fn fetched_recently(&self, server: &str) -> bool {
        self.fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(server)
            .is_some_and(|at| at.elapsed() < REFETCH_AFTER)
    }

    fn note_fetch(&self, server: &str) {
        let mut fetched = self
            .fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        fetched.retain(|_, at| at.elapsed() < REFETCH_AFTER);
        if fetched.len() < MAX_CACHED_SERVERS {
            fetched.insert(server.to_owned(), Instant::now());
        }
    }

    /// The server's own document, from it directly, else from a notary.
    async fn fetch(
        &self,
        server: &ServerName,
        via_notaries: bool,
    ) -> Result<ServerKeyDocument, NoKey> {
        let request = get_server_keys::v2::Request::new();
        let direct = match self
            .client
            .send_limited(server, request, MAX_KEY_DOCUMENT_BYTES)
            .await
        {
            Ok(response) => serde_json::from_str::<Value>(response.server_key.json().get())
                .map_err(|error| error.to_string())
                .and_then(|document| {
                    check_key_document(server.as_str(), &document, myelin_types::now_millis())
                        .map_err(|error| error.to_string())
                }),
            Err(error) => Err(error.to_string()),
        };
        let direct_error = match direct {
            Ok(document) => return Ok(document),
            Err(error) => error,
        };
        let mut errors = vec![format!("directly: {direct_error}")];
        let notaries = if via_notaries {
            &self.notaries[..]
        } else {
            &[]
        };
        for notary in notaries {
            match self.fetch_from_notary(notary, server).await {
                Ok(document) => return Ok(document),
                Err(error) => errors.push(format!("from {}: {error}", notary.server_name)),
            }
        }
        Err(NoKey(format!(
            "no key of {server} could be fetched ({})",
            errors.join("; ")
        )))
    }

    async fn fetch_from_notary(
        &self,
        notary: &TrustedKeyServer,
        server: &ServerName,
    ) -> Result<ServerKeyDocument, String> {
        let notary_name = OwnedServerName::try_from(notary.server_name.as_str())
            .map_err(|error| error.to_string())?;
        if notary_name == server || notary_name == self.client.server_name() {
            return Err("not asked about itself".to_owned());
        }
        let request = get_remote_server_keys_batch::v2::Request::new(BTreeMap::from([(
            server.to_owned(),
            BTreeMap::new(),
        )]));
        let response = self
            .client
            .send_limited(&notary_name, request, MAX_NOTARY_ANSWER_BYTES)
            .await
            .map_err(|error: FederationError| error.to_string())?;
        let notary_keys = if notary.verify_keys.is_empty() {
            self.keys_of(&notary_name, None, myelin_types::now_millis(), false)
                .await
                .map_err(|error| error.to_string())?
        } else {
            notary.verify_keys.clone()
        };
        let now = myelin_types::now_millis();
        for raw in &response.server_keys {
            let Ok(document) = serde_json::from_str::<Value>(raw.json().get()) else {
                continue;
            };
            if document.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
                continue;
            }
            let Ok(object) = serde_json::from_value::<CanonicalJsonObject>(document.clone()) else {
                continue;
            };
            if !signed_by(&object, notary_name.as_str(), &notary_keys) {
                return Err("the answer is not signed by the notary".to_owned());
            }
            return check_key_document(server.as_str(), &document, now)
                .map_err(|error| error.to_string());
        }
        Err("the notary has no document for it".to_owned())
    }
}
