//! matrix-js-sdk, the engine of Element Web, as the judge: two clients
//! start and reach PREPARED, then the flow of `tests/interop/js/flow.mjs`;
//! and with its Rust crypto, the encrypted conversation, cross-signing,
//! secret storage and key backup of `e2ee.mjs`. On the single process and
//! through the split topology.
//!
//! Needs Node.js and npm; `tests/interop/js/setup-node.sh` installs the
//! pinned packages outside the clone. `MYELIN_SKIP_INTEROP=1` skips it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::client::Client;
use crate::harness::Server;
use crate::interop::{SCRIPT_TIMEOUT, interop_dir, run};
use crate::split::{Split, settings};

/// npm may download every package on a cold cache.
const SETUP_TIMEOUT: Duration = Duration::from_secs(900);

const STEPS: &[&str] = &[
    "ok both clients reached PREPARED",
    "ok push rules loaded",
    "ok invite seen through sync",
    "ok join seen through sync",
    "ok messages both ways",
    "ok typing seen by the other",
    "ok read receipt seen by the other",
    "ok notification counts rise and reset",
    "ok push rule changed through the SDK",
    "ok scrollback through /messages",
    "ok thread reply and edit aggregated",
];

const E2EE_STEPS: &[&str] = &[
    "ok both clients started with Rust crypto",
    "ok encrypted room joined",
    "ok messages both ways decrypted",
    "ok cross-signing and secret storage with a key backup",
    "ok second device decrypts new messages",
    "ok fresh login restores keys from the backup",
];

/// Runs `setup-node.sh`; returns the folder holding the scripts and packages.
async fn node_dir() -> PathBuf {
    let mut command = Command::new("bash");
    command.arg(interop_dir().join("js").join("setup-node.sh"));
    let output = run(command, SETUP_TIMEOUT, "setup-node.sh").await;
    assert_eq!(
        output.code,
        Some(0),
        "setup-node.sh failed: {}",
        output.describe()
    );
    let dir = output
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("setup-node.sh printed no folder: {}", output.describe()));
    PathBuf::from(dir.trim())
}

fn session(client: &Client) -> String {
    json!({
        "user_id": client.user_id,
        "device_id": client.device_id,
        "access_token": client.access_token,
    })
    .to_string()
}

async fn run_flow(base_url: &str, anonymous: &Client) {
    let alice = anonymous.register("jsalice", "pw-js-alice").await;
    let bob = anonymous.register("jsbob", "pw-js-bob").await;
    run_script(
        "flow.mjs",
        STEPS,
        &[base_url, &session(&alice), &session(&bob)],
    )
    .await;
}

async fn run_e2ee(base_url: &str, anonymous: &Client) {
    let password = "pw-js-e2ee-alice";
    let alice = anonymous.register("jse2eealice", password).await;
    let bob = anonymous.register("jse2eebob", "pw-js-e2ee-bob").await;
    run_script(
        "e2ee.mjs",
        E2EE_STEPS,
        &[base_url, &session(&alice), &session(&bob), password],
    )
    .await;
}

/// The encrypted conversation between a Myelin user and a Synapse user:
/// every step crosses federation (invite, keys, room keys, device lists).
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_node), not(myelin_python3)),
    ignore = "needs node, npm and python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_js_sdk_encrypts_between_myelin_and_synapse() {
    let peers = crate::federation::synapse::Peers::start().await;
    run_e2ee_across(
        &peers.myelin.url(),
        &peers.alice,
        &peers.synapse.client_url,
        &peers.sam,
    )
    .await;
}

/// The same conversation between users of two Myelins.
#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_node)),
    ignore = "needs node and npm (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_js_sdk_encrypts_between_two_myelins() {
    let two = crate::federation::TwoMyelins::start().await;
    run_e2ee_across(&two.first.url(), &two.alice, &two.second.url(), &two.bob).await;
}

/// The encrypted conversation of `alice` on the server at `alice_url` (her
/// password is the federation tests') with `bob` on another server.
pub(crate) async fn run_e2ee_across(alice_url: &str, alice: &Client, bob_url: &str, bob: &Client) {
    run_script(
        "e2ee.mjs",
        E2EE_STEPS,
        &[
            alice_url,
            &session(alice),
            &session(bob),
            crate::federation::PASSWORD,
            bob_url,
        ],
    )
    .await;
}

/// Runs one of the scripts with `args`; every step must be reported.
async fn run_script(script: &str, steps: &[&str], args: &[&str]) {
    let dir = node_dir().await;
    let mut command = Command::new("node");
    command.arg(dir.join(script)).args(args);
    let output = run(command, SCRIPT_TIMEOUT, script).await;
    println!("{}", output.describe());
    assert_eq!(
        output.code,
        Some(0),
        "the matrix-js-sdk script {script} failed: {}",
        output.describe()
    );
    for step in steps {
        assert!(
            output.stdout.lines().any(|line| line == *step),
            "missing step {step:?}: {}",
            output.describe()
        );
    }
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_node)),
    ignore = "needs node and npm (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_js_sdk_starts_and_runs_the_flow() {
    let server = Server::builder().open_registration().start().await;
    run_flow(&server.url(), &server.client()).await;
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_node)),
    ignore = "needs node and npm (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_js_sdk_rust_crypto_encrypts_backs_up_and_restores() {
    let server = Server::builder().open_registration().start().await;
    run_e2ee(&server.url(), &server.client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    any(
        not(all(myelin_test_postgres, myelin_test_nats)),
        myelin_skip_interop,
        not(myelin_node)
    ),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL, with node and npm (and not MYELIN_SKIP_INTEROP=1), to run"
)]
async fn split_matrix_js_sdk_starts_and_runs_the_flow_through_the_gateway() {
    let Some(settings) = settings() else { return };
    let split = Split::up_with(
        &settings,
        &[
            ("CLIENT_APIS", "2"),
            ("SYNCHROTRONS", "2"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
        ],
    )
    .await;
    let anonymous = split.client();
    run_flow(&anonymous.url(""), &anonymous).await;
    run_e2ee(&anonymous.url(""), &anonymous).await;
}
