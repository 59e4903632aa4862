//! Server-side key backup: `/room_keys/version` (create, read the current or
//! one version, update its `auth_data`, delete) and `/room_keys/keys` for a
//! whole backup, a room or a session (put, get, delete). Keys go only into
//! the current version; the server keeps the better of two keys for a
//! session and never reads their encrypted contents.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::{BackupKey, BackupScope, BackupVersion};
use ruma::api::client::backup::{
    BackupAlgorithm, KeyBackupData, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room,
    add_backup_keys_for_session, create_backup_version, delete_backup_keys,
    delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
    get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use serde_json::{Value, json};

use crate::ClientApi;

/// Most bytes of a version's `auth_data` and of one session's key.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// Most keys one request may put.
const MAX_KEYS_PER_PUT: usize = 10_000;

fn no_backup() -> MatrixError {
    MatrixError::not_found("No backup with that version")
}

/// A version in the path or query: the store's number, or not found.
fn version_number(version: &str) -> Result<i64, MatrixError> {
    version.parse().map_err(|_| no_backup())
}

/// `{algorithm, auth_data}` of a version, checked.
fn algorithm_and_auth_data(raw: &Raw<BackupAlgorithm>) -> Result<(String, String), MatrixError> {
    let json = raw.json().get();
    if json.len() > MAX_JSON_BYTES {
        return Err(MatrixError::too_large(
            "The backup's auth_data is too large",
        ));
    }
    let body: Value =
        serde_json::from_str(json).map_err(|error| MatrixError::bad_json(error.to_string()))?;
    let Some(algorithm) = body["algorithm"].as_str() else {
        return Err(MatrixError::missing_param("algorithm is required"));
    };
    if !body["auth_data"].is_object() {
        return Err(MatrixError::missing_param("auth_data must be an object"));
    }
    Ok((algorithm.to_owned(), body["auth_data"].to_string()))
}

fn algorithm_json(version: &BackupVersion) -> Result<Raw<BackupAlgorithm>, MatrixError> {
    let auth_data: Value = serde_json::from_str(&version.auth_data)
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    serde_json::value::to_raw_value(&json!({
        "algorithm": version.algorithm,
        "auth_data": auth_data,
    }))
    .map(Raw::from_json)
    .map_err(|error| MatrixError::internal(error.to_string()))
}

fn count_of(version: &BackupVersion) -> UInt {
    UInt::try_from(version.count).unwrap_or(UInt::MAX)
}

impl ClientApi {
    /// The version, which must exist (any, for reads and deletes).
    async fn existing_backup(
        &self,
        user_id: &str,
        version: &str,
    ) -> Result<BackupVersion, MatrixError> {
        self.store
            .backup_version(user_id, Some(version_number(version)?))
            .await?
            .ok_or_else(no_backup)
    }

    /// Puts keys into the version, which must be the current one; answers
    /// with its new etag and count.
    async fn put_backup_keys(
        &self,
        user_id: &str,
        version: &str,
        keys: Vec<BackupKey>,
    ) -> Result<(String, UInt), MatrixError> {
        if keys.len() > MAX_KEYS_PER_PUT {
            return Err(MatrixError::too_large(format!(
                "At most {MAX_KEYS_PER_PUT} keys per request"
            )));
        }
        let asked = self.existing_backup(user_id, version).await?;
        let current = self
            .store
            .backup_version(user_id, None)
            .await?
            .ok_or_else(no_backup)?;
        if asked.version != current.version {
            let mut error = MatrixError::new(
                http::StatusCode::FORBIDDEN,
                "M_WRONG_ROOM_KEYS_VERSION",
                "That is not the current backup version",
            );
            error.extra.insert(
                "current_version".to_owned(),
                json!(current.version.to_string()),
            );
            return Err(error);
        }
        self.store
            .put_backup_keys(user_id, current.version, keys)
            .await?;
        let after = self.existing_backup(user_id, version).await?;
        Ok((after.etag.to_string(), count_of(&after)))
    }

    async fn delete_keys(
        &self,
        user_id: &str,
        version: &str,
        scope: BackupScope<'_>,
    ) -> Result<(String, UInt), MatrixError> {
        let existing = self.existing_backup(user_id, version).await?;
        self.store
            .delete_backup_keys(user_id, existing.version, scope)
            .await?;
        let after = self.existing_backup(user_id, version).await?;
        Ok((after.etag.to_string(), count_of(&after)))
    }
}

/// One session's key as the store keeps it.
fn backup_key(
    room_id: &str,
    session_id: &str,
    raw: &Raw<KeyBackupData>,
) -> Result<BackupKey, MatrixError> {
    let json = raw.json().get();
    if json.len() > MAX_JSON_BYTES {
        return Err(MatrixError::too_large("A backed-up key is too large"));
    }
    let data: Value =
        serde_json::from_str(json).map_err(|error| MatrixError::bad_json(error.to_string()))?;
    let number = |field: &str| {
        data[field]
            .as_i64()
            .filter(|value| *value >= 0)
            .ok_or_else(|| MatrixError::bad_json(format!("{field} must be a non-negative integer")))
    };
    let Some(is_verified) = data["is_verified"].as_bool() else {
        return Err(MatrixError::bad_json("is_verified must be a boolean"));
    };
    if !data["session_data"].is_object() {
        return Err(MatrixError::bad_json("session_data must be an object"));
    }
    Ok(BackupKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: number("first_message_index")?,
        forwarded_count: number("forwarded_count")?,
        is_verified,
        session_data: data["session_data"].to_string(),
    })
}

