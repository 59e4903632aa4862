//! Every endpoint a role serves is routed to that role by the gateway's
//! route table, so the split shape sends each request where it is served.

use std::sync::Arc;

use myelin_config::{Config, SigningKeyFile};
use myelin_gateway::route_table::{RouteRole, role_for};
use myelin_http::Router;
use myelin_process::{Deps, Role};

fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn route_table_covers_every_role_endpoint() {
    let dir = std::env::temp_dir().join(format!("myelin-route-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Arc::new(
        myelin_store_sqlite::SqliteStore::open(&dir.join("db.sqlite"))
            .await
            .expect("store"),
    );
    let config = Config {
        server_name: "routes.test".into(),
        ..Config::default()
    };
    let key =
        myelin_room::ServerKey::from_file("routes.test", &SigningKeyFile::generate()).expect("key");
    let deps = Deps::new(
        config,
        store,
        Arc::new(myelin_bus::memory::MemoryBus::new()),
        key,
        prometheus::Registry::new(),
    )
    .expect("deps");
    let roles: Vec<(Arc<dyn Role>, RouteRole)> = vec![
        (myelin_client_api::role(&deps), RouteRole::ClientApi),
        (myelin_synchrotron::role(&deps), RouteRole::Synchrotron),
        (myelin_media::role(&deps), RouteRole::Media),
        (myelin_federation_api::role(&deps), RouteRole::FederationApi),
    ];
    let mut checked = 0;
    for (role, expected) in roles {
        let mut router = Router::new(deps.store.clone(), None);
        Arc::clone(&role).routes(&mut router);
        for (method, template) in router.templates() {
            let path = concrete(template);
            assert_eq!(
                role_for(&path),
                Some(expected),
                "{method} {template} is served by {}",
                role.name()
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} endpoints found");
    let _ = std::fs::remove_dir_all(dir);
}
