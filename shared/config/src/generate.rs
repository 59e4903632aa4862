//! `myelin generate`: a fresh `homeserver.yaml`, signing key and log config.

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::{ConfigError, SigningKeyFile};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub server_name: String,
    pub data_dir: PathBuf,
    pub report_stats: bool,
}

/// The files `generate` wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    pub config_path: PathBuf,
    pub signing_key_path: PathBuf,
    pub log_config_path: PathBuf,
}

fn random_secret() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect()
}

/// Writes the three files; refuses if the config or the key exists.
pub fn generate(options: &GenerateOptions) -> Result<Generated, ConfigError> {
    let dir = &options.data_dir;
    let name = &options.server_name;
    let generated = Generated {
        config_path: dir.join("homeserver.yaml"),
        signing_key_path: dir.join(format!("{name}.signing.key")),
        log_config_path: dir.join(format!("{name}.log.config")),
    };
    for existing in [&generated.config_path, &generated.signing_key_path] {
        if existing.exists() {
            return Err(ConfigError::Exists(existing.display().to_string()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    write_new(
        &generated.signing_key_path,
        &SigningKeyFile::generate().to_line(),
    )?;
    if !generated.log_config_path.exists() {
        write_new(&generated.log_config_path, &log_config(name))?;
    }
    write_new(
        &generated.config_path,
        &homeserver_yaml(options, &generated),
    )?;
    Ok(generated)
}

fn write_new(path: &Path, contents: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| ConfigError::Write {
        path: path.display().to_string(),
        source,
    })?;
    file.write_all(contents.as_bytes())
        .map_err(|source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        })
}

fn homeserver_yaml(options: &GenerateOptions, files: &Generated) -> String {
    let dir = options.data_dir.display();
    format!(
        r#"# Myelin homeserver configuration. Key names follow Synapse's where the
# meaning is the same; every key can be overridden from the environment as
# MYELIN_<KEY> (nested keys joined by __, e.g. MYELIN_DATABASE__ARGS__HOST).

server_name: "{server_name}"
pid_file: {dir}/homeserver.pid

# X-Forwarded-For is believed only from the trusted_proxies (loopback and
# the private ranges, where traefik or nginx sits on the same host or
# network); a client connecting from anywhere else is taken at its own
# address, whatever it sends, so this is safe exposed directly too. With a
# proxy at a known address, list only that; with no proxy and clients on a
# private network, set `x_forwarded: false`.
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    trusted_proxies: ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']
    bind_addresses: ['0.0.0.0']
    resources:
      - names: [client, federation]
        compress: false
# Serving HTTPS directly (without a proxy in front), add a listener such as
#   - port: 8448
#     tls: true
#     type: http
#     bind_addresses: ['0.0.0.0']
#     resources:
#       - names: [client, federation]
# with the PEM files it uses:
#   tls_certificate_path: {dir}/tls.crt
#   tls_private_key_path: {dir}/tls.key

# SQLite in the data directory, embedded. For PostgreSQL:
#   database:
#     name: psycopg2
#     args: {{user: synapse, password: secret, dbname: synapse, host: localhost, port: 5432, cp_min: 5, cp_max: 10}}
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db

# The message bus between roles: `memory` in one process, `nats` for split workers.
bus:
  type: memory

log_config: "{log_config}"
media_store_path: {dir}/media_store
# Media uploads may be this large; every other request body at most
# max_request_size bytes (1 MiB when unset).
max_upload_size: 50M

# Connections and request bodies at the HTTP edge (these are the defaults).
# max_connections, when unset, follows the open-file limit.
#edge_limits:
#  body_read_timeout_ms: 30000
#  min_body_rate_bytes_per_second: 1024
#  min_body_rate_grace_ms: 30000
#  max_connections_per_address: 64

enable_registration: false
enable_registration_without_verification: false
registration_shared_secret: "{registration_secret}"
report_stats: {report_stats}
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
signing_key_path: "{signing_key}"

trusted_key_servers:
  - server_name: "matrix.org"
"#,
        server_name = options.server_name,
        log_config = files.log_config_path.display(),
        registration_secret = random_secret(),
        report_stats = if options.report_stats {
            "true"
        } else {
            "false"
        },
        macaroon = random_secret(),
        form = random_secret(),
        signing_key = files.signing_key_path.display(),
    )
}

fn log_config(server_name: &str) -> String {
    format!(
        r#"# Log configuration for {server_name}. Myelin reads `root.level`
# (ERROR, WARNING, INFO or DEBUG); MYELIN_LOG (e.g. `myelin=debug`) overrides it.
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
root:
  level: INFO
  handlers: [console]
disable_existing_loggers: false
"#
    )
}

/// Reads `root.level` from a log config file.
pub fn log_level(path: &Path) -> Option<crate::LogLevel> {
    let text = std::fs::read_to_string(path).ok()?;
    let document: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let level = document
        .get("root")?
        .get("level")?
        .as_str()?
        .to_ascii_uppercase();
    Some(match level.as_str() {
        "ERROR" | "CRITICAL" => crate::LogLevel::Error,
        "WARNING" | "WARN" => crate::LogLevel::Warn,
        "DEBUG" => crate::LogLevel::Debug,
        _ => crate::LogLevel::Info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_loadable_files_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("myelin-generate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = GenerateOptions {
            server_name: "hs.test".into(),
            data_dir: dir.clone(),
            report_stats: false,
        };
        let generated = generate(&options).expect("generate");
        let text = std::fs::read_to_string(&generated.config_path).expect("read generated config");
        let loaded = crate::load_from_str(&text, "generated", &[]).expect("load generated config");
        assert_eq!(loaded.config.server_name, "hs.test");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(
            loaded
                .config
                .registration_shared_secret
                .as_deref()
                .is_some_and(|s| s.len() == 48)
        );
        let listener = &loaded.config.listeners[0];
        assert!(listener.x_forwarded);
        assert_eq!(listener.trusted_proxies, crate::DEFAULT_TRUSTED_PROXIES);
        crate::read_signing_key(&generated.signing_key_path).expect("key");
        assert_eq!(
            log_level(&generated.log_config_path),
            Some(crate::LogLevel::Info)
        );
        assert!(matches!(generate(&options), Err(ConfigError::Exists(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
