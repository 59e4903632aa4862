//! The typed configuration and the list of keys it understands.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server_name: String,
    /// The URL clients reach us at (`/.well-known/matrix/client`).
    pub public_baseurl: Option<String>,
    /// The identity server clients are told of, as `m.identity_server` in
    /// `/.well-known/matrix/client` (Synapse's key).
    pub default_identity_server: Option<String>,
    pub listeners: Vec<Listener>,
    pub database: DatabaseConfig,
    pub bus: BusConfig,
    pub enable_registration: bool,
    pub enable_registration_without_verification: bool,
    pub registration_shared_secret: Option<String>,
    pub macaroon_secret_key: Option<String>,
    pub form_secret: Option<String>,
    pub signing_key_path: Option<PathBuf>,
    pub media_store_path: Option<PathBuf>,
    pub max_upload_size: Option<String>,
    /// New uploads are served only on the authenticated
    /// `/_matrix/client/v1/media` endpoints, not on the legacy
    /// `/_matrix/media/v3` ones (Synapse's key and default).
    pub enable_authenticated_media: bool,
    /// Notaries asked for other servers' keys: `server_name` and, optionally,
    /// the `verify_keys` their answers must be signed with (see
    /// `trusted_key_servers()`); left out, matrix.org, as with Synapse.
    pub trusted_key_servers: Option<Vec<serde_yaml::Value>>,
    /// How long other servers may trust our key document (Synapse's 1d).
    #[serde(deserialize_with = "string_or_number")]
    pub key_refresh_interval: Option<String>,
    /// Keys this server signed with before, `ed25519:<id>: {key, expired_ts}`.
    pub old_signing_keys: BTreeMap<String, crate::OldSigningKey>,
    /// Outbound federation checks TLS certificates (off only for tests).
    pub federation_verify_certificates: bool,
    /// Server names (`*` patterns) whose certificates are not checked.
    pub federation_certificate_verification_whitelist: Vec<String>,
    /// When set, the only servers this one federates with.
    pub federation_domain_whitelist: Option<Vec<String>>,
    /// `/.well-known/matrix/server` names `public_baseurl` as this server.
    pub serve_server_wellknown: bool,
    /// Synapse's `federation:` section: how failing destinations are retried.
    pub federation: crate::federation::FederationSection,
    pub report_stats: bool,
    pub log_config: Option<PathBuf>,
    pub turn_uris: Vec<String>,
    pub turn_shared_secret: Option<String>,
    /// How long TURN credentials last: milliseconds, or a number with
    /// `s`, `m`, `h`, `d`, `w` or `y` (Synapse's default is 1h).
    #[serde(deserialize_with = "string_or_number")]
    pub turn_user_lifetime: Option<String>,
    /// Fixed TURN credentials, used when `turn_shared_secret` is unset.
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    pub user_directory: UserDirectoryConfig,
    /// `/preview_url` is served (off by default, as in Synapse).
    pub url_preview_enabled: bool,
    /// `GET`/`POST /publicRooms` answer without an access token (off by
    /// default, as in Synapse).
    pub allow_public_rooms_without_auth: bool,
    /// Other servers may read the room directory (`/federation/v1/publicRooms`;
    /// off by default, as in Synapse).
    pub allow_public_rooms_over_federation: bool,
    /// Other servers see the names of this server's users' devices (off
    /// by default, as in Synapse).
    pub allow_device_name_lookup_over_federation: bool,
    /// Address ranges previews may not fetch from; when unset, the
    /// private, loopback, link-local and reserved ranges.
    pub url_preview_ip_range_blacklist: Option<Vec<String>>,
    /// Ranges fetched from even when the blacklist covers them.
    pub url_preview_ip_range_whitelist: Vec<String>,
    /// The most a preview downloads of a page or image (Synapse's 10M).
    pub max_spider_size: Option<String>,
    pub url_preview_accept_language: Vec<String>,
    pub presence: PresenceConfig,
    pub media_retention: MediaRetention,
    pub push: PushConfig,
    /// Address ranges this server sends nothing to on a user's behalf (push
    /// gateways); when unset, the private, loopback, link-local and
    /// reserved ranges (Synapse's key and default).
    pub ip_range_blacklist: Option<Vec<String>>,
    /// Ranges sent to even when the blacklist covers them.
    pub ip_range_whitelist: Vec<String>,
    pub default_room_version: Option<String>,
    /// Largest request body of every route but media uploads, in bytes
    /// (Synapse has no key for this); uploads take `max_upload_size`. A PDU
    /// is at most 64 KiB, so the 1 MiB default leaves room for key uploads
    /// and bulk to-device messages.
    pub max_request_size: Option<u64>,
    /// Threads of the process's async runtime; by default one per CPU the
    /// process may use. Where several processes share a machine, one each
    /// saves the cost of threads waking one another.
    pub runtime_threads: Option<usize>,
    /// PEM certificate chain and private key for listeners with `tls: true`.
    pub tls_certificate_path: Option<PathBuf>,
    pub tls_private_key_path: Option<PathBuf>,
    #[serde(flatten)]
    pub rate_limits: RateLimits,
    /// Connection and request-body limits of every HTTP listener.
    pub edge_limits: EdgeLimits,
    /// Where the gateway of the split shape sends requests.
    pub gateway: GatewayConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: String::new(),
            public_baseurl: None,
            default_identity_server: None,
            listeners: vec![Listener::default()],
            database: DatabaseConfig::default(),
            bus: BusConfig::default(),
            enable_registration: false,
            enable_registration_without_verification: false,
            registration_shared_secret: None,
            macaroon_secret_key: None,
            form_secret: None,
            signing_key_path: None,
            media_store_path: None,
            max_upload_size: None,
            enable_authenticated_media: true,
            trusted_key_servers: None,
            key_refresh_interval: None,
            old_signing_keys: BTreeMap::new(),
            federation_verify_certificates: true,
            federation_certificate_verification_whitelist: Vec::new(),
            federation_domain_whitelist: None,
            serve_server_wellknown: false,
            federation: Default::default(),
            report_stats: false,
            log_config: None,
            turn_uris: Vec::new(),
            turn_shared_secret: None,
            turn_user_lifetime: None,
            turn_username: None,
            turn_password: None,
            user_directory: UserDirectoryConfig::default(),
            url_preview_enabled: false,
            allow_public_rooms_without_auth: false,
            allow_public_rooms_over_federation: false,
            allow_device_name_lookup_over_federation: false,
            url_preview_ip_range_blacklist: None,
            url_preview_ip_range_whitelist: Vec::new(),
            max_spider_size: None,
            url_preview_accept_language: Vec::new(),
            presence: PresenceConfig::default(),
            media_retention: MediaRetention::default(),
            push: PushConfig::default(),
            ip_range_blacklist: None,
            ip_range_whitelist: Vec::new(),
            default_room_version: None,
            max_request_size: None,
            runtime_threads: None,
            tls_certificate_path: None,
            tls_private_key_path: None,
            rate_limits: RateLimits::default(),
            edge_limits: EdgeLimits::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// The gateway's upstream pools: base URLs such as `http://client-api:8008`.
