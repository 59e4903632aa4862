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
    // The Python interop tests, switched off on purpose.
    println!("cargo::rustc-check-cfg=cfg(myelin_skip_interop)");
    println!("cargo::rerun-if-env-changed=MYELIN_SKIP_INTEROP");
    if std::env::var("MYELIN_SKIP_INTEROP").is_ok_and(|value| value == "1") {
        println!("cargo::rustc-cfg=myelin_skip_interop");
    }
}
