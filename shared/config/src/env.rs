//! Environment overrides and secrets read from files.

use serde_yaml::{Mapping, Value};

/// Variables that configure the process, not `homeserver.yaml`.
const NOT_CONFIG: &[&str] = &[
    "CONFIG_PATH",
    "DATA_DIR",
    "ROLE",
    "INSTANCE",
    "LOG",
    "VENV",
    "SKIP_INTEROP",
    "GENERATE_SERVER_NAME",
];

/// Secrets that may be given as `<key>_path` in the file.
const SECRET_KEYS: &[&str] = &[
    "registration_shared_secret",
    "macaroon_secret_key",
    "form_secret",
    "turn_shared_secret",
];

/// `MYELIN_ENABLE_REGISTRATION=true` sets `enable_registration`;
/// `MYELIN_DATABASE__ARGS__HOST=db` sets `database.args.host`;
/// `MYELIN_FORM_SECRET_FILE=/run/secrets/form` reads the key from a file.
///
/// Variables that name no config key are left out, with a warning each.
pub(crate) fn apply_overrides(
    document: &mut Value,
    vars: &[(String, String)],
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let mut overrides: Vec<(&str, &str)> = vars
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix("MYELIN_")?, value.as_str())))
        .filter(|(name, _)| !NOT_CONFIG.contains(name) && !name.starts_with("TEST_"))
        .collect();
    overrides.sort();
    for (name, raw) in overrides {
        let (name, value) = match name.strip_suffix("_FILE") {
            Some(key) => {
                let text = std::fs::read_to_string(raw)
                    .map_err(|error| format!("MYELIN_{name}: cannot read {raw}: {error}"))?;
                (key, Value::String(text.trim().to_owned()))
            }
            None => (name, scalar(name, raw)),
        };
        let path: Vec<String> = name.split("__").map(str::to_ascii_lowercase).collect();
        if !crate::model::is_known_key(&path[0]) {
            warnings.push(format!("MYELIN_{name} names no config key and is ignored"));
            continue;
        }
        set_path(document, &path, value).map_err(|error| format!("MYELIN_{name}: {error}"))?;
    }
    Ok(warnings)
}

/// Reads a YAML scalar, but keeps secrets and names as strings even when
/// they look like numbers. The key's last word decides: `bus.url` is text,
/// `url_preview_enabled` a flag.
fn scalar(name: &str, raw: &str) -> Value {
    let lower = name.to_ascii_lowercase();
    let textual = [
        "secret", "key", "name", "password", "url", "path", "prefix", "user", "host",
    ]
    .iter()
    .any(|word| lower.ends_with(word));
    if textual {
        return Value::String(raw.to_owned());
    }
    serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn set_path(document: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".to_owned());
    };
    let mut node = document;
    for key in parents {
        node = child(node, key)?;
    }
    match node {
        // `MYELIN_LISTENERS__0__PORT`: lists are indexed by number.
        Value::Sequence(items) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get_mut(index))
                .ok_or_else(|| format!("no item `{last}` in this list"))?;
            *slot = value;
        }
        Value::Mapping(mapping) => {
            mapping.insert(Value::String(last.clone()), value);
        }
        _ => return Err(format!("cannot set `{last}` here")),
    }
    Ok(())
}

/// The child `key` of a section (created if missing) or of a list (by index).
fn child<'a>(node: &'a mut Value, key: &str) -> Result<&'a mut Value, String> {
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Sequence(items) => key
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get_mut(index))
            .ok_or_else(|| format!("no item `{key}` in this list")),
        Value::Mapping(mapping) => Ok(mapping
            .entry(Value::String(key.to_owned()))
            .or_insert_with(|| Value::Mapping(Mapping::new()))),
        _ => Err(format!("`{key}` is not a section")),
    }
}