fn key_json(key: &BackupKey) -> Result<Raw<KeyBackupData>, MatrixError> {
    let session_data: Value = serde_json::from_str(&key.session_data)
        .map_err(|error| MatrixError::internal(error.to_string()))?;
    serde_json::value::to_raw_value(&json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": session_data,
    }))
    .map(Raw::from_json)
    .map_err(|error| MatrixError::internal(error.to_string()))
}

/// Keys by room, then session.
fn by_room(keys: &[BackupKey]) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>, MatrixError> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
    for key in keys {
        let Ok(room_id) = OwnedRoomId::try_from(key.room_id.as_str()) else {
            continue;
        };
        rooms
            .entry(room_id)
            .or_default()
            .insert(key.session_id.clone(), key_json(key)?);
    }
    Ok(rooms
        .into_iter()
        .map(|(room_id, sessions)| (room_id, RoomKeyBackup::new(sessions)))
        .collect())
}

pub(crate) async fn create_version(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: create_backup_version::v3::Request,
) -> Result<create_backup_version::v3::Response, MatrixError> {
    let user = context.user()?;
    let (algorithm, auth_data) = algorithm_and_auth_data(&request.algorithm)?;
    let version = api
        .store
        .create_backup_version(&user.user_id, &algorithm, &auth_data)
        .await?;
    Ok(create_backup_version::v3::Response::new(
        version.to_string(),
    ))
}

pub(crate) async fn latest_version(
    api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_latest_backup_info::v3::Request,
) -> Result<get_latest_backup_info::v3::Response, MatrixError> {
    let user = context.user()?;
    let current = api
        .store
        .backup_version(&user.user_id, None)
        .await?
        .ok_or_else(|| MatrixError::not_found("No current backup version"))?;
    Ok(get_latest_backup_info::v3::Response::new(
        algorithm_json(&current)?,
        count_of(&current),
        current.etag.to_string(),
        current.version.to_string(),
    ))
}

pub(crate) async fn version(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_backup_info::v3::Request,
) -> Result<get_backup_info::v3::Response, MatrixError> {
    let user = context.user()?;
    let found = api.existing_backup(&user.user_id, &request.version).await?;
    Ok(get_backup_info::v3::Response::new(
        algorithm_json(&found)?,
        count_of(&found),
        found.etag.to_string(),
        found.version.to_string(),
    ))
}

pub(crate) async fn update_version(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: update_backup_version::v3::Request,
) -> Result<update_backup_version::v3::Response, MatrixError> {
    let user = context.user()?;
    let existing = api.existing_backup(&user.user_id, &request.version).await?;
    let (algorithm, auth_data) = algorithm_and_auth_data(&request.algorithm)?;
    let body: Value = serde_json::from_str(request.algorithm.json().get()).unwrap_or_default();
    if body["version"]
        .as_str()
        .is_some_and(|version| version != request.version)
    {
        return Err(MatrixError::invalid_param(
            "The version in the body does not match the path",
        ));
    }
    if algorithm != existing.algorithm {
        return Err(MatrixError::invalid_param(
            "The algorithm of a backup version cannot change",
        ));
    }
    if !api
        .store
        .update_backup_version(&user.user_id, existing.version, &auth_data)
        .await?
    {
        return Err(no_backup());
    }
    Ok(update_backup_version::v3::Response::new())
}

