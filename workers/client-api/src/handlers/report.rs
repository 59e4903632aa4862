//! `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`:
//! reports kept for the server's admins.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_store::NewReport;
use ruma::api::client::room::{report_content, report_room};

use crate::ClientApi;

/// The longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 2000;

fn check_reason(reason: &str) -> Result<(), MatrixError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(MatrixError::invalid_param(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
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
            received_ts: now_ms(),
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
            received_ts: now_ms(),
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
