//! The tests against a real PostgreSQL server are compiled as ignored unless
//! `MYELIN_TEST_POSTGRES_URL` is set when they are built, so `cargo test`
//! reports them as ignored rather than passed. Cargo rebuilds when the
//! variable changes.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(myelin_test_postgres)");
    println!("cargo::rerun-if-env-changed=MYELIN_TEST_POSTGRES_URL");
    if std::env::var("MYELIN_TEST_POSTGRES_URL").is_ok_and(|value| !value.is_empty()) {
        println!("cargo::rustc-cfg=myelin_test_postgres");
    }
}