/// A name that resolves to several addresses (`tasks.<service>` in Docker
/// Swarm, a headless Kubernetes service) is one replica per address. Each
/// list also reads from a comma-separated string, for environment overrides
/// (`MYELIN_GATEWAY__CLIENT_API=http://a:8008,http://b:8008`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    #[serde(deserialize_with = "string_or_list")]
    pub client_api: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub synchrotron: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub media: Vec<String>,
    /// `/_matrix/federation/*` and `/_matrix/key/*`; none: not served.
    #[serde(deserialize_with = "string_or_list")]
    pub federation_api: Vec<String>,
    /// How often upstream names are re-resolved and replicas probed.
    pub health_interval_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            client_api: Vec::new(),
            synchrotron: Vec::new(),
            media: Vec::new(),
            federation_api: Vec::new(),
            health_interval_ms: 2000,
        }
    }
}

/// A string, or a number written without quotes, kept as its text.
pub(crate) fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        match Option::<serde_yaml::Value>::deserialize(deserializer)? {
            None | Some(serde_yaml::Value::Null) => None,
            Some(serde_yaml::Value::String(text)) => Some(text),
            Some(serde_yaml::Value::Number(number)) => Some(number.to_string()),
            Some(_) => {
                return Err(serde::de::Error::custom(
                    "expected a duration such as 1h or 3600000",
                ));
            }
        },
    )
}

