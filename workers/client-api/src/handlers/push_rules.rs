//! Push rules: the server-default set of the current spec (ruma's
//! `Ruleset::server_default`) with the user's own rules and changes, kept
//! as the `m.push_rules` account data so every change reaches `/sync`.

use std::sync::Arc;

use myelin_http::{MatrixError, RequestContext};
use myelin_room::push::{PUSH_RULES_TYPE, user_ruleset};
use ruma::UserId;
use ruma::api::client::push::{
    delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all,
    get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};
use ruma::push::{InsertPushRuleError, RemovePushRuleError, Ruleset};
use serde_json::json;

use crate::ClientApi;

impl ClientApi {
    /// The user's rules: what they stored, with the server defaults brought
    /// up to date, or the server defaults alone.
    pub(crate) async fn push_rules(&self, user_id: &str) -> Result<Ruleset, MatrixError> {
        let user =
            UserId::parse(user_id).map_err(|error| MatrixError::internal(error.to_string()))?;
        let stored = self
            .store
            .account_data(user_id, None, PUSH_RULES_TYPE)
            .await?;
        Ok(user_ruleset(&user, stored.as_deref()))
    }

    async fn save_push_rules(&self, user_id: &str, rules: &Ruleset) -> Result<(), MatrixError> {
        let content = json!({"global": rules});
        self.put_account_data(user_id, None, PUSH_RULES_TYPE, &content)
            .await
    }
}

fn rule_not_found() -> MatrixError {
    MatrixError::not_found("Push rule not found")
}

fn insert_refused(error: InsertPushRuleError) -> MatrixError {
    match error {
        InsertPushRuleError::UnknownRuleId => {
            MatrixError::not_found("The before or after rule does not exist")
        }
        other => MatrixError::invalid_param(other.to_string()),
    }
}

fn remove_refused(error: RemovePushRuleError) -> MatrixError {
    match error {
        RemovePushRuleError::ServerDefault => {
            MatrixError::invalid_param("Server-default rules cannot be deleted")
        }
        _ => rule_not_found(),
    }
}

pub(crate) async fn get_all(
    api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_pushrules_all::v3::Request,
) -> Result<get_pushrules_all::v3::Response, MatrixError> {
    let user = context.user()?;
    Ok(get_pushrules_all::v3::Response::new(
        api.push_rules(&user.user_id).await?,
    ))
}

pub(crate) async fn get_global(
    api: Arc<ClientApi>,
    context: RequestContext,
    _request: get_pushrules_global_scope::v3::Request,
) -> Result<get_pushrules_global_scope::v3::Response, MatrixError> {
    let user = context.user()?;
    Ok(get_pushrules_global_scope::v3::Response::new(
        api.push_rules(&user.user_id).await?,
    ))
}

pub(crate) async fn get_rule(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_pushrule::v3::Request,
) -> Result<get_pushrule::v3::Response, MatrixError> {
    let user = context.user()?;
    let rules = api.push_rules(&user.user_id).await?;
    let rule = rules
        .get(request.kind, &request.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule::v3::Response::new(rule.into()))
}

pub(crate) async fn set_rule(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_pushrule::v3::Request,
) -> Result<set_pushrule::v3::Response, MatrixError> {
    let user = context.user()?;
    let mut rules = api.push_rules(&user.user_id).await?;
    rules
        .insert(
            request.rule,
            request.after.as_deref(),
            request.before.as_deref(),
        )
        .map_err(insert_refused)?;
    api.save_push_rules(&user.user_id, &rules).await?;
    Ok(set_pushrule::v3::Response::new())
}

pub(crate) async fn delete_rule(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: delete_pushrule::v3::Request,
) -> Result<delete_pushrule::v3::Response, MatrixError> {
    let user = context.user()?;
    let mut rules = api.push_rules(&user.user_id).await?;
    rules
        .remove(request.kind, &request.rule_id)
        .map_err(remove_refused)?;
    api.save_push_rules(&user.user_id, &rules).await?;
    Ok(delete_pushrule::v3::Response::new())
}

pub(crate) async fn get_enabled(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_pushrule_enabled::v3::Request,
) -> Result<get_pushrule_enabled::v3::Response, MatrixError> {
    let user = context.user()?;
    let rules = api.push_rules(&user.user_id).await?;
    let rule = rules
        .get(request.kind, &request.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

pub(crate) async fn set_enabled(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_pushrule_enabled::v3::Request,
) -> Result<set_pushrule_enabled::v3::Response, MatrixError> {
    let user = context.user()?;
    let mut rules = api.push_rules(&user.user_id).await?;
    rules
        .set_enabled(request.kind, &request.rule_id, request.enabled)
        .map_err(|_| rule_not_found())?;
    api.save_push_rules(&user.user_id, &rules).await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

pub(crate) async fn get_actions(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: get_pushrule_actions::v3::Request,
) -> Result<get_pushrule_actions::v3::Response, MatrixError> {
    let user = context.user()?;
    let rules = api.push_rules(&user.user_id).await?;
    let rule = rules
        .get(request.kind, &request.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

pub(crate) async fn set_actions(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_pushrule_actions::v3::Request,
) -> Result<set_pushrule_actions::v3::Response, MatrixError> {
    let user = context.user()?;
    let mut rules = api.push_rules(&user.user_id).await?;
    rules
        .set_actions(request.kind, &request.rule_id, request.actions)
        .map_err(|_| rule_not_found())?;
    api.save_push_rules(&user.user_id, &rules).await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_follow_the_spec() {
        assert_eq!(
            insert_refused(InsertPushRuleError::UnknownRuleId).status,
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            insert_refused(InsertPushRuleError::ServerDefaultRuleId).errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            remove_refused(RemovePushRuleError::NotFound).status,
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            remove_refused(RemovePushRuleError::ServerDefault).status,
            http::StatusCode::BAD_REQUEST
        );
    }
}
