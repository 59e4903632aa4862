//! Signing federation requests as another server would, with the key
//! `myelin generate` wrote for it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;

/// A server's signing key as `myelin generate` wrote it.
pub(crate) struct KeyFile {
    pub(crate) key_id: String,
    pub(crate) key: SigningKey,
}

impl KeyFile {
    pub(crate) fn read(path: &std::path::Path) -> KeyFile {
        let text = std::fs::read_to_string(path).expect("read the signing key");
        let parts: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "`ed25519 <version> <seed>`: {text}");
        let seed = STANDARD_NO_PAD
            .decode(parts[2].trim_end_matches('='))
            .expect("base64 seed");
        let seed: [u8; 32] = seed.try_into().expect("32-byte seed");
        KeyFile {
            key_id: format!("ed25519:{}", parts[1]),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// `X-Matrix` for a request without a body, as the spec builds it: the
    /// canonical JSON of method, URI, origin and destination, signed.
    pub(crate) fn authorization(
        &self,
        method: &str,
        uri: &str,
        origin: &str,
        destination: &str,
    ) -> String {
        self.authorization_with(method, uri, origin, destination, None)
    }

    /// The same for a request whose body is `content`, given in canonical
    /// form (keys sorted, no spaces).
    pub(crate) fn authorization_with(
        &self,
        method: &str,
        uri: &str,
        origin: &str,
        destination: &str,
        content: Option<&str>,
    ) -> String {
        let content = content
            .map(|content| format!(r#""content":{content},"#))
            .unwrap_or_default();
        let object = format!(
            r#"{{{content}"destination":{},"method":{},"origin":{},"uri":{}}}"#,
            Value::from(destination),
            Value::from(method),
            Value::from(origin),
            Value::from(uri)
        );
        let signature = STANDARD_NO_PAD.encode(self.key.sign(object.as_bytes()).to_bytes());
        format!(
            r#"X-Matrix origin="{origin}",destination="{destination}",key="{}",sig="{signature}""#,
            self.key_id
        )
    }
}