/// A list of strings, or one string with comma-separated items (blank items
/// dropped); null is the empty list.
fn string_or_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Visitor;

    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a list of strings or a comma-separated string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect())
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                let item = item.trim();
                if !item.is_empty() {
                    items.push(item.to_owned());
                }
            }
            Ok(items)
        }
    }

    deserializer.deserialize_any(Visitor)
}

/// `user_directory`: who `/user_directory/search` finds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UserDirectoryConfig {
    /// Off, searches find nobody.
    pub enabled: bool,
    /// Every local user, not only those sharing a room with the searcher
    /// or in a public room.
    pub search_all_users: bool,
}

impl Default for UserDirectoryConfig {
    fn default() -> Self {
        UserDirectoryConfig {
            enabled: true,
            search_all_users: false,
        }
    }
}

/// Synapse's `media_retention`: how long media is kept. Only other
/// servers' media expires here (`remote_media_lifetime`, a duration like
/// `90d`); unset, it is kept for good.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MediaRetention {
    #[serde(deserialize_with = "string_or_number")]
    pub remote_media_lifetime: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    pub enabled: bool,
    /// An `online` user who has done nothing for this long shows as
    /// `unavailable` (a duration like `5m`; Synapse's fixed 5 minutes).
    #[serde(deserialize_with = "string_or_number")]
    pub idle_after: Option<String>,
    /// A user whose clients have stopped syncing and who has done nothing
    /// for this long shows as `offline` (Synapse's fixed 30 seconds).
    #[serde(deserialize_with = "string_or_number")]
    pub offline_after: Option<String>,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            enabled: true,
            idle_after: None,
            offline_after: None,
        }
    }
}

impl PresenceConfig {
    pub fn idle_after_ms(&self) -> u64 {
        self.idle_after
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(5 * 60 * 1000)
    }

    pub fn offline_after_ms(&self) -> u64 {
        self.offline_after
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(30 * 1000)
    }
}

/// Push notifications (Synapse's `push` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// Notifications carry the event's content and names; off sends only
    /// the event and room IDs, for gateways that should not see messages.
    pub include_content: bool,
    /// The badge counts rooms with unread notifications rather than the
    /// notifications themselves.
    pub group_unread_count_by_room: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            include_content: true,
            group_unread_count_by_room: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Listener {
    pub port: u16,
    pub bind_addresses: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub tls: bool,
    /// Read the client's address from `X-Forwarded-For` when the connection
    /// comes from one of `trusted_proxies` (Synapse's key).
    pub x_forwarded: bool,
    /// Addresses and CIDR ranges of the proxies in front of this listener
    /// (Myelin's key). Only their `X-Forwarded-For` is believed, and they
    /// are exempt from `edge_limits.max_connections_per_address`, since one
    /// proxy carries many clients. Unset: loopback and the private ranges,
    /// where a proxy on the same host or network sits.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    pub resources: Vec<ListenerResource>,
}

/// The proxies a listener trusts when `trusted_proxies` is unset.
pub const DEFAULT_TRUSTED_PROXIES: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

impl Listener {
    /// `trusted_proxies` as ranges (entries that do not parse are refused
    /// at load, see `Config::problems`).
    pub fn trusted_proxy_ranges(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|range| parse_ip_range(range))
            .collect()
    }
}

