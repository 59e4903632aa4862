//! Synapse's signing key file: one line `ed25519 <version> <unpadded base64 seed>`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::Rng;

use crate::ConfigError;

#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyFile {
    /// The key's version, e.g. `a_XyZ1`; the key ID is `ed25519:<version>`.
    pub version: String,
    /// The 32-byte ed25519 seed.
    pub seed: [u8; 32],
}

impl std::fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyFile")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl SigningKeyFile {
    pub fn generate() -> SigningKeyFile {
        let mut rng = rand::thread_rng();
        let version: String = (0..4)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect();
        SigningKeyFile {
            version: format!("a_{version}"),
            seed: rng.r#gen(),
        }
    }

    pub fn to_line(&self) -> String {
        format!(
            "ed25519 {} {}\n",
            self.version,
            STANDARD_NO_PAD.encode(self.seed)
        )
    }

    /// Parses the first ed25519 key of a key file.
    pub fn parse(text: &str) -> Result<SigningKeyFile, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("ed25519 "))
            .ok_or("no `ed25519 <version> <key>` line")?;
        let mut parts = line.split_whitespace().skip(1);
        let (Some(version), Some(key)) = (parts.next(), parts.next()) else {
            return Err("expected `ed25519 <version> <key>`".to_owned());
        };
        let bytes = STANDARD_NO_PAD
            .decode(key.trim_end_matches('='))
            .map_err(|error| format!("key is not base64: {error}"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "key is not 32 bytes".to_owned())?;
        Ok(SigningKeyFile {
            version: version.to_owned(),
            seed,
        })
    }
}

pub fn read_signing_key(path: &Path) -> Result<SigningKeyFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    SigningKeyFile::parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_synapse_key_line() {
        // Format of Synapse's `generate_signing_key`: version, then the seed.
        let key =
            SigningKeyFile::parse("ed25519 a_abcd AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n")
                .expect("parse");
        assert_eq!(key.version, "a_abcd");
        assert_eq!(key.seed[31], 31);
    }

    #[test]
    fn generated_keys_round_trip() {
        let key = SigningKeyFile::generate();
        assert!(key.version.starts_with("a_") && key.version.len() == 6);
        assert_eq!(SigningKeyFile::parse(&key.to_line()).expect("parse"), key);
        assert!(SigningKeyFile::parse("ed25519 a_x c2hvcnQ").is_err());
    }
}
