//! `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`:
//! reports kept for the server's admins.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::NewReport;
use ruma::api::client::room::{report_content, report_room};

use crate::ClientApi;

/// The longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 2000;

pub(crate) fn check_reason(reason: &str) -> Result<(), MatrixError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(MatrixError::invalid_param(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

/// An event the reporter may see. As the spec asks, an event that does not
/// exist and one the reporter may not see get the same 404.
pub(crate) async fn report_event(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: report_content::v3::Request,
) -> Result<report_content::v3::Response, MatrixError> {
    let user = context.user()?;
    if let Some(reason) = &request.reason {
        check_reason(reason)?;
    }
    let room_id = request.room_id.as_str();
    let not_found = || {
        MatrixError::not_found(
            "Unable to report event: it does not exist or you aren't able to see it",
        )
    };
    let event = api
        .store
        .event(request.event_id.as_str())
        .await?
        .filter(|event| event.room_id == room_id)
        .ok_or_else(not_found)?;
    let reader = api
        .room_reader(room_id, &user.user_id)
        .await
        .map_err(|_| not_found())?;
    if !reader.may_see(&event) {
        return Err(not_found());
    }
    api.store
        .add_report(NewReport {
            room_id: room_id.to_owned(),
            event_id: Some(event.event_id),
            reporter: user.user_id.clone(),
            reason: request.reason,
            // Gone from the spec since v1.14, and ruma no longer reads it.
            score: None,
            received_ts: myelin_types::now_millis(),
        })
        .await?;
    Ok(report_content::v3::Response::new())
}

/// A room this server knows; anyone may report one, member or not (a
/// room found in the directory, say).
pub(crate) async fn report_room(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: report_room::v3::Request,
) -> Result<report_room::v3::Response, MatrixError> {
    let user = context.user()?;
    check_reason(&request.reason)?;
    let room_id = request.room_id.as_str();
    api.require_room(room_id).await?;
    api.store
        .add_report(NewReport {
            room_id: room_id.to_owned(),
            event_id: None,
            reporter: user.user_id.clone(),
            reason: Some(request.reason).filter(|reason| !reason.is_empty()),
            score: None,
            received_ts: myelin_types::now_millis(),
        })
        .await?;
    Ok(report_room::v3::Response::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded() {
        assert!(check_reason(&"r".repeat(MAX_REASON_CHARS)).is_ok());
        let long = check_reason(&"r".repeat(MAX_REASON_CHARS + 1)).expect_err("too long");
        assert_eq!(long.errcode.as_ref(), "M_INVALID_PARAM");
    }
}

/// `GET /_synapse/admin/v1/event_reports`: the reports kept, newest first,
/// for server admins. `from` is the `next_token` of the previous page.
pub(crate) fn admin_routes(api: &Arc<ClientApi>, router: &mut myelin_http::Router) {
    let api = Arc::clone(api);
    router.raw(
        http::Method::GET,
        "/_synapse/admin/v1/event_reports",
        true,
        move |context, request, _| {
            let api = Arc::clone(&api);
            async move {
                let user = context.user()?;
                if !user.is_admin {
                    return Err(MatrixError::forbidden("You are not a server admin"));
                }
                let (from, limit) = admin_page(request.uri().query().unwrap_or(""))?;
                let reports = api.store.reports(from, limit + 1).await?;
                let more = reports.len() > limit;
                let listed: Vec<_> = reports.into_iter().take(limit).collect();
                let next_token = more
                    .then(|| listed.last().map(|last| last.report_id))
                    .flatten();
                let entries: Vec<serde_json::Value> = listed
                    .into_iter()
                    .map(|record| {
                        let report = record.report;
                        serde_json::json!({
                            "id": record.report_id,
                            "received_ts": report.received_ts,
                            "room_id": report.room_id,
                            "event_id": report.event_id,
                            "user_id": report.reporter,
                            "reason": report.reason,
                            "score": report.score,
                        })
                    })
                    .collect();
                let mut body = serde_json::json!({"event_reports": entries});
                if let Some(token) = next_token {
                    body["next_token"] = serde_json::json!(token);
                }
                Ok(myelin_http::json_response(http::StatusCode::OK, &body))
            }
        },
    );
}

/// Reports per admin page when none is asked for, and the most.
const ADMIN_DEFAULT_LIMIT: usize = 100;
const ADMIN_MAX_LIMIT: usize = 500;

/// `from` and `limit` of the admin listing's query string.
fn admin_page(query: &str) -> Result<(Option<i64>, usize), MatrixError> {
    let mut from = None;
    let mut limit = ADMIN_DEFAULT_LIMIT;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "from" => {
                from = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|from| *from > 0)
                        .ok_or_else(|| MatrixError::invalid_param("from must be a next_token"))?,
                );
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| *limit > 0)
                    .ok_or_else(|| MatrixError::invalid_param("limit must be a positive integer"))?
                    .min(ADMIN_MAX_LIMIT);
            }
            _ => {}
        }
    }
    Ok((from, limit))
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    #[test]
    fn admin_pages_are_bounded() {
        assert_eq!(admin_page("").expect("none"), (None, ADMIN_DEFAULT_LIMIT));
        assert_eq!(
            admin_page("from=7&limit=100000").expect("capped"),
            (Some(7), ADMIN_MAX_LIMIT)
        );
        for bad in ["from=x", "from=-3", "limit=0", "limit=many"] {
            assert_eq!(
                admin_page(bad).expect_err(bad).errcode.as_ref(),
                "M_INVALID_PARAM"
            );
        }
    }
}
