//! Cross-process tests: the real `myelin` binary on real sockets, driven
//! over HTTP, against SQLite and (when configured) PostgreSQL, and by
//! clients we did not write (matrix-nio, Synapse's scripts).
//!
//! Environment:
//! - `MYELIN_TEST_BINARY`: the `myelin` binary to run (default
//!   `<target>/debug/myelin`, built with `cargo build -p myelin` if missing;
//!   build it yourself after changing the server, the tests do not rebuild
//!   an existing binary).
//! - `MYELIN_TEST_POSTGRES_URL`: a PostgreSQL server the tests may create
//!   and drop databases on; without it the PostgreSQL tests are reported
//!   as ignored (the variables are read when the tests are built, see
//!   `build.rs`, and again when they run).
//! - `MYELIN_TEST_NATS_URL`: NATS with JetStream; with both URLs set, the
//!   split-deployment tests (`split.rs`, `outage.rs`) run the topology of
//!   `scripts/split-up.sh`.
//! - `MYELIN_SKIP_INTEROP=1`: the interop tests (matrix-nio, Synapse's
//!   scripts, matrix-js-sdk) are ignored; so are those whose tool
//!   (`python3`, `node` and `npm`) was missing when the tests were built.
//! - `MYELIN_VENV`: where `tests/interop/setup-venv.sh` keeps its venv.
//! - `MYELIN_LOG`: the servers' log filter.
//!
//! A failing test keeps its server's data directory and logs under the
//! system temp dir and prints where.

mod admin;
mod client;
mod directories;
mod endpoints;
mod errors;
mod federation;
mod flows;
mod generate;
mod harness;
mod interop;
mod js_sdk;
mod keys;
mod media;
mod notifications;
mod outage;
mod persistence;
mod postgres;
mod presence;
mod push_rules;
mod pushers;
mod relations;
mod rust_sdk;
mod security;
mod split;
mod streams;
mod tidy;
mod tls;