/// Replaces `<secret>_path: FILE` with the file's content, as Synapse does.
pub(crate) fn read_secret_files(document: &mut Value) -> Result<(), String> {
    let Some(mapping) = document.as_mapping_mut() else {
        return Ok(());
    };
    for key in SECRET_KEYS {
        let path_key = Value::String(format!("{key}_path"));
        let Some(path) = mapping
            .get(&path_key)
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let secret = std::fs::read_to_string(&path)
            .map_err(|error| format!("{key}_path: cannot read {path}: {error}"))?;
        mapping.insert(
            Value::String((*key).to_owned()),
            Value::String(secret.trim().to_owned()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::scalar;
    use crate::load_from_str;
    use serde_yaml::Value;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_key_is_text_by_its_last_word() {
        assert_eq!(scalar("BUS__URL", "123"), Value::String("123".to_owned()));
        assert_eq!(scalar("URL_PREVIEW_ENABLED", "true"), Value::Bool(true));
        assert_eq!(
            scalar("URL_PREVIEW_IP_RANGE_WHITELIST", "['127.0.0.1/32']"),
            serde_yaml::from_str::<Value>("['127.0.0.1/32']").expect("yaml")
        );
        assert_eq!(
            scalar("REGISTRATION_SHARED_SECRET", "12345"),
            Value::String("12345".to_owned())
        );
    }

    #[test]
    fn environment_overrides_nested_keys_and_types() {
        let loaded = load_from_str(
            "server_name: a.test\ndatabase: {name: sqlite3, args: {database: x.db}}\n",
            "test",
            &vars(&[
                ("MYELIN_SERVER_NAME", "b.test"),
                ("MYELIN_ENABLE_REGISTRATION", "true"),
                ("MYELIN_DATABASE__ARGS__DATABASE", "y.db"),
                ("MYELIN_REGISTRATION_SHARED_SECRET", "12345"),
                ("MYELIN_CONFIG_PATH", "/ignored"),
            ]),
        )
        .expect("load");
        assert_eq!(loaded.config.server_name, "b.test");
        assert!(loaded.config.enable_registration);
        assert_eq!(loaded.config.database.sqlite_path().to_str(), Some("y.db"));
        assert_eq!(
            loaded.config.registration_shared_secret.as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("myelin-config-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        let form = dir.join("form");
        std::fs::write(&form, "formsecret").expect("write");
        let text = format!(
            "server_name: a.test\nregistration_shared_secret_path: {}\n",
            secret.display()
        );
        let loaded = load_from_str(
            &text,
            "test",
            &vars(&[("MYELIN_FORM_SECRET_FILE", form.to_str().expect("utf8"))]),
        )
        .expect("load");
        assert_eq!(
            loaded.config.registration_shared_secret.as_deref(),
            Some("s3cret")
        );
        assert_eq!(loaded.config.form_secret.as_deref(), Some("formsecret"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn list_items_are_addressed_by_index() {
        let loaded = load_from_str(
            "server_name: a.test\nlisteners:\n  - port: 8008\n    bind_addresses: ['0.0.0.0']\n",
            "test",
            &vars(&[
                ("MYELIN_LISTENERS__0__PORT", "8101"),
                ("MYELIN_LISTENERS__0__BIND_ADDRESSES__0", "127.0.0.1"),
            ]),
        )
        .expect("load");
        assert_eq!(loaded.config.listeners[0].port, 8101);
        assert_eq!(
            loaded.config.listeners[0].bind_addresses,
            vec!["127.0.0.1".to_owned()]
        );
        let missing = load_from_str(
            "server_name: a.test\nlisteners: []\n",
            "test",
            &vars(&[("MYELIN_LISTENERS__3__PORT", "1")]),
        );
        assert!(missing.is_err());
    }

    #[test]
    fn variables_that_name_no_key_are_ignored_with_a_warning() {
        let loaded = load_from_str(
            "server_name: a.test\n",
            "test",
            &vars(&[
                ("MYELIN_ENABLE_REGISTRATON", "true"),
                ("MYELIN_VENV", "/venv"),
                ("MYELIN_TEST_X", "1"),
            ]),
        )
        .expect("load");
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("ENABLE_REGISTRATON"));
        assert!(!loaded.config.enable_registration);
    }

    #[test]
    fn unknown_keys_warn_and_bad_values_fail() {
        let loaded = load_from_str("server_name: a.test\nredis: {enabled: true}\n", "test", &[])
            .expect("load");
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("redis"));
        assert!(
            load_from_str("enable_registration: true\n", "test", &[]).is_err(),
            "server_name missing"
        );
        assert!(load_from_str("server_name: a\ndatabase: {name: mysql}\n", "test", &[]).is_err());
    }
}
