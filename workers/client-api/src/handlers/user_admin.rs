//! `GET|PUT /_synapse/admin/v1/users/{userId}/admin`: a server admin reads
//! or changes whether a local user is a server admin, as Synapse's admin
//! API does (`myelin set-admin` does the same from the command line).

use std::sync::Arc;

use http::StatusCode;
use myelin_http::{MatrixError, RequestContext};
use myelin_store::StoreError;
use ruma::UserId;

use crate::ClientApi;

/// The request and response types, in ruma's shape (ruma does not model
/// Synapse's admin API).
pub(crate) mod api {
    pub(crate) mod get_admin {
        use ruma::OwnedUserId;
        use ruma::api::auth_scheme::AccessToken;
        use ruma::api::{metadata, request, response};

        metadata! {
            method: GET,
            rate_limited: false,
            authentication: AccessToken,
            path: "/_synapse/admin/v1/users/{user_id}/admin",
        }

        #[request]
        pub struct Request {
            #[ruma_api(path)]
            pub user_id: OwnedUserId,
        }

        #[response]
        pub struct Response {
            pub admin: bool,
        }
    }

    pub(crate) mod set_admin {
        use ruma::OwnedUserId;
        use ruma::api::auth_scheme::AccessToken;
        use ruma::api::{metadata, request, response};

        metadata! {
            method: PUT,
            rate_limited: false,
            authentication: AccessToken,
            path: "/_synapse/admin/v1/users/{user_id}/admin",
        }

        #[request]
        pub struct Request {
            #[ruma_api(path)]
            pub user_id: OwnedUserId,
            pub admin: bool,
        }

        #[response]
        #[derive(Default)]
        pub struct Response {}
    }
}

pub(crate) async fn get_admin(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: api::get_admin::Request,
) -> Result<api::get_admin::Response, MatrixError> {
    require_admin(&context)?;
    let admin = api.local_user(&request.user_id).await?.is_admin;
    Ok(api::get_admin::Response { admin })
}

pub(crate) async fn set_admin(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: api::set_admin::Request,
) -> Result<api::set_admin::Response, MatrixError> {
    let caller = require_admin(&context)?;
    api.local_user(&request.user_id).await?;
    if !request.admin && request.user_id.as_str() == caller {
        // The last admin would otherwise lock everyone out of this API.
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            "You may not demote yourself",
        ));
    }
    api.store
        .set_admin(request.user_id.as_str(), request.admin)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => user_not_found(),
            other => other.into(),
        })?;
    Ok(api::set_admin::Response::default())
}

/// The caller's user ID, if the caller is a server admin.
fn require_admin(context: &RequestContext) -> Result<&str, MatrixError> {
    let user = context.user()?;
    if !user.is_admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    Ok(&user.user_id)
}

fn user_not_found() -> MatrixError {
    MatrixError::not_found("User not found")
}

impl ClientApi {
    async fn local_user(&self, user_id: &UserId) -> Result<myelin_store::UserRecord, MatrixError> {
        if user_id.server_name().as_str() != self.server_name {
            return Err(MatrixError::invalid_param(
                "Only local users can be admins of this homeserver",
            ));
        }
        self.store
            .user(user_id.as_str())
            .await?
            .ok_or_else(user_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::IncomingRequestExt;

    fn put(body: &'static [u8]) -> http::Request<&'static [u8]> {
        http::Request::builder()
            .method(http::Method::PUT)
            .uri("/_synapse/admin/v1/users/%40bob%3Ahs/admin")
            .body(body)
            .expect("request")
    }

    #[test]
    fn the_body_must_say_admin_true_or_false() {
        let parsed =
            api::set_admin::Request::try_from_http_request(put(br#"{"admin":true}"#), &["@bob:hs"])
                .expect("a good body parses");
        assert_eq!(parsed.user_id.as_str(), "@bob:hs");
        assert!(parsed.admin);
        for bad in [&b"{}"[..], br#"{"admin":"yes"}"#, br#"{"admin":1}"#, b"[]"] {
            let bad: &'static [u8] = bad;
            assert!(
                api::set_admin::Request::try_from_http_request(put(bad), &["@bob:hs"]).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
