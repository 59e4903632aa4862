//! `GET /_matrix/client/versions` and `GET /_matrix/client/v3/capabilities`:
//! what this server serves, and nothing it does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::{DEFAULT_ROOM_VERSION, STABLE_ROOM_VERSIONS};
use ruma::RoomVersionId;
use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, RoomVersionStability, RoomVersionsCapability, ThirdPartyIdChangesCapability,
};
use ruma::api::client::discovery::{get_capabilities, get_supported_versions};

use crate::ClientApi;

/// Spec versions whose Client-Server API we speak.
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
    "v1.9", "v1.10", "v1.11", "v1.12",
];

/// The spec versions; no unstable features are offered.
pub(crate) async fn versions(
    _api: Arc<ClientApi>,
    _context: RequestContext,
    _request: get_supported_versions::Request,
) -> Result<get_supported_versions::Response, MatrixError> {
    Ok(get_supported_versions::Response::new(
        SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    ))
}

/// Password, display name and avatar changes work (the spec's default,
/// left out); third-party identifiers cannot be added or removed; login
/// tokens are not offered (the default again).
pub(crate) async fn capabilities(
    api: Arc<ClientApi>,
    _context: RequestContext,
    _request: get_capabilities::v3::Request,
) -> Result<get_capabilities::v3::Response, MatrixError> {
    let default = RoomVersionId::try_from(api.default_room_version())
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    let available: BTreeMap<RoomVersionId, RoomVersionStability> = STABLE_ROOM_VERSIONS
        .iter()
        .filter_map(|version| RoomVersionId::try_from(*version).ok())
        .map(|version| (version, RoomVersionStability::Stable))
        .collect();
    let mut capabilities = Capabilities::new();
    capabilities.room_versions = RoomVersionsCapability::new(default, available);
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    Ok(get_capabilities::v3::Response::new(capabilities))
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
