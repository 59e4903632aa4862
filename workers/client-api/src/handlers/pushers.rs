//! `GET /pushers` and `POST /pushers/set`: where a user's notifications are
//! delivered. Only `http` pushers are kept (this server sends no email);
//! the pusher role delivers them.

use std::sync::Arc;

use myelin_bus::topics::{self, PushersChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::Pusher;
use myelin_types::now_millis;
use ruma::api::client::push::{
    PusherIds, PusherInit, PusherKind, get_pushers, set_pusher::v3 as set_pusher,
};
use ruma::push::HttpPusherData;

use crate::ClientApi;

/// The spec's limits on the two IDs.
const MAX_APP_ID_BYTES: usize = 64;
const MAX_PUSHKEY_BYTES: usize = 512;
/// Names, language and tag.
const MAX_LABEL_BYTES: usize = 512;
/// The `data` object as JSON.
const MAX_DATA_BYTES: usize = 4096;
const MAX_PUSHERS_PER_USER: usize = 50;
/// The path every push gateway serves.
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

fn check_ids(ids: &PusherIds) -> Result<(), MatrixError> {
    if ids.app_id.is_empty() || ids.app_id.len() > MAX_APP_ID_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "app_id must be 1 to {MAX_APP_ID_BYTES} bytes"
        )));
    }
    if ids.pushkey.is_empty() || ids.pushkey.len() > MAX_PUSHKEY_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "pushkey must be 1 to {MAX_PUSHKEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_http_data(data: &HttpPusherData) -> Result<String, MatrixError> {
    let url = url::Url::parse(&data.url)
        .map_err(|_| MatrixError::invalid_param("data.url is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(MatrixError::invalid_param(
            "data.url must be an http(s) URL",
        ));
    }
    if url.path() != NOTIFY_PATH {
        return Err(MatrixError::invalid_param(format!(
            "data.url must have the path {NOTIFY_PATH}"
        )));
    }
    let json =
        serde_json::to_string(data).map_err(|error| MatrixError::internal(error.to_string()))?;
    if json.len() > MAX_DATA_BYTES {
        return Err(MatrixError::invalid_param(format!(
            "data is over {MAX_DATA_BYTES} bytes"
        )));
    }
    Ok(json)
}

/// A stored pusher as the client set it.
fn client_pusher(stored: Pusher) -> Option<ruma::api::client::push::Pusher> {
    let data: HttpPusherData = serde_json::from_str(&stored.data).ok()?;
    Some(
        PusherInit {
            ids: PusherIds::new(stored.pushkey, stored.app_id),
            kind: PusherKind::Http(data),
            app_display_name: stored.app_display_name,
            device_display_name: stored.device_display_name,
            profile_tag: stored.profile_tag,
            lang: stored.lang,
        }
        .into(),
    )
}

impl ClientApi {
    async fn announce_pushers_changed(&self, user_id: &str) {
        let change = PushersChanged {
            user_id: user_id.to_owned(),
        };
        if let Err(error) = topics::PUSHERS.announce(self.bus.as_ref(), &change).await {
            tracing::warn!(%error, "cannot announce a pusher change");
        }
    }
}

pub(crate) async fn list(
    api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_pushers::v3::Request,
) -> Result<get_pushers::v3::Response, MatrixError> {
    let user = context.user()?;
    let stored = api.store.pushers_of_user(&user.user_id).await?;
    Ok(get_pushers::v3::Response::new(
        stored.into_iter().filter_map(client_pusher).collect(),
    ))
}

pub(crate) async fn set(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_pusher::Request,
) -> Result<set_pusher::Response, MatrixError> {
    let user = context.user()?;
    let (pusher, append) = match request.action {
        set_pusher::PusherAction::Delete(ids) => {
            check_ids(&ids)?;
            if api
                .store
                .delete_pusher(&user.user_id, &ids.app_id, &ids.pushkey)
                .await?
            {
                api.announce_pushers_changed(&user.user_id).await;
            }
            return Ok(set_pusher::Response::new());
        }
        set_pusher::PusherAction::Post(post) => (post.pusher, post.append),
        _ => return Err(MatrixError::invalid_param("Unknown pusher action")),
    };
    check_ids(&pusher.ids)?;
    let data = match &pusher.kind {
        PusherKind::Http(data) => check_http_data(data)?,
        PusherKind::Email(_) => {
            return Err(MatrixError::invalid_param(
                "This server sends no email, so it keeps no email pushers",
            ));
        }
        _ => return Err(MatrixError::invalid_param("kind must be \"http\"")),
    };
    let labels = [
        &pusher.app_display_name,
        &pusher.device_display_name,
        &pusher.lang,
    ];
    if labels
        .into_iter()
        .chain(pusher.profile_tag.as_ref())
        .any(|label| label.len() > MAX_LABEL_BYTES)
    {
        return Err(MatrixError::invalid_param(format!(
            "app_display_name, device_display_name, lang and profile_tag are at most {MAX_LABEL_BYTES} bytes"
        )));
    }
    let existing = api.store.pushers_of_user(&user.user_id).await?;
    let replaces = existing
        .iter()
        .any(|p| p.app_id == pusher.ids.app_id && p.pushkey == pusher.ids.pushkey);
    if !replaces && existing.len() >= MAX_PUSHERS_PER_USER {
        return Err(MatrixError::invalid_param(format!(
            "A user may have at most {MAX_PUSHERS_PER_USER} pushers"
        )));
    }
    // A new pusher delivers what happens from now on.
    let from = api.store.max_position().await?;
    api.store
        .set_pusher(
            Pusher {
                user_id: user.user_id.clone(),
                kind: "http".to_owned(),
                app_id: pusher.ids.app_id,
                pushkey: pusher.ids.pushkey,
                app_display_name: pusher.app_display_name,
                device_display_name: pusher.device_display_name,
                profile_tag: pusher.profile_tag,
                lang: pusher.lang,
                data,
                device_id: Some(user.device_id.clone()),
                created_ts: now_millis(),
            },
            append,
            from,
        )
        .await?;
    api.announce_pushers_changed(&user.user_id).await;
    Ok(set_pusher::Response::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_need_the_notify_path() {
        let good = HttpPusherData::new("https://push.example/_matrix/push/v1/notify".to_owned());
        assert!(check_http_data(&good).is_ok());
        for bad in [
            "https://push.example/notify",
            "ftp://push.example/_matrix/push/v1/notify",
            "not a url",
        ] {
            assert!(
                check_http_data(&HttpPusherData::new(bad.to_owned())).is_err(),
                "{bad}"
            );
        }
    }
}
