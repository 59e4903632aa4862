//! The server's ed25519 signing key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::pkcs8::ALGORITHM_OID;
use myelin_config::SigningKeyFile;
use ruma::signatures::Ed25519KeyPair;

pub struct ServerKey {
    pub server_name: String,
    key_pair: Ed25519KeyPair,
    /// `ed25519:<version>`.
    pub key_id: String,
    /// Unpadded base64 of the public key, as `/_matrix/key/v2/server` shows it.
    pub public_key: String,
}

impl ServerKey {
    pub fn from_file(server_name: &str, file: &SigningKeyFile) -> Result<ServerKey, String> {
        let key_pair = Ed25519KeyPair::new(ALGORITHM_OID, &file.seed, None, file.version.clone())
            .map_err(|error| format!("invalid signing key: {error}"))?;
        let public = ed25519_dalek::SigningKey::from_bytes(&file.seed).verifying_key();
        Ok(ServerKey {
            server_name: server_name.to_owned(),
            key_pair,
            key_id: format!("ed25519:{}", file.version),
            public_key: STANDARD_NO_PAD.encode(public.as_bytes()),
        })
    }

    /// The key pair, for ruma's signing (events, `X-Matrix` requests).
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    /// Adds this server's signature to `object`.
    pub fn sign_json(
        &self,
        object: &mut ruma::CanonicalJsonObject,
    ) -> Result<(), ruma::signatures::JsonError> {
        ruma::signatures::sign_json(&self.server_name, &self.key_pair, object)
    }
}
