//! Server ACLs (`m.room.server_acl`): which servers may take part in a room,
//! checked on every inbound request that concerns one.

use myelin_http::MatrixError;
use myelin_store::Store;
use serde_json::Value;

/// Whether the ACL content lets `server_name` (with or without a port)
/// take part.
pub fn acl_allows(content: &Value, server_name: &str) -> bool {
    let host = host_of(server_name);
    let allow_ip_literals = content
        .get("allow_ip_literals")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !allow_ip_literals && is_ip_literal(host) {
        return false;
    }
    let globs = |key: &str| -> Vec<&str> {
        content
            .get(key)
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    if globs("deny").iter().any(|glob| glob_matches(glob, host)) {
        return false;
    }
    // No allow list allows nobody.
    globs("allow").iter().any(|glob| glob_matches(glob, host))
}

/// Refuses a server the room's ACL leaves out.
pub async fn require_acl(
    store: &dyn Store,
    room_id: &str,
    server_name: &str,
) -> Result<(), MatrixError> {
    let Some(acl) = store.state_event(room_id, "m.room.server_acl", "").await? else {
        return Ok(());
    };
    let pdu: Value = serde_json::from_str(&acl.pdu_json).unwrap_or_default();
    let content = pdu.get("content").cloned().unwrap_or_default();
    if acl_allows(&content, server_name) {
        Ok(())
    } else {
        Err(MatrixError::forbidden(
            "The room's server ACL does not allow the requesting server",
        ))
    }
}

fn host_of(server_name: &str) -> &str {
    if let Some(rest) = server_name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server_name.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => server_name,
    }
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// `*` matches any run of characters, `?` any one.
fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deny_wins_and_no_allow_list_allows_nobody() {
        let acl = json!({"allow": ["*"], "deny": ["evil.example", "*.bad.example"]});
        assert!(acl_allows(&acl, "good.example"));
        assert!(acl_allows(&acl, "good.example:8448"));
        assert!(!acl_allows(&acl, "evil.example"));
        assert!(!acl_allows(&acl, "x.bad.example:443"));
        assert!(!acl_allows(&json!({"deny": []}), "good.example"));
    }

    #[test]
    fn globs_and_ip_literals() {
        let acl = json!({"allow": ["matrix.??g", "*.example.com"], "allow_ip_literals": false});
        assert!(acl_allows(&acl, "matrix.org"));
        assert!(!acl_allows(&acl, "matrix.orgx"));
        assert!(acl_allows(&acl, "a.b.example.com"));
        assert!(!acl_allows(&acl, "example.com"));
        assert!(!acl_allows(
            &json!({"allow": ["*"], "allow_ip_literals": false}),
            "127.0.0.1:8448"
        ));
        assert!(!acl_allows(
            &json!({"allow": ["*"], "allow_ip_literals": false}),
            "[::1]:8448"
        ));
        assert!(acl_allows(&json!({"allow": ["*"]}), "127.0.0.1:8448"));
    }
}
