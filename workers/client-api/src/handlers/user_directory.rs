//! `POST /user_directory/search`: local users the searcher shares a room
//! with or who are in a public room; every local user with
//! `user_directory.search_all_users`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::DirectoryScope;
use ruma::api::client::user_directory::search_users;
use ruma::{OwnedMxcUri, OwnedUserId};

use crate::ClientApi;
use myelin_room::directory::MAX_SEARCH_TERM_CHARS;

/// The most results one search returns, whatever the client asks.
const MAX_LIMIT: usize = 50;

pub(crate) async fn search(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: search_users::v3::Request,
) -> Result<search_users::v3::Response, MatrixError> {
    let user = context.user()?;
    if request.search_term.chars().count() > MAX_SEARCH_TERM_CHARS {
        return Err(MatrixError::invalid_param(format!(
            "search_term is longer than {MAX_SEARCH_TERM_CHARS} characters"
        )));
    }
    let limit = usize::try_from(u64::from(request.limit))
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    let term = request.search_term.trim().to_lowercase();
    let settings = &api.config.user_directory;
    if !settings.enabled || term.is_empty() || limit == 0 {
        return Ok(search_users::v3::Response::new(Vec::new(), false));
    }
    let scope = if settings.search_all_users {
        DirectoryScope::AllUsers
    } else {
        DirectoryScope::SharedAndPublicRooms
    };
    // One more than asked for tells whether the answer is cut short.
    let mut found = api
        .store
        .search_users(&user.user_id, &term, scope, limit + 1)
        .await?;
    let limited = found.len() > limit;
    found.truncate(limit);
    let results = found
        .into_iter()
        .filter_map(|entry| {
            let mut user = search_users::v3::User::new(OwnedUserId::try_from(entry.user_id).ok()?);
            user.display_name = entry.displayname;
            user.avatar_url = entry
                .avatar_url
                .filter(|url| !url.is_empty())
                .map(OwnedMxcUri::from);
            Some(user)
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited))
}
