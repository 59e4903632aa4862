//! `POST /user/{userId}/openid/request_token`, and the federation side that
//! checks such a token, `GET /_matrix/federation/v1/openid/userinfo`
//! (served here until a federation role exists).

use std::sync::Arc;
use std::time::Duration;

use myelin_http::{MatrixError, RequestContext};
use ruma::api::client::account::request_openid_token;
use ruma::api::federation::openid::get_openid_userinfo;
use ruma::authentication::TokenType;
use ruma::{OwnedServerName, OwnedUserId};

use crate::ClientApi;
use crate::user_ids::random_string;

/// How long a token is good for (Synapse's hour).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(crate) async fn request_token(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: request_openid_token::v3::Request,
) -> Result<request_openid_token::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.user_id.as_str() != user.user_id {
        return Err(MatrixError::forbidden(
            "Cannot request OpenID tokens for other users",
        ));
    }
    let server_name = OwnedServerName::try_from(api.server_name.as_str())
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    let token = random_string(32);
    let now = myelin_types::now_millis();
    let expires = now.saturating_add(TOKEN_LIFETIME.as_millis() as i64);
    api.store
        .add_openid_token(&token, &user.user_id, expires, now)
        .await?;
    Ok(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        server_name,
        TOKEN_LIFETIME,
    ))
}

pub(crate) async fn userinfo(
    api: Arc<ClientApi>,
    _context: RequestContext,
    request: get_openid_userinfo::v1::Request,
) -> Result<get_openid_userinfo::v1::Response, MatrixError> {
    let unknown = || {
        MatrixError::new(
            http::StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
            "Unknown or expired OpenID token",
        )
    };
    if request.access_token.is_empty() || request.access_token.len() > 255 {
        return Err(unknown());
    }
    let owner = api
        .store
        .openid_token_owner(&request.access_token, myelin_types::now_millis())
        .await?
        .ok_or_else(unknown)?;
    let sub =
        OwnedUserId::try_from(owner).map_err(|error| MatrixError::internal(error.to_string()))?;
    Ok(get_openid_userinfo::v1::Response::new(sub))
}
