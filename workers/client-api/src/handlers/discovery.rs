//! `GET /_matrix/client/versions` and `GET /_matrix/client/v3/capabilities`.

use std::sync::Arc;

use myelin_http::Router;
use myelin_room::{DEFAULT_ROOM_VERSION, STABLE_ROOM_VERSIONS};
use ruma::api::client::discovery::{get_capabilities, get_supported_versions};
use serde_json::{Map, Value, json};

use crate::ClientApi;

/// Spec versions whose Client-Server API we speak.
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
    "v1.9", "v1.10", "v1.11", "v1.12",
];

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    router.route_json::<get_supported_versions::Request, _, _>(|_, _| async {
        Ok(json!({"versions": SPEC_VERSIONS, "unstable_features": {}}))
    });
    let api = Arc::clone(api);
    router.route_json::<get_capabilities::v3::Request, _, _>(move |_, _| {
        let default_version = api.default_room_version().to_owned();
        async move {
            let available: Map<String, Value> = STABLE_ROOM_VERSIONS
                .iter()
                .map(|v| ((*v).to_owned(), json!("stable")))
                .collect();
            Ok(json!({"capabilities": {
                "m.change_password": {"enabled": true},
                "m.room_versions": {"default": default_version, "available": available},
                "m.set_displayname": {"enabled": true},
                "m.set_avatar_url": {"enabled": true},
                "m.3pid_changes": {"enabled": false},
            }}))
        }
    });
}

impl ClientApi {
    pub(crate) fn default_room_version(&self) -> &str {
        self.config
            .default_room_version
            .as_deref()
            .filter(|version| STABLE_ROOM_VERSIONS.contains(version))
            .unwrap_or(DEFAULT_ROOM_VERSION)
    }
}