pub(crate) async fn delete_version(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_backup_version::v3::Request,
) -> Result<delete_backup_version::v3::Response, MatrixError> {
    let user = context.user()?;
    let version = version_number(&request.version)?;
    if !api
        .store
        .delete_backup_version(&user.user_id, version)
        .await?
    {
        return Err(no_backup());
    }
    Ok(delete_backup_version::v3::Response::new())
}

pub(crate) async fn put_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: add_backup_keys::v3::Request,
) -> Result<add_backup_keys::v3::Response, MatrixError> {
    let user = context.user()?;
    let mut keys = Vec::new();
    for (room_id, room) in &request.rooms {
        for (session_id, data) in &room.sessions {
            keys.push(backup_key(room_id.as_str(), session_id, data)?);
        }
    }
    let (etag, count) = api
        .put_backup_keys(&user.user_id, &request.version, keys)
        .await?;
    Ok(add_backup_keys::v3::Response::new(etag, count))
}

pub(crate) async fn put_room_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: add_backup_keys_for_room::v3::Request,
) -> Result<add_backup_keys_for_room::v3::Response, MatrixError> {
    let user = context.user()?;
    let keys = request
        .sessions
        .iter()
        .map(|(session_id, data)| backup_key(request.room_id.as_str(), session_id, data))
        .collect::<Result<Vec<_>, _>>()?;
    let (etag, count) = api
        .put_backup_keys(&user.user_id, &request.version, keys)
        .await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count))
}

pub(crate) async fn put_session_key(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: add_backup_keys_for_session::v3::Request,
) -> Result<add_backup_keys_for_session::v3::Response, MatrixError> {
    let user = context.user()?;
    let key = backup_key(
        request.room_id.as_str(),
        &request.session_id,
        &request.session_data,
    )?;
    let (etag, count) = api
        .put_backup_keys(&user.user_id, &request.version, vec![key])
        .await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count))
}

pub(crate) async fn get_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_backup_keys::v3::Request,
) -> Result<get_backup_keys::v3::Response, MatrixError> {
    let user = context.user()?;
    let version = api.existing_backup(&user.user_id, &request.version).await?;
    let keys = api
        .store
        .backup_keys(&user.user_id, version.version, BackupScope::All)
        .await?;
    Ok(get_backup_keys::v3::Response::new(by_room(&keys)?))
}

pub(crate) async fn get_room_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_backup_keys_for_room::v3::Request,
) -> Result<get_backup_keys_for_room::v3::Response, MatrixError> {
    let user = context.user()?;
    let version = api.existing_backup(&user.user_id, &request.version).await?;
    let keys = api
        .store
        .backup_keys(
            &user.user_id,
            version.version,
            BackupScope::Room(request.room_id.as_str()),
        )
        .await?;
    let sessions = keys
        .iter()
        .map(|key| Ok((key.session_id.clone(), key_json(key)?)))
        .collect::<Result<BTreeMap<_, _>, MatrixError>>()?;
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

pub(crate) async fn get_session_key(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_backup_keys_for_session::v3::Request,
) -> Result<get_backup_keys_for_session::v3::Response, MatrixError> {
    let user = context.user()?;
    let version = api.existing_backup(&user.user_id, &request.version).await?;
    let keys = api
        .store
        .backup_keys(
            &user.user_id,
            version.version,
            BackupScope::Session(request.room_id.as_str(), &request.session_id),
        )
        .await?;
    let key = keys
        .first()
        .ok_or_else(|| MatrixError::not_found("No key backed up for that session"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(key_json(
        key,
    )?))
}

pub(crate) async fn delete_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_backup_keys::v3::Request,
) -> Result<delete_backup_keys::v3::Response, MatrixError> {
    let user = context.user()?;
    let (etag, count) = api
        .delete_keys(&user.user_id, &request.version, BackupScope::All)
        .await?;
    Ok(delete_backup_keys::v3::Response::new(etag, count))
}

pub(crate) async fn delete_room_keys(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_backup_keys_for_room::v3::Request,
) -> Result<delete_backup_keys_for_room::v3::Response, MatrixError> {
    let user = context.user()?;
    let (etag, count) = api
        .delete_keys(
            &user.user_id,
            &request.version,
            BackupScope::Room(request.room_id.as_str()),
        )
        .await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count))
}

pub(crate) async fn delete_session_key(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_backup_keys_for_session::v3::Request,
) -> Result<delete_backup_keys_for_session::v3::Response, MatrixError> {
    let user = context.user()?;
    let (etag, count) = api
        .delete_keys(
            &user.user_id,
            &request.version,
            BackupScope::Session(request.room_id.as_str(), &request.session_id),
        )
        .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(
        etag, count,
    ))
}