/// Limits on connections and request bodies at every HTTP listener (Myelin's
/// keys; Synapse leaves these to the proxy in front). They bound what a
/// client can hold without sending anything useful.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EdgeLimits {
    /// A request body that makes no progress for this long ends the
    /// request with 408 and closes the connection.
    pub body_read_timeout_ms: u64,
    /// After `min_body_rate_grace_ms`, a body arriving slower than this on
    /// average ends the request with 408 (0 turns the floor off).
    pub min_body_rate_bytes_per_second: u64,
    pub min_body_rate_grace_ms: u64,
    /// Open connections of the process in total. Unset: half of what the
    /// open-file limit leaves after a reserve (a proxied request also holds
    /// a connection upstream); a value above that bound is lowered to it.
    pub max_connections: Option<usize>,
    /// Open connections from one client address (not from a trusted proxy).
    pub max_connections_per_address: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            body_read_timeout_ms: 30_000,
            min_body_rate_bytes_per_second: 1024,
            min_body_rate_grace_ms: 30_000,
            max_connections: None,
            max_connections_per_address: 64,
        }
    }
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            port: 8008,
            bind_addresses: vec!["::".to_owned(), "0.0.0.0".to_owned()],
            kind: "http".to_owned(),
            tls: false,
            x_forwarded: false,
            trusted_proxies: DEFAULT_TRUSTED_PROXIES
                .iter()
                .map(|range| (*range).to_owned())
                .collect(),
            resources: vec![ListenerResource {
                names: vec!["client".to_owned(), "federation".to_owned()],
                compress: false,
            }],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListenerResource {
    pub names: Vec<String>,
    pub compress: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite3`, or `psycopg2` / `postgres` for PostgreSQL.
    pub name: String,
    pub args: BTreeMap<String, serde_yaml::Value>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            name: "sqlite3".to_owned(),
            args: BTreeMap::new(),
        }
    }
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        matches!(self.name.as_str(), "psycopg2" | "postgres" | "postgresql")
    }

    fn arg(&self, key: &str) -> Option<String> {
        self.args.get(key).and_then(|value| match value {
            serde_yaml::Value::String(text) => Some(text.clone()),
            serde_yaml::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
    }

    /// The SQLite file (`args.database`).
    pub fn sqlite_path(&self) -> PathBuf {
        PathBuf::from(
            self.arg("database")
                .unwrap_or_else(|| "homeserver.db".to_owned()),
        )
    }

    /// A libpq-style URL from `args` (user, password, dbname/database, host, port).
    pub fn postgres_url(&self) -> String {
        if let Some(url) = self.arg("url") {
            return url;
        }
        let user = self.arg("user").unwrap_or_else(|| "postgres".to_owned());
        let password = self
            .arg("password")
            .map(|p| format!(":{}", encode_userinfo(&p)))
            .unwrap_or_default();
        let host = self.arg("host").unwrap_or_else(|| "localhost".to_owned());
        let port = self.arg("port").unwrap_or_else(|| "5432".to_owned());
        let dbname = self
            .arg("dbname")
            .or_else(|| self.arg("database"))
            .unwrap_or_else(|| "synapse".to_owned());
        format!(
            "postgres://{}{password}@{host}:{port}/{dbname}",
            encode_userinfo(&user)
        )
    }

    /// `(cp_min, cp_max)`, Synapse's pool bounds.
    pub fn pool_bounds(&self) -> (usize, usize) {
        let parse = |key: &str, default: usize| {
            self.arg(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        (parse("cp_min", 5), parse("cp_max", 10))
    }
}

fn encode_userinfo(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Where roles talk: the in-process bus, or NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    /// `memory` (single process) or `nats`.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: Option<String>,
    /// Namespace of subjects and streams, so deployments can share a server.
    pub prefix: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: "memory".to_owned(),
            url: None,
            prefix: "myelin".to_owned(),
        }
    }
}

/// Synapse's `rc_*` sections: `per_second` refill and `burst_count` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst_count: f64,
}

impl RateLimit {
    const fn new(per_second: f64, burst_count: f64) -> Self {
        RateLimit {
            per_second,
            burst_count,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(0.2, 10.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub rc_message: RateLimit,
    pub rc_registration: RateLimit,
    pub rc_login: LoginRateLimits,
    pub rc_joins: JoinRateLimits,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            rc_message: RateLimit::new(0.2, 10.0),
            rc_registration: RateLimit::new(0.17, 3.0),
            rc_login: LoginRateLimits::default(),
            rc_joins: JoinRateLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LoginRateLimits {
    pub address: RateLimit,
    pub account: RateLimit,
    pub failed_attempts: RateLimit,
}

impl Default for LoginRateLimits {
    fn default() -> Self {
        let limit = RateLimit::new(0.17, 3.0);
        LoginRateLimits {
            address: limit,
            account: limit,
            failed_attempts: limit,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct JoinRateLimits {
    pub local: RateLimit,
    pub remote: RateLimit,
}

impl Default for JoinRateLimits {
    fn default() -> Self {
        JoinRateLimits {
            local: RateLimit::new(0.1, 10.0),
            remote: RateLimit::new(0.01, 10.0),
        }
    }
}

/// The level the log config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Top-level keys Myelin reads. Anything else gets one warning at start.
const KNOWN_KEYS: &[&str] = &[
    "server_name",
    "public_baseurl",
    "default_identity_server",
    "listeners",
    "database",
    "bus",
    "enable_registration",
    "enable_registration_without_verification",
    "registration_shared_secret",
    "registration_shared_secret_path",
    "macaroon_secret_key",
    "macaroon_secret_key_path",
    "form_secret",
    "form_secret_path",
    "signing_key_path",
    "media_store_path",
    "max_upload_size",
    "enable_authenticated_media",
    "trusted_key_servers",
    "key_refresh_interval",
    "old_signing_keys",
    "federation_verify_certificates",
    "federation_certificate_verification_whitelist",
    "federation_domain_whitelist",
    "serve_server_wellknown",
    "federation",
    "report_stats",
    "log_config",
    "turn_uris",
    "turn_shared_secret",
    "turn_shared_secret_path",
    "turn_user_lifetime",
    "turn_username",
    "turn_password",
    "user_directory",
    "url_preview_enabled",
    "allow_public_rooms_without_auth",
    "allow_public_rooms_over_federation",
    "allow_device_name_lookup_over_federation",
    "url_preview_ip_range_blacklist",
    "url_preview_ip_range_whitelist",
    "max_spider_size",
    "url_preview_accept_language",
    "presence",
    "media_retention",
    "push",
    "ip_range_blacklist",
    "ip_range_whitelist",
    "default_room_version",
    "max_request_size",
    "runtime_threads",
    "rc_message",
    "rc_registration",
    "rc_login",
    "rc_joins",
    "edge_limits",
    "pid_file",
    "suppress_key_server_warning",
    "tls_certificate_path",
    "tls_private_key_path",
    "gateway",
];

pub(crate) fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key)
}

pub(crate) fn unknown_keys(document: &serde_yaml::Value) -> Vec<String> {
    let Some(mapping) = document.as_mapping() else {
        return Vec::new();
    };
    mapping
        .keys()
        .filter_map(|key| key.as_str())
        .filter(|key| !KNOWN_KEYS.contains(key))
        .map(|key| format!("`{key}` is not used by Myelin and is ignored"))
        .collect()
}

impl Config {
    /// Problems that stop the server from starting.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.server_name.trim().is_empty() {
            problems.push("server_name is required".to_owned());
        }
        if !matches!(
            self.database.name.as_str(),
            "sqlite3" | "psycopg2" | "postgres" | "postgresql"
        ) {
            problems.push(format!(
                "database.name `{}` is not sqlite3 or psycopg2",
                self.database.name
            ));
        }
        if !matches!(self.bus.kind.as_str(), "memory" | "nats") {
            problems.push(format!(
                "bus.type `{}` is not memory or nats",
                self.bus.kind
            ));
        }
        if self.bus.kind == "nats" && self.bus.url.is_none() {
            problems.push("bus.url is required when bus.type is nats".to_owned());
        }
        if let Some(size) = &self.max_upload_size
            && parse_size(size).is_none()
        {
            problems.push(format!("max_upload_size `{size}` is not a size like 50M"));
        }
        if let Some(size) = &self.max_spider_size
            && parse_size(size).is_none()
        {
            problems.push(format!("max_spider_size `{size}` is not a size like 10M"));
        }
        let ranges = self.url_preview_ip_range_blacklist.iter().flatten();
        for range in ranges.chain(&self.url_preview_ip_range_whitelist) {
            if parse_ip_range(range).is_none() {
                problems.push(format!(
                    "`{range}` in the URL preview IP ranges is not an address or CIDR range"
                ));
            }
        }
        let ranges = self.ip_range_blacklist.iter().flatten();
        for range in ranges.chain(&self.ip_range_whitelist) {
            if parse_ip_range(range).is_none() {
                problems.push(format!(
                    "`{range}` in ip_range_blacklist or ip_range_whitelist is not an address or CIDR range"
                ));
            }
        }
        for listener in &self.listeners {
            for range in &listener.trusted_proxies {
                if parse_ip_range(range).is_none() {
                    problems.push(format!(
                        "`{range}` in a listener's trusted_proxies is not an address or CIDR range"
                    ));
                }
            }
        }
        if self.edge_limits.body_read_timeout_ms == 0 {
            problems.push("edge_limits.body_read_timeout_ms must be above 0".to_owned());
        }
        if self.edge_limits.max_connections == Some(0)
            || self.edge_limits.max_connections_per_address == 0
        {
            problems.push("edge_limits connection caps must be at least 1".to_owned());
        }
        if let Some(lifetime) = &self.turn_user_lifetime
            && parse_duration_ms(lifetime).is_none()
        {
            problems.push(format!(
                "turn_user_lifetime `{lifetime}` is not a duration like 1h or 86400000"
            ));
        }
        for (key, value) in [
            ("presence.idle_after", &self.presence.idle_after),
            ("presence.offline_after", &self.presence.offline_after),
        ] {
            if let Some(value) = value
                && parse_duration_ms(value).is_none_or(|ms| ms == 0)
            {
                problems.push(format!(
                    "{key} `{value}` is not a duration like 5m or 30000"
                ));
            }
        }
        problems.extend(self.federation_problems());
        if self.runtime_threads == Some(0) {
            problems.push("runtime_threads must be at least 1".to_owned());
        }
        problems
    }

    /// Settings that are valid but do nothing yet.
    pub(crate) fn unsupported_settings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self
            .listeners
            .iter()
            .any(|listener| listener.kind != "http" && listener.kind != "metrics")
        {
            warnings.push("only `http` and `metrics` listeners are served".to_owned());
        }
        warnings
    }

    /// `max_spider_size` in bytes (Synapse's default is 10M).
    pub fn max_spider_bytes(&self) -> u64 {
        self.max_spider_size
            .as_deref()
            .and_then(parse_size)
            .unwrap_or(10 * 1024 * 1024)
    }

    /// `max_request_size`: the largest body of a route other than a media
    /// upload.
    pub fn max_request_bytes(&self) -> u64 {
        self.max_request_size.unwrap_or(1024 * 1024)
    }

    /// `turn_user_lifetime` in milliseconds (Synapse's default is 1h).
    pub fn turn_user_lifetime_ms(&self) -> u64 {
        self.turn_user_lifetime
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(60 * 60 * 1000)
    }

    /// `max_upload_size` in bytes (Synapse's default is 50M).
    /// `media_retention.remote_media_lifetime` in milliseconds, if set.
    pub fn remote_media_lifetime_ms(&self) -> Option<u64> {
        self.media_retention
            .remote_media_lifetime
            .as_deref()
            .and_then(parse_duration_ms)
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_size
            .as_deref()
            .and_then(parse_size)
            .unwrap_or(50 * 1024 * 1024)
    }
}

/// A duration as Synapse writes them: milliseconds, or a number with
/// `s`, `m`, `h`, `d`, `w` or `y`.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(digits) = text.strip_suffix("ms") {
        return digits.parse::<u64>().ok();
    }
    let (digits, unit) = match text.char_indices().last()? {
        (index, 's') => (&text[..index], 1000),
        (index, 'm') => (&text[..index], 60 * 1000),
        (index, 'h') => (&text[..index], 60 * 60 * 1000),
        (index, 'd') => (&text[..index], 24 * 60 * 60 * 1000),
        (index, 'w') => (&text[..index], 7 * 24 * 60 * 60 * 1000),
        (index, 'y') => (&text[..index], 365 * 24 * 60 * 60 * 1000),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// An IP range as Synapse writes them: `10.0.0.0/8`, `::1/128`, or a
/// single address.
pub fn parse_ip_range(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Parses Synapse sizes: `50M`, `1G`, `512K`, or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (index, 'K' | 'k') => (&text[..index], 1024),
        (index, 'M' | 'm') => (&text[..index], 1024 * 1024),
        (index, 'G' | 'g') => (&text[..index], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_synapse() {
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Some(2 * 86_400_000));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("86400000"), Some(86_400_000));
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_duration_ms("h"), None);
        let config: Config =
            serde_yaml::from_str("server_name: a.test\nturn_user_lifetime: 90000\n").expect("yaml");
        assert_eq!(config.turn_user_lifetime_ms(), 90_000);
        let config: Config = serde_yaml::from_str("server_name: a.test\n").expect("yaml");
        assert_eq!(config.turn_user_lifetime_ms(), 3_600_000);
        assert!(config.user_directory.enabled && !config.user_directory.search_all_users);
        let config: Config = serde_yaml::from_str(
            "server_name: a.test\nturn_user_lifetime: forever\nuser_directory: {search_all_users: true}\n",
        )
        .expect("yaml");
        assert!(config.user_directory.search_all_users);
        assert_eq!(config.problems().len(), 1, "{:?}", config.problems());
    }

    #[test]
    fn sizes_parse_like_synapse() {
        assert_eq!(parse_size("50M"), Some(50 * 1024 * 1024));
        assert_eq!(parse_size("10k"), Some(10 * 1024));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn media_and_runtime_settings_have_their_defaults_and_bounds() {
        let config: Config =
            serde_yaml::from_str("server_name: a.test\nruntime_threads: 0\n").expect("yaml");
        assert!(config.enable_authenticated_media, "on unless turned off");
        assert_eq!(
            config.problems(),
            ["runtime_threads must be at least 1"],
            "zero threads cannot run anything"
        );
        let config: Config = serde_yaml::from_str(
            "server_name: a.test\nruntime_threads: 1\nenable_authenticated_media: false\n",
        )
        .expect("yaml");
        assert_eq!(config.runtime_threads, Some(1));
        assert!(!config.enable_authenticated_media);
        assert!(config.problems().is_empty());
    }

    #[test]
    fn edge_limits_and_trusted_proxies_have_defaults_and_overrides() {
        let config: Config = serde_yaml::from_str("server_name: a.test\n").expect("yaml");
        assert_eq!(config.edge_limits, EdgeLimits::default());
        assert_eq!(config.max_request_bytes(), 1024 * 1024);
        let listener = &config.listeners[0];
        assert!(!listener.x_forwarded);
        assert!(
            listener
                .trusted_proxy_ranges()
                .iter()
                .any(|range| range.contains(&"172.18.0.3".parse::<std::net::IpAddr>().expect("ip")))
        );

        let vars: Vec<(String, String)> = [
            (
                "MYELIN_LISTENERS__0__TRUSTED_PROXIES",
                "10.1.0.0/16, 127.0.0.1",
            ),
            ("MYELIN_EDGE_LIMITS__BODY_READ_TIMEOUT_MS", "2000"),
            ("MYELIN_EDGE_LIMITS__MAX_CONNECTIONS", "40"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        let loaded = crate::load_from_str(
            "server_name: a.test\nlisteners: [{port: 8008, x_forwarded: true}]\n",
            "test",
            &vars,
        )
        .expect("load");
        let config = loaded.config;
        assert_eq!(
            config.listeners[0].trusted_proxies,
            ["10.1.0.0/16", "127.0.0.1"]
        );
        assert_eq!(config.edge_limits.body_read_timeout_ms, 2000);
        assert_eq!(config.edge_limits.max_connections, Some(40));

        let refused = crate::load_from_str(
            "server_name: a.test\nlisteners: [{trusted_proxies: [nowhere]}]\nedge_limits: {max_connections_per_address: 0}\n",
            "test",
            &[],
        )
        .expect_err("refused");
        let message = refused.to_string();
        assert!(
            message.contains("`nowhere` in a listener's trusted_proxies"),
            "{message}"
        );
        assert!(
            message.contains("connection caps must be at least 1"),
            "{message}"
        );
    }

    #[test]
    fn postgres_url_from_synapse_args() {
        let database: DatabaseConfig = serde_yaml::from_str(
            "name: psycopg2\nargs: {user: syn, password: 'p@ss', dbname: db, host: pg, port: 5433, cp_min: 2, cp_max: 7}",
        )
        .expect("yaml");
        assert!(database.is_postgres());
        assert_eq!(database.postgres_url(), "postgres://syn:p%40ss@pg:5433/db");
        assert_eq!(database.pool_bounds(), (2, 7));
    }

    #[test]
    fn gateway_upstreams_read_lists_and_comma_separated_strings() {
        let gateway: GatewayConfig = serde_yaml::from_str(
            "client_api: [http://a:8008, http://b:8008]\nsynchrotron: 'http://s1:8008, http://s2:8008,'\nmedia: http://m:8008\n",
        )
        .expect("yaml");
        assert_eq!(gateway.client_api, ["http://a:8008", "http://b:8008"]);
        assert_eq!(gateway.synchrotron, ["http://s1:8008", "http://s2:8008"]);
        assert_eq!(gateway.media, ["http://m:8008"]);
        assert_eq!(gateway.health_interval_ms, 2000);

        let empty: GatewayConfig = serde_yaml::from_str("client_api:\n").expect("yaml");
        assert!(empty.client_api.is_empty());
        assert!(serde_yaml::from_str::<GatewayConfig>("client_api: 5\n").is_err());

        let vars: Vec<(String, String)> = [
            (
                "MYELIN_GATEWAY__CLIENT_API",
                "http://client-api:8008,http://tasks.client-api:8008",
            ),
            ("MYELIN_GATEWAY__SYNCHROTRON", "http://synchrotron:8008"),
            ("MYELIN_GATEWAY__HEALTH_INTERVAL_MS", "500"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        let loaded = crate::load_from_str(
            "server_name: a.test\ngateway: {media: [http://media:8008]}\n",
            "test",
            &vars,
        )
        .expect("load");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let gateway = &loaded.config.gateway;
        assert_eq!(
            gateway.client_api,
            ["http://client-api:8008", "http://tasks.client-api:8008"]
        );
        assert_eq!(gateway.synchrotron, ["http://synchrotron:8008"]);
        assert_eq!(gateway.media, ["http://media:8008"]);
        assert_eq!(gateway.health_interval_ms, 500);
    }
}
