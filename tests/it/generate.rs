//! `myelin generate` never overwrites what an operator already has.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{TempDir, run_myelin};

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|entry| {
            let entry = entry.expect("dir entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("read a generated file"),
            )
        })
        .collect()
}

fn generate(server_name: &str, data_dir: &Path) -> std::process::Output {
    run_myelin(&[
        "generate",
        "--server-name",
        server_name,
        "--data-dir",
        data_dir.to_str().expect("UTF-8 temp path"),
    ])
}

#[test]
fn generate_refuses_to_overwrite() {
    let dir = TempDir::new("generate");
    let data = dir.path().join("data");
    let first = generate("one.test", &data);
    assert!(
        first.status.success(),
        "first generate failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = snapshot(&data);
    for expected in [
        "homeserver.yaml",
        "one.test.signing.key",
        "one.test.log.config",
    ] {
        assert!(
            before.contains_key(expected),
            "generate did not write {expected}: {:?}",
            before.keys()
        );
    }

    for server_name in ["one.test", "two.test"] {
        let again = generate(server_name, &data);
        assert!(
            !again.status.success(),
            "generate for {server_name} over an existing config exited 0"
        );
        assert!(
            !again.stderr.is_empty(),
            "generate refused without saying why"
        );
        assert_eq!(
            snapshot(&data),
            before,
            "generate for {server_name} changed the data dir"
        );
    }

    // Without the config but with the key: still refuses, writes nothing.
    std::fs::remove_file(data.join("homeserver.yaml")).expect("remove the config");
    let mut without_config = before.clone();
    without_config.remove("homeserver.yaml");
    let again = generate("one.test", &data);
    assert!(
        !again.status.success(),
        "generate over an existing signing key exited 0"
    );
    assert_eq!(snapshot(&data), without_config);
}

#[test]
fn generate_without_a_server_name_is_a_usage_error() {
    let dir = TempDir::new("generate-usage");
    let data = dir.path().join("data");
    let output = run_myelin(&["generate", "--data-dir", data.to_str().expect("UTF-8")]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(!data.join("homeserver.yaml").exists());
}
