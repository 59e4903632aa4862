//! `GET /profile/{userId}` and `GET|PUT /profile/{userId}/displayname|avatar_url`;
//! a change is carried into the member event of every room the user is in.

use std::sync::Arc;

use myelin_federation::FederationError;
use myelin_http::{MatrixError, RequestContext, Router};
use myelin_store::{ProfileUpdate, UserRecord};
use ruma::UserId;
use ruma::api::client::profile::{
    get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name,
};
use ruma::api::federation::query::get_profile_information;
use ruma::profile::ProfileFieldName;
use serde_json::{Map, Value, json};

use crate::ClientApi;
use crate::identifier_limits::refuse_nul;

/// Synapse's limits, so profiles move between the two unchanged.
const MAX_DISPLAYNAME_LEN: usize = 256;
const MAX_AVATAR_URL_LEN: usize = 1000;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<get_profile::v3::Request, _, _>(move |_, request| {
        let api = Arc::clone(&a);
        async move {
            let profile = api.profile_of(&request.user_id, None).await?;
            let profile = profile_json(&profile);
            if profile.as_object().is_some_and(Map::is_empty) {
                return Err(MatrixError::not_found(
                    "There is no profile information for this user",
                ));
            }
            Ok(profile)
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_display_name::v3::Request, _, _>(move |_, request| {
        let api = Arc::clone(&a);
        async move {
            let user = api
                .profile_of(&request.user_id, Some(ProfileFieldName::DisplayName))
                .await?;
            let name = user
                .displayname
                .ok_or_else(|| MatrixError::not_found("There is no display name for this user"))?;
            Ok(json!({"displayname": name}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_avatar_url::v3::Request, _, _>(move |_, request| {
        let api = Arc::clone(&a);
        async move {
            let user = api
                .profile_of(&request.user_id, Some(ProfileFieldName::AvatarUrl))
                .await?;
            let url = user
                .avatar_url
                .ok_or_else(|| MatrixError::not_found("There is no avatar URL for this user"))?;
            Ok(json!({"avatar_url": url}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<set_display_name::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user_id = own_user(&context, request.user_id.as_str())?;
            let name = request.displayname.filter(|name| !name.is_empty());
            if let Some(name) = &name {
                refuse_nul("The display name", name)?;
            }
            if name
                .as_ref()
                .is_some_and(|name| name.chars().count() > MAX_DISPLAYNAME_LEN)
            {
                return Err(MatrixError::bad_json(format!(
                    "Display name is longer than {MAX_DISPLAYNAME_LEN} characters"
                )));
            }
            let update = ProfileUpdate {
                displayname: Some(name),
                avatar_url: None,
            };
            api.update_profile(&user_id, update).await?;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<set_avatar_url::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user_id = own_user(&context, request.user_id.as_str())?;
            let url = request.avatar_url.map(|url| url.to_string());
            if let Some(url) = &url {
                validate_avatar_url(url)?;
            }
            let update = ProfileUpdate {
                displayname: None,
                avatar_url: Some(url),
            };
            api.update_profile(&user_id, update).await?;
            Ok(json!({}))
        }
    });
}

/// Only the user themself may change their profile.
fn own_user(context: &RequestContext, target: &str) -> Result<String, MatrixError> {
    let user = context.user()?;
    if user.user_id != target {
        return Err(MatrixError::forbidden(
            "You may only change your own profile",
        ));
    }
    Ok(user.user_id.clone())
}

fn validate_avatar_url(url: &str) -> Result<(), MatrixError> {
    if url.len() > MAX_AVATAR_URL_LEN {
        return Err(MatrixError::bad_json(format!(
            "Avatar URL is longer than {MAX_AVATAR_URL_LEN} bytes"
        )));
    }
    refuse_nul("avatar_url", url)?;
    let valid = url
        .strip_prefix("mxc://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(server, media)| !server.is_empty() && !media.is_empty());
    if !valid {
        return Err(MatrixError::invalid_param(
            "avatar_url must be an mxc:// URI",
        ));
    }
    Ok(())
}

/// `displayname` and `avatar_url`, whichever are set.
/// The two profile fields this server knows, of a user here or elsewhere.
#[derive(Debug, Default, PartialEq, Eq)]
struct Profile {
    displayname: Option<String>,
    avatar_url: Option<String>,
}

fn profile_json(user: &Profile) -> Value {
    let mut profile = Map::new();
    if let Some(name) = &user.displayname {
        profile.insert("displayname".to_owned(), json!(name));
    }
    if let Some(url) = &user.avatar_url {
        profile.insert("avatar_url".to_owned(), json!(url));
    }
    Value::Object(profile)
}

impl ClientApi {
    /// A user's profile: from the store for users of this server, else
    /// asked of theirs (`field` only, when one is named).
    async fn profile_of(
        &self,
        user_id: &UserId,
        field: Option<ProfileFieldName>,
    ) -> Result<Profile, MatrixError> {
        if user_id.server_name().as_str() == self.server_name {
            let user = self.profile_owner(user_id.as_str()).await?;
            return Ok(Profile {
                displayname: user.displayname,
                avatar_url: user.avatar_url,
            });
        }
        let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
        request.field = field;
        let answer = self
            .federation
            .send(user_id.server_name(), request)
            .await
            .map_err(FederationError::into_matrix_error)?;
        let text = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(Profile {
            displayname: text("displayname"),
            avatar_url: text("avatar_url"),
        })
    }

    /// The user whose profile is asked for; only users of this server are known.
    async fn profile_owner(&self, user_id: &str) -> Result<UserRecord, MatrixError> {
        self.store
            .user(user_id)
            .await?
            .ok_or_else(|| MatrixError::not_found("Profile not found"))
    }

    /// Stores the change, then sends a new member event into every joined
    /// room; a room that refuses it is logged and skipped.
    async fn update_profile(
        &self,
        user_id: &str,
        update: ProfileUpdate,
    ) -> Result<(), MatrixError> {
        let before = self.profile_owner(user_id).await?;
        let unchanged = update
            .displayname
            .as_ref()
            .is_none_or(|name| *name == before.displayname)
            && update
                .avatar_url
                .as_ref()
                .is_none_or(|url| *url == before.avatar_url);
        self.store.update_profile(user_id, update).await?;
        if unchanged {
            return Ok(());
        }
        let memberships = match self.store.memberships_of_user(user_id).await {
            Ok(memberships) => memberships,
            Err(error) => {
                tracing::warn!(%user_id, %error, "cannot list rooms to carry a profile change into");
                return Ok(());
            }
        };
        for membership in memberships.iter().filter(|m| m.membership == "join") {
            if let Err(error) = self
                .set_membership(&membership.room_id, user_id, user_id, "join", None)
                .await
            {
                tracing::warn!(room_id = %membership.room_id, %error.error, "could not carry a profile change into a room");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avatar_urls_must_be_mxc() {
        assert!(validate_avatar_url("mxc://hs/abc").is_ok());
        for bad in [
            "http://hs/abc",
            "mxc://hs",
            "mxc:///abc",
            "mxc://hs/",
            "abc",
        ] {
            assert_eq!(
                validate_avatar_url(bad).expect_err(bad).errcode,
                "M_INVALID_PARAM"
            );
        }
        let long = format!("mxc://hs/{}", "a".repeat(MAX_AVATAR_URL_LEN));
        assert_eq!(
            validate_avatar_url(&long).expect_err("long").errcode,
            "M_BAD_JSON"
        );
    }

    #[test]
    fn profile_json_has_only_set_fields() {
        let mut user = Profile::default();
        assert_eq!(profile_json(&user), json!({}));
        user.displayname = Some("Alice".to_owned());
        assert_eq!(profile_json(&user), json!({"displayname": "Alice"}));
        user.avatar_url = Some("mxc://hs/a".to_owned());
        assert_eq!(
            profile_json(&user),
            json!({"displayname": "Alice", "avatar_url": "mxc://hs/a"})
        );
    }
}
