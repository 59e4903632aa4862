//! User-interactive authentication for the endpoints that need it.
//!
//! Each flow here has one stage, so the session carries no state: the
//! server hands out a random session ID and accepts the completed stage in
//! the next request, whichever replica receives it.

use myelin_http::MatrixError;
use ruma::api::client::uiaa::{AuthData, UserIdentifier};
use serde_json::json;

use crate::ClientApi;
use crate::user_ids::{local_user_id, random_string};

impl ClientApi {
    /// Registration: `m.login.dummy`.
    pub(crate) fn require_dummy_auth(&self, auth: Option<&AuthData>) -> Result<(), MatrixError> {
        match auth {
            Some(AuthData::Dummy(_)) => Ok(()),
            Some(other) => Err(MatrixError::auth_required(
                json!([{"stages": ["m.login.dummy"]}]),
                other.session().unwrap_or(&random_string(24)),
                Some(MatrixError::forbidden("Only m.login.dummy is offered")),
            )),
            None => Err(MatrixError::auth_required(
                json!([{"stages": ["m.login.dummy"]}]),
                &random_string(24),
                None,
            )),
        }
    }

    /// Sensitive account changes: the user's own password.
    pub(crate) async fn require_password_auth(
        &self,
        user_id: &str,
        auth: Option<&AuthData>,
    ) -> Result<(), MatrixError> {
        let flows = json!([{"stages": ["m.login.password"]}]);
        let Some(AuthData::Password(password)) = auth else {
            let session = auth
                .and_then(AuthData::session)
                .map(str::to_owned)
                .unwrap_or_else(|| random_string(24));
            return Err(MatrixError::auth_required(flows, &session, None));
        };
        let session = password
            .session
            .clone()
            .unwrap_or_else(|| random_string(24));
        let same_user = match &password.identifier {
            UserIdentifier::Matrix(identifier) => {
                local_user_id(&identifier.user, &self.server_name).is_ok_and(|id| id == user_id)
            }
            _ => false,
        };
        if !same_user {
            return Err(MatrixError::auth_required(
                flows,
                &session,
                Some(MatrixError::forbidden("Wrong user")),
            ));
        }
        match self.check_password(user_id, &password.password).await {
            Ok(()) => Ok(()),
            Err(error) if error.errcode == "M_LIMIT_EXCEEDED" => Err(error),
            Err(error) => Err(MatrixError::auth_required(flows, &session, Some(error))),
        }
    }
}
