//! `/login` (flows and password login), `/logout`, `/logout/all`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext, Router};
use ruma::api::client::session::{get_login_types, login, logout, logout_all};
use ruma::api::client::uiaa::UserIdentifier;
use serde_json::{Value, json};

use crate::ClientApi;
use crate::identifier_limits::check_new_device;
use crate::passwords::{self, Verdict};
use crate::user_ids::{local_user_id, new_access_token, new_device_id};

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    router.route_json::<get_login_types::v3::Request, _, _>(|_, _| async {
        Ok(json!({"flows": [{"type": "m.login.password"}]}))
    });
    let login_api = Arc::clone(api);
    router.route_json::<login::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&login_api);
        async move { api.login(context, request).await }
    });
    let logout_api = Arc::clone(api);
    // Logging out ends the device, not just the token: the spec has the
    // device deleted, so it leaves the user's device list with its session.
    router.route_json::<logout::v3::Request, _, _>(move |context, _| {
        let api = Arc::clone(&logout_api);
        async move {
            let user = context.user()?;
            let deleted = std::slice::from_ref(&user.device_id);
            api.store.delete_devices(&user.user_id, deleted).await?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({}))
        }
    });
    let logout_all_api = Arc::clone(api);
    router.route_json::<logout_all::v3::Request, _, _>(move |context, _| {
        let api = Arc::clone(&logout_all_api);
        async move {
            let user = context.user()?;
            api.store.delete_other_devices(&user.user_id, None).await?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({}))
        }
    });
}

impl ClientApi {
    async fn login(
        &self,
        context: RequestContext,
        request: login::v3::Request,
    ) -> Result<Value, MatrixError> {
        let ip = context
            .remote_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        self.limits.login_address.check(&ip)?;
        let login::v3::LoginInfo::Password(password_login) = request.login_info else {
            return Err(MatrixError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "Only m.login.password is supported",
            ));
        };
        let Some(UserIdentifier::Matrix(identifier)) = password_login.identifier else {
            return Err(MatrixError::forbidden(
                "Only m.id.user identifiers are supported",
            ));
        };
        let user_id = local_user_id(&identifier.user, &self.server_name)
            .map_err(|_| MatrixError::forbidden("Invalid username or password"))?;
        self.limits.login_account.check(&user_id)?;
        self.check_password(&user_id, &password_login.password)
            .await?;

        let device_id = request.device_id.map(|id| id.to_string());
        self.start_session(
            &user_id,
            device_id,
            request.initial_device_display_name.as_deref(),
        )
        .await
    }

    /// A new access token on the given (or a new) device: the body that
    /// login and registration answer with.
    pub(crate) async fn start_session(
        &self,
        user_id: &str,
        device_id: Option<String>,
        display_name: Option<&str>,
    ) -> Result<Value, MatrixError> {
        check_new_device(device_id.as_deref(), display_name)?;
        let device_id = device_id.unwrap_or_else(new_device_id);
        let access_token = new_access_token();
        self.store
            .add_device_token(user_id, &device_id, display_name, &access_token)
            .await?;
        Ok(json!({
            "user_id": user_id,
            "access_token": access_token,
            "device_id": device_id,
            "home_server": self.server_name,
        }))
    }

    /// `Ok` when `password` is the user's; upgrades old hashes as it goes.
    pub(crate) async fn check_password(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<(), MatrixError> {
        let invalid = || MatrixError::forbidden("Invalid username or password");
        let user = self.store.user(user_id).await?;
        let Some(stored) = user
            .filter(|user| !user.deactivated)
            .and_then(|user| user.password_hash)
        else {
            self.limits.login_failures.check(user_id)?;
            return Err(invalid());
        };
        match passwords::verify(password.to_owned(), stored).await {
            Verdict::Valid => Ok(()),
            Verdict::ValidRehash(new_hash) => {
                self.store.set_password_hash(user_id, &new_hash).await?;
                Ok(())
            }
            Verdict::Invalid => {
                self.limits.login_failures.check(user_id)?;
                Err(invalid())
            }
        }
    }
}
