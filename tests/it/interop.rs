//! Clients we did not write: matrix-nio driving the end-to-end flow, and
//! Synapse's `register_new_matrix_user` speaking the shared-secret admin API.
//!
//! Both need Python; `tests/interop/setup-venv.sh` makes the venv. Set
//! `MYELIN_SKIP_INTEROP=1` to skip them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::harness::{Server, workspace_dir};

/// pip may build wheels on a cold cache.
const SETUP_TIMEOUT: Duration = Duration::from_secs(1800);
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn interop_dir() -> PathBuf {
    workspace_dir().join("tests").join("interop")
}

pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub(crate) async fn run(mut command: Command, timeout: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `setup-venv.sh` and returns the venv it made or reused.
pub(crate) async fn venv() -> PathBuf {
    let mut command = Command::new("bash");
    command.arg(interop_dir().join("setup-venv.sh"));
    let output = run(command, SETUP_TIMEOUT, "setup-venv.sh").await;
    assert_eq!(
        output.code,
        Some(0),
        "setup-venv.sh failed: {}",
        output.describe()
    );
    let path = output
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("setup-venv.sh printed no venv path: {}", output.describe()));
    PathBuf::from(path.trim())
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_nio_runs_the_end_to_end_flow() {
    let venv = venv().await;
    let server = Server::builder().open_registration().start().await;
    let mut command = Command::new(venv.join("bin").join("python"));
    command
        .arg(interop_dir().join("nio_flow.py"))
        .arg(server.url());
    let output = run(command, SCRIPT_TIMEOUT, "nio_flow.py").await;
    println!("{}", output.describe());
    assert_eq!(
        output.code,
        Some(0),
        "the matrix-nio flow failed: {}",
        output.describe()
    );
}

#[tokio::test]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn synapse_register_new_matrix_user_creates_an_admin() {
    let venv = venv().await;
    let server = Server::builder().start().await;
    let mut command = Command::new(venv.join("bin").join("register_new_matrix_user"));
    command.args([
        "-u",
        "admin1",
        "-p",
        "pw",
        "-a",
        "-k",
        &server.shared_secret(),
        &server.url(),
    ]);
    let output = run(command, SCRIPT_TIMEOUT, "register_new_matrix_user").await;
    assert_eq!(
        output.code,
        Some(0),
        "register_new_matrix_user failed: {}",
        output.describe()
    );

    let admin = server.client().login("admin1", "pw").await;
    assert_eq!(admin.user_id, server.user_id("admin1"));
    let whoami = admin.whoami().await.ok();
    assert_eq!(whoami["user_id"], json!(server.user_id("admin1")));
    server
        .client()
        .login_reply("admin1", "wrong")
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A wrong shared secret is refused, and creates nobody.
    let mut command = Command::new(venv.join("bin").join("register_new_matrix_user"));
    command.args([
        "-u",
        "intruder",
        "-p",
        "pw",
        "--no-admin",
        "-k",
        "not-the-secret",
        &server.url(),
    ]);
    let output = run(command, SCRIPT_TIMEOUT, "register_new_matrix_user").await;
    assert_ne!(
        output.code,
        Some(0),
        "a wrong shared secret was accepted: {}",
        output.describe()
    );
    server
        .client()
        .login_reply("intruder", "pw")
        .await
        .assert_error(403, "M_FORBIDDEN");
}
