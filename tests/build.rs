//! Tests that need a service this machine may not have are compiled as
//! ignored unless its variable is set when they are built, so `cargo test`
//! reports them as ignored rather than passed. Cargo rebuilds when a
//! variable changes.

/// (variable, cfg set when it is non-empty)
const SERVICES: &[(&str, &str)] = &[
    ("MYELIN_TEST_POSTGRES_URL", "myelin_test_postgres"),
    ("MYELIN_TEST_NATS_URL", "myelin_test_nats"),
];

fn main() {
    for (variable, cfg) in SERVICES {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var(variable).is_ok_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    // The interop tests, switched off on purpose.
    println!("cargo::rustc-check-cfg=cfg(myelin_skip_interop)");
    println!("cargo::rerun-if-env-changed=MYELIN_SKIP_INTEROP");
    if std::env::var("MYELIN_SKIP_INTEROP").is_ok_and(|value| value == "1") {
        println!("cargo::rustc-cfg=myelin_skip_interop");
    }
    // The tools the interop tests drive: without them those tests are
    // ignored, not passed. (Cargo does not notice a tool installed later;
    // `cargo clean -p myelin-tests` does.)
    for (cfg, tools) in [
        ("myelin_python3", &["python3"][..]),
        ("myelin_node", &["node", "npm"][..]),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if tools.iter().all(|tool| runs(tool)) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

fn runs(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
