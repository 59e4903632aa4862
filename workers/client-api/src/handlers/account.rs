//! `/register`, `/register/available`, `/account/whoami`, `/account/password`,
//! `/account/deactivate`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext, Router};
use myelin_store::NewUser;
use ruma::api::client::account::{
    change_password, deactivate, get_username_availability, register, whoami,
};
use serde_json::{Value, json};

use crate::ClientApi;
use crate::identifier_limits::check_new_device;
use crate::passwords;
use crate::user_ids::{local_user_id, random_string};

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let register_api = Arc::clone(api);
    router.route_json::<register::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&register_api);
        async move { api.register(context, request).await }
    });
    let available_api = Arc::clone(api);
    router.route_json::<get_username_availability::v3::Request, _, _>(move |_, request| {
        let api = Arc::clone(&available_api);
        async move {
            let user_id = local_user_id(&request.username, &api.server_name)?;
            if api.store.user(&user_id).await?.is_some() {
                return Err(MatrixError::user_in_use());
            }
            Ok(json!({"available": true}))
        }
    });
    router.route_json::<whoami::v3::Request, _, _>(|context, _| async move {
        let user = context.user()?;
        Ok(json!({"user_id": user.user_id, "device_id": user.device_id, "is_guest": false}))
    });
    let password_api = Arc::clone(api);
    router.route_json::<change_password::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&password_api);
        async move {
            let user = context.user()?;
            api.require_password_auth(&user.user_id, request.auth.as_ref())
                .await?;
            let hash = passwords::hash(request.new_password).await?;
            api.store.set_password_hash(&user.user_id, &hash).await?;
            if request.logout_devices {
                api.store
                    .delete_other_devices(&user.user_id, Some(&user.device_id))
                    .await?;
                api.device_list_changed(&user.user_id).await;
            }
            Ok(json!({}))
        }
    });
    let deactivate_api = Arc::clone(api);
    router.route_json::<deactivate::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&deactivate_api);
        async move {
            let user = context.user()?.clone();
            api.require_password_auth(&user.user_id, request.auth.as_ref())
                .await?;
            api.leave_all_rooms(&user.user_id).await;
            api.store.deactivate_user(&user.user_id).await?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({"id_server_unbind_result": "no-support"}))
        }
    });
}

impl ClientApi {
    async fn register(
        &self,
        context: RequestContext,
        request: register::v3::Request,
    ) -> Result<Value, MatrixError> {
        if request.kind != register::RegistrationKind::User {
            return Err(MatrixError::forbidden("Guest access is disabled"));
        }
        if !self.config.enable_registration {
            return Err(MatrixError::forbidden("Registration has been disabled"));
        }
        if !self.config.enable_registration_without_verification {
            return Err(MatrixError::forbidden(
                "Registration needs email verification, which this server does not offer; \
                 set enable_registration_without_verification",
            ));
        }
        let user_id = match &request.username {
            Some(username) => local_user_id(username, &self.server_name)?,
            None => local_user_id(&random_string(12).to_ascii_lowercase(), &self.server_name)?,
        };
        if self.store.user(&user_id).await?.is_some() {
            return Err(MatrixError::user_in_use());
        }
        self.require_dummy_auth(request.auth.as_ref())?;
        // Only completed registrations count, not the rounds of the auth flow.
        let ip = context
            .remote_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        self.limits.registration.check(&ip)?;
        let password = request
            .password
            .ok_or_else(|| MatrixError::missing_param("password is required"))?;
        // Before the account exists: a refused session must not leave one.
        check_new_device(
            request.device_id.as_ref().map(|id| id.as_str()),
            request.initial_device_display_name.as_deref(),
        )?;
        let password_hash = passwords::hash(password).await?;
        let new_user = NewUser {
            user_id: user_id.clone(),
            password_hash: Some(password_hash),
            is_admin: false,
            created_ts: myelin_types::now_millis(),
        };
        self.store
            .create_user(new_user)
            .await
            .map_err(|error| match error {
                myelin_store::StoreError::Conflict(_) => MatrixError::user_in_use(),
                other => other.into(),
            })?;
        if request.inhibit_login {
            return Ok(json!({"user_id": user_id, "home_server": self.server_name}));
        }
        let device_id = request.device_id.map(|id| id.to_string());
        self.start_session(
            &user_id,
            device_id,
            request.initial_device_display_name.as_deref(),
        )
        .await
    }

    /// Leaves every joined or invited room, best effort (deactivation).
    async fn leave_all_rooms(&self, user_id: &str) {
        let Ok(memberships) = self.store.memberships_of_user(user_id).await else {
            return;
        };
        for membership in memberships
            .iter()
            .filter(|m| m.membership == "join" || m.membership == "invite")
        {
            if let Err(error) = self
                .set_membership(&membership.room_id, user_id, user_id, "leave", None)
                .await
            {
                tracing::warn!(room_id = %membership.room_id, %error.error, "could not leave a room on deactivation");
            }
        }
    }
}
