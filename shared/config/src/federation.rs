//! The federation settings, under Synapse's keys.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Config, parse_duration_ms};

/// A key this server signed with before (`old_signing_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OldSigningKey {
    /// Unpadded base64 of the public key.
    pub key: String,
    /// When it stopped being used (ms since the epoch).
    pub expired_ts: i64,
}

/// A notary (`trusted_key_servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeyServer {
    pub server_name: String,
    /// `ed25519:<id>` to unpadded base64; when empty, the notary's own key
    /// document is fetched to check its answers.
    pub verify_keys: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct TrustedKeyServerEntry {
    server_name: String,
    #[serde(default)]
    verify_keys: BTreeMap<String, String>,
}

/// Synapse's `federation:` section, the keys Myelin reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FederationSection {
    /// The first wait after a destination failed (default 10m).
    #[serde(deserialize_with = "crate::model::string_or_number")]
    pub destination_min_retry_interval: Option<String>,
    /// Each further failure multiplies the wait by this (default 2).
    pub destination_retry_multiplier: Option<f64>,
    /// The longest wait (default 1w).
    #[serde(deserialize_with = "crate::model::string_or_number")]
    pub destination_max_retry_interval: Option<String>,
}

/// How failing destinations are retried, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DestinationRetryPolicy {
    pub min_ms: u64,
    pub multiplier: f64,
    pub max_ms: u64,
}

/// Synapse's `key_refresh_interval` default.
const DEFAULT_KEY_REFRESH_MS: u64 = 24 * 60 * 60 * 1000;
/// The notary asked when `trusted_key_servers` is left out, as Synapse does.
const DEFAULT_KEY_SERVER: &str = "matrix.org";

impl Config {
    /// The notaries, in the order given; entries that are not a mapping
    /// with a `server_name` were reported at load.
    pub fn trusted_key_servers(&self) -> Vec<TrustedKeyServer> {
        let Some(entries) = &self.trusted_key_servers else {
            return vec![TrustedKeyServer {
                server_name: DEFAULT_KEY_SERVER.to_owned(),
                verify_keys: Default::default(),
            }];
        };
        entries
            .iter()
            .filter_map(|entry| serde_yaml::from_value::<TrustedKeyServerEntry>(entry.clone()).ok())
            .map(|entry| TrustedKeyServer {
                server_name: entry.server_name,
                verify_keys: entry.verify_keys,
            })
            .collect()
    }

    /// `key_refresh_interval` in milliseconds.
    pub fn key_refresh_interval_ms(&self) -> u64 {
        self.key_refresh_interval
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(DEFAULT_KEY_REFRESH_MS)
    }

    /// The retry policy of the `federation:` section, Synapse's defaults
    /// for what it leaves out.
    pub fn destination_retry_policy(&self) -> DestinationRetryPolicy {
        let section = &self.federation;
        let ms = |value: &Option<String>, default: u64| {
            value
                .as_deref()
                .and_then(parse_duration_ms)
                .filter(|ms| *ms > 0)
                .unwrap_or(default)
        };
        DestinationRetryPolicy {
            min_ms: ms(&section.destination_min_retry_interval, 10 * 60 * 1000),
            multiplier: section
                .destination_retry_multiplier
                .filter(|multiplier| *multiplier >= 1.0)
                .unwrap_or(2.0),
            max_ms: ms(
                &section.destination_max_retry_interval,
                7 * 24 * 60 * 60 * 1000,
            ),
        }
    }

    /// Whether this server federates with `server_name` at all.
    pub fn federates_with(&self, server_name: &str) -> bool {
        self.federation_domain_whitelist
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| name == server_name))
    }

    /// Whether outbound TLS to `server_name` checks the certificate.
    pub fn verifies_certificate_of(&self, server_name: &str) -> bool {
        let host = host_of(server_name);
        self.federation_verify_certificates
            && !self
                .federation_certificate_verification_whitelist
                .iter()
                .any(|pattern| matches_pattern(pattern, host))
    }

    pub(crate) fn federation_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for entry in self.trusted_key_servers.iter().flatten() {
            if serde_yaml::from_value::<TrustedKeyServerEntry>(entry.clone()).is_err() {
                problems.push(
                    "each trusted_key_servers entry needs a server_name (and may have verify_keys)"
                        .to_owned(),
                );
            }
        }
        let section = &self.federation;
        for (key, value) in [
            (
                "destination_min_retry_interval",
                &section.destination_min_retry_interval,
            ),
            (
                "destination_max_retry_interval",
                &section.destination_max_retry_interval,
            ),
        ] {
            if let Some(value) = value
                && parse_duration_ms(value).is_none_or(|ms| ms == 0)
            {
                problems.push(format!(
                    "federation.{key} `{value}` is not a duration like 10m or 600000"
                ));
            }
        }
        if section
            .destination_retry_multiplier
            .is_some_and(|multiplier| multiplier.is_nan() || multiplier < 1.0)
        {
            problems.push("federation.destination_retry_multiplier must be at least 1".to_owned());
        }
        if let Some(interval) = &self.key_refresh_interval
            && parse_duration_ms(interval).is_none_or(|ms| ms == 0)
        {
            problems.push(format!(
                "key_refresh_interval `{interval}` is not a duration like 1d or 86400000"
            ));
        }
        problems
    }
}

