//! Tidy checks of the layout: the architecture's boundaries, read from
//! `cargo metadata` and the tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn metadata() -> Value {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata JSON")
}

/// (package, dependency, kind) for every declared dependency.
fn dependencies() -> Vec<(String, String, String)> {
    let metadata = metadata();
    let mut edges = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let kind = dependency["kind"].as_str().unwrap_or("normal").to_owned();
            edges.push((
                name.clone(),
                dependency["name"].as_str().unwrap_or_default().to_owned(),
                kind,
            ));
        }
    }
    edges
}

#[test]
fn roles_never_import_each_other() {
    let roles = [
        "myelin-client-api",
        "myelin-synchrotron",
        "myelin-event-persister",
    ];
    for (package, dependency, kind) in dependencies() {
        if roles.contains(&package.as_str()) && kind == "normal" {
            assert!(
                !roles.contains(&dependency.as_str()),
                "{package} depends on {dependency}"
            );
        }
    }
}

#[test]
fn each_outside_technology_has_one_crate() {
    let owners = [
        ("rusqlite", "myelin-store-sqlite"),
        ("tokio-postgres", "myelin-store-postgres"),
        ("deadpool-postgres", "myelin-store-postgres"),
        ("async-nats", "myelin-bus-nats"),
    ];
    for (package, dependency, kind) in dependencies() {
        for (technology, owner) in owners {
            // The cross-process tests create their own databases; that is test plumbing.
            let test_plumbing = package == "myelin-tests" && kind == "dev";
            if dependency == technology && !test_plumbing {
                assert_eq!(package, owner, "{package} links {technology}");
            }
        }
    }
}

#[test]
fn both_dialects_have_the_same_migrations() {
    let names = |dialect: &str| -> BTreeSet<String> {
        std::fs::read_dir(workspace_root().join("migrations").join(dialect))
            .expect("migrations dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
}
