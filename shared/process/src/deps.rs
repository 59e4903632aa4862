//! What roles are built from: the config, the store, the bus, the signing key
//! and the metrics registry.

use std::sync::Arc;

use anyhow::Context;
use myelin_bus::Bus;
use myelin_config::Config;
use myelin_federation::{FederationClient, KeyRing};
use myelin_room::ServerKey;
use myelin_store::Store;

pub struct Deps {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub server_key: Arc<ServerKey>,
    /// Requests to other servers, signed with `server_key`.
    pub federation: Arc<FederationClient>,
    /// Other servers' keys, kept in `store`.
    pub server_keys: Arc<KeyRing>,
    pub registry: prometheus::Registry,
}

impl Deps {
    /// Builds the federation client and key ring around the given parts
    /// (tests assemble their own store and bus).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        server_key: ServerKey,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Deps> {
        let config = Arc::new(config);
        let server_key = Arc::new(server_key);
        let federation = Arc::new(
            FederationClient::new(Arc::clone(&config), Arc::clone(&server_key))
                .map_err(anyhow::Error::msg)?,
        );
        let server_keys = Arc::new(KeyRing::new(
            Arc::clone(&server_key),
            Arc::clone(&config),
            store.clone(),
            Arc::clone(&federation),
        ));
        Ok(Deps {
            config,
            store,
            bus,
            server_key,
            federation,
            server_keys,
            registry,
        })
    }

    /// Opens everything the config names; `role` labels the metrics.
    pub async fn open(config: Config, role: &str) -> anyhow::Result<Deps> {
        let key_path = config
            .signing_key_path
            .clone()
            .context("signing_key_path is not set; run `myelin generate` first")?;
        let key_file = myelin_config::read_signing_key(&key_path)?;
        let server_key =
            ServerKey::from_file(&config.server_name, &key_file).map_err(anyhow::Error::msg)?;
        let store = open_store(&config).await?;
        let bus = open_bus(&config).await?;
        Deps::new(config, store, bus, server_key, registry(role)?)
    }
}

/// The store the config names: SQLite (the default) or PostgreSQL.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.database.is_postgres() {
        #[cfg(feature = "postgres")]
        {
            let (min, max) = config.database.pool_bounds();
            let store = myelin_store_postgres::PostgresStore::connect(
                &config.database.postgres_url(),
                min,
                max,
            )
            .await
            .context("cannot open the PostgreSQL database")?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        anyhow::bail!("this binary was built without PostgreSQL support");
    }
    #[cfg(feature = "sqlite")]
    {
        let path = config.database.sqlite_path();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let store = myelin_store_sqlite::SqliteStore::open(&path)
            .await
            .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        Ok(Arc::new(store))
    }
    #[cfg(not(feature = "sqlite"))]
    anyhow::bail!("this binary was built without SQLite support; set database.name to psycopg2")
}

/// The bus the config names: in-process (the default) or NATS.
pub async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    match config.bus.kind.as_str() {
        "nats" => {
            #[cfg(feature = "nats")]
            {
                let url = config
                    .bus
                    .url
                    .as_deref()
                    .context("bus.url is required for NATS")?;
                let bus = myelin_bus_nats::NatsBus::connect(url, &config.bus.prefix)
                    .await
                    .with_context(|| format!("cannot connect to NATS at {url}"))?;
                Ok(Arc::new(bus))
            }
            #[cfg(not(feature = "nats"))]
            anyhow::bail!("this binary was built without NATS support")
        }
        _ => Ok(Arc::new(myelin_bus::memory::MemoryBus::new())),
    }
}

/// Every metric carries `role` and `instance` labels, so replicas of one
/// role can be told apart without naming them in config.
fn registry(role: &str) -> anyhow::Result<prometheus::Registry> {
    let instance = std::env::var("MYELIN_INSTANCE")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let labels = [
        ("role".to_owned(), role.to_owned()),
        ("instance".to_owned(), instance),
    ]
    .into_iter()
    .collect();
    Ok(prometheus::Registry::new_custom(None, Some(labels))?)
}
