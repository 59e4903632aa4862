//! Other servers' signing keys: what each server's own key document said,
//! fetched directly or through a notary, kept with the time it stays valid.

use async_trait::async_trait;

use crate::StoreResult;

/// One verify key of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVerifyKey {
    /// `ed25519:<version>`.
    pub key_id: String,
    /// Unpadded base64 of the public key.
    pub public_key: String,
    /// Signatures made by it are trusted until then (ms since the epoch).
    pub valid_until_ts: i64,
    /// When the server retired it (listed under `old_verify_keys`).
    pub expired_ts: Option<i64>,
}

/// A server's signed key document (`/_matrix/key/v2/server`), as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyDocument {
    pub server_name: String,
    /// The document exactly as the server signed it (JSON).
    pub document: String,
    pub valid_until_ts: i64,
    /// When this server fetched it (ms since the epoch).
    pub fetched_ts: i64,
    /// Every key it lists, current and old.
    pub keys: Vec<ServerVerifyKey>,
}

#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// Keeps a verified document as the server's newest, unless one valid
    /// for longer is already kept, and merges its keys in: a key keeps the
    /// longest validity any document gave it, and once retired stays so.
    /// All or nothing.
    async fn store_server_keys(&self, document: &ServerKeyDocument) -> StoreResult<()>;

    /// Every key kept for the server, by key ID.
    async fn server_verify_keys(&self, server_name: &str) -> StoreResult<Vec<ServerVerifyKey>>;

    /// The server's newest kept document, to pass on as a notary.
    async fn server_key_document(
        &self,
        server_name: &str,
    ) -> StoreResult<Option<ServerKeyDocument>>;
}
