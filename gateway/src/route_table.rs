//! `/_matrix` path -> the role that serves it.

/// The roles an HTTP request can be routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRole {
    ClientApi,
    Synchrotron,
    Media,
    FederationApi,
    /// The edge answers itself (static page, `.well-known`).
    Edge,
}

/// Client-Server paths served by the synchrotron (after the version prefix).
const SYNCHROTRON_PATHS: &[&str] = &["sync", "events", "initialSync"];

/// Federation paths client-api serves until a federation role exists.
const CLIENT_API_FEDERATION_PATHS: &[&str] = &["/_matrix/federation/v1/openid/userinfo"];

/// The role for a request path; `None` for paths outside the Matrix APIs.
pub fn role_for(path: &str) -> Option<RouteRole> {
    if CLIENT_API_FEDERATION_PATHS.contains(&path) {
        return Some(RouteRole::ClientApi);
    }
    if path.starts_with("/_matrix/static") || path.starts_with("/.well-known/matrix/") {
        return Some(RouteRole::Edge);
    }
    if path.starts_with("/_matrix/media/")
        || path.starts_with("/_matrix/client/v1/media/")
        || path.starts_with("/_matrix/federation/v1/media/")
    {
        return Some(RouteRole::Media);
    }
    if path.starts_with("/_matrix/federation/") || path.starts_with("/_matrix/key/") {
        return Some(RouteRole::FederationApi);
    }
    if let Some(rest) = path.strip_prefix("/_matrix/client/") {
        let mut segments = rest.split('/');
        let _version = segments.next();
        if segments
            .next()
            .is_some_and(|endpoint| SYNCHROTRON_PATHS.contains(&endpoint))
        {
            return Some(RouteRole::Synchrotron);
        }
        return Some(RouteRole::ClientApi);
    }
    if path.starts_with("/_synapse/") {
        return Some(RouteRole::ClientApi);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_roles() {
        assert_eq!(
            role_for("/_matrix/client/v3/sync"),
            Some(RouteRole::Synchrotron)
        );
        assert_eq!(
            role_for("/_matrix/client/r0/sync"),
            Some(RouteRole::Synchrotron)
        );
        assert_eq!(
            role_for("/_matrix/client/v3/rooms/!r:hs/send/m.room.message/1"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(
            role_for("/_matrix/client/versions"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(role_for("/_matrix/media/v3/upload"), Some(RouteRole::Media));
        assert_eq!(
            role_for("/_matrix/federation/v1/media/download/abc"),
            Some(RouteRole::Media)
        );
        assert_eq!(
            role_for("/_matrix/client/v1/media/config"),
            Some(RouteRole::Media)
        );
        assert_eq!(
            role_for("/_matrix/federation/v1/send/1"),
            Some(RouteRole::FederationApi)
        );
        assert_eq!(
            role_for("/_matrix/federation/v1/openid/userinfo"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(
            role_for("/_matrix/federation/v1/openid/userinfo/x"),
            Some(RouteRole::FederationApi)
        );
        assert_eq!(
            role_for("/_matrix/client/v1/rooms/!r:hs/timestamp_to_event"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(
            role_for("/_matrix/client/v3/publicRooms"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(
            role_for("/_synapse/admin/v1/register"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(
            role_for("/_synapse/admin/v1/users/@a:hs/admin"),
            Some(RouteRole::ClientApi)
        );
        assert_eq!(role_for("/_matrix/static/"), Some(RouteRole::Edge));
        assert_eq!(role_for("/metrics"), None);
    }
}
