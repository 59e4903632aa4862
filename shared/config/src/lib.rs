//! `homeserver.yaml`, with Synapse's key names where the meaning is the same.
//!
//! Loading goes: YAML file -> environment overrides (`MYELIN_<KEY>`, nested
//! keys joined by `__`) -> secrets read from `*_path` keys and `*_FILE`
//! variables -> typed [`Config`], with a warning for every key we do not use.

mod env;
mod federation;
mod generate;
mod model;
mod signing_key;

use std::path::Path;

pub use federation::{DestinationRetryPolicy, FederationSection, OldSigningKey, TrustedKeyServer};
pub use generate::{GenerateOptions, Generated, generate, log_level};
pub use model::{
    BusConfig, Config, DEFAULT_TRUSTED_PROXIES, DatabaseConfig, EdgeLimits, GatewayConfig,
    Listener, ListenerResource, LogLevel, PresenceConfig, PushConfig, RateLimit, RateLimits,
    UserDirectoryConfig, parse_duration_ms, parse_ip_range,
};
pub use signing_key::{SigningKeyFile, read_signing_key};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A loaded configuration and what the operator should hear about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Keys that Synapse knows but Myelin ignores, and other soft problems.
    pub warnings: Vec<String>,
}

/// Reads the file, applies the process environment and checks the result.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_from_str(&text, &path.display().to_string(), &vars)
}

/// [`load`] on text and an explicit environment, for tests.
pub fn load_from_str(
    text: &str,
    origin: &str,
    vars: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: origin.to_owned(),
        message,
    };
    let mut document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|error| invalid(error.to_string()))?;
    if document.is_null() {
        document = serde_yaml::Value::Mapping(Default::default());
    }
    let mut warnings = env::apply_overrides(&mut document, vars).map_err(invalid)?;
    env::read_secret_files(&mut document).map_err(invalid)?;
    warnings.extend(model::unknown_keys(&document));
    let config: Config =
        serde_yaml::from_value(document).map_err(|error| invalid(error.to_string()))?;
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    warnings.extend(config.unsupported_settings());
    Ok(Loaded { config, warnings })
}