/// The host part of a server name (`host`, `host:port`, `[v6]:port`).
fn host_of(server_name: &str) -> &str {
    if let Some(rest) = server_name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    server_name.split(':').next().unwrap_or(server_name)
}

/// Synapse's whitelist patterns: `*` stands for any run of characters.
fn matches_pattern(pattern: &str, host: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = host.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(index) => rest = &rest[index + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        serde_yaml::from_str(&format!("server_name: a.test\n{yaml}")).expect("yaml")
    }

    #[test]
    fn notaries_key_refresh_and_whitelists_read_as_synapse_writes_them() {
        let config = config(
            "trusted_key_servers:\n  - server_name: matrix.org\n    verify_keys:\n      \
             ed25519:auto: Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw\n  - server_name: b.test\n\
             key_refresh_interval: 2h\nfederation_domain_whitelist: [b.test]\n\
             federation_certificate_verification_whitelist: ['*.internal', 'lan']\n",
        );
        let notaries = config.trusted_key_servers();
        assert_eq!(notaries.len(), 2);
        assert_eq!(notaries[0].server_name, "matrix.org");
        assert_eq!(notaries[0].verify_keys.len(), 1);
        assert!(notaries[1].verify_keys.is_empty());
        assert_eq!(config.key_refresh_interval_ms(), 2 * 60 * 60 * 1000);
        assert!(config.federates_with("b.test"));
        assert!(!config.federates_with("c.test"));
        assert!(config.verifies_certificate_of("b.test"));
        assert!(!config.verifies_certificate_of("x.internal:8448"));
        assert!(!config.verifies_certificate_of("lan"));
        assert!(config.verifies_certificate_of("lan.example"));
        assert!(config.federation_problems().is_empty());
    }

    #[test]
    fn defaults_and_bad_values() {
        let defaults = config("");
        assert_eq!(defaults.key_refresh_interval_ms(), DEFAULT_KEY_REFRESH_MS);
        let notaries = defaults.trusted_key_servers();
        assert_eq!(notaries.len(), 1);
        assert_eq!(notaries[0].server_name, "matrix.org");
        assert!(
            config("trusted_key_servers: []\n")
                .trusted_key_servers()
                .is_empty()
        );
        let policy = defaults.destination_retry_policy();
        assert_eq!((policy.min_ms, policy.max_ms), (600_000, 604_800_000));
        assert_eq!(policy.multiplier, 2.0);
        let tuned = config(
            "federation:\n  destination_min_retry_interval: 200ms\n  \
             destination_retry_multiplier: 1.5\n  destination_max_retry_interval: 2000\n",
        );
        let policy = tuned.destination_retry_policy();
        assert_eq!(
            (policy.min_ms, policy.max_ms, policy.multiplier),
            (200, 2000, 1.5)
        );
        assert!(tuned.federation_problems().is_empty());
        let bad = config("federation:\n  destination_min_retry_interval: soon\n");
        assert_eq!(bad.federation_problems().len(), 1);
        assert!(defaults.federates_with("anyone.example"));
        assert!(defaults.verifies_certificate_of("anyone.example"));
        let off = config("federation_verify_certificates: false\n");
        assert!(!off.verifies_certificate_of("anyone.example"));
        let bad = config("trusted_key_servers: ['matrix.org']\nkey_refresh_interval: soon\n");
        assert_eq!(bad.federation_problems().len(), 2);
    }

    #[test]
    fn patterns_match_like_synapse_globs() {
        assert!(matches_pattern("*.example", "a.b.example"));
        assert!(!matches_pattern("*.example", "example"));
        assert!(matches_pattern("a*c*e", "abcde"));
        assert!(!matches_pattern("a*c*e", "abcd"));
        assert!(matches_pattern("exact", "exact"));
        assert!(!matches_pattern("exact", "exactly"));
        assert_eq!(host_of("[::1]:8448"), "::1");
        assert_eq!(host_of("h.example:8448"), "h.example");
    }
}
