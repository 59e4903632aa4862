//! Runs the real `myelin` binary: `generate` into a fresh directory, then
//! `run` as a child process on a free local port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::Client;

/// How long a server gets to print its listening line and answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a server gets to exit after SIGTERM (it drains for up to 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
const LISTENING: &str = "Myelin listening on http://";

/// The sum of a metric's samples on a process's `/metrics` whose label set
/// contains `labels`.
pub async fn metric_sum(url: &str, name: &str, labels: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap_or_else(|error| panic!("{url}/metrics: {error}"))
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The workspace root (this package lives in `<workspace>/tests`).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `myelin` binary: `MYELIN_TEST_BINARY` if set, else
/// `<target>/debug/myelin`, built with `cargo build -p myelin` if missing.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(given) = std::env::var_os("MYELIN_TEST_BINARY") {
            return PathBuf::from(given);
        }
        let workspace = workspace_dir();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => workspace.join(dir),
            None => workspace.join("target"),
        };
        let path = target.join("debug").join("myelin");
        if !path.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!(
                "{} is missing; running cargo build -p myelin",
                path.display()
            );
            let status = Command::new(cargo)
                .args(["build", "-p", "myelin"])
                .current_dir(&workspace)
                .status()
                .expect("cannot run cargo build -p myelin");
            assert!(status.success(), "cargo build -p myelin failed: {status}");
            assert!(
                path.exists(),
                "cargo build -p myelin succeeded but {} is still missing",
                path.display()
            );
        }
        path
    })
}

/// A directory under the system temp dir, removed on drop unless the test
/// failed (then it is kept, with the server's logs, and its path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "myelin-it-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback port nobody listens on right now (for listeners a test
/// configures itself; another process could take it before it is bound).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Runs `myelin` with the given arguments to completion, with no `MYELIN_*`
/// variables from the test environment leaking in.
pub fn run_myelin(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(binary());
    command.args(args);
    scrub_env(&mut command);
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run myelin {args:?}: {error}"))
}

/// Removes the caller's `MYELIN_*`/`SYNAPSE_*` variables (other than the
/// log filter), which the server would read as config overrides.
pub fn scrub_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if (name.starts_with("MYELIN_") || name.starts_with("SYNAPSE_")) && name != "MYELIN_LOG" {
            command.env_remove(name);
        }
    }
}

/// Configures a [`Server`] before it starts.
pub struct ServerBuilder {
    server_name: String,
    env: BTreeMap<String, String>,
    config_edits: Vec<(String, String)>,
}

impl ServerBuilder {
    /// Sets `MYELIN_<key>` for the server process (overrides the defaults).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_owned(), value.into());
        self
    }

    /// Replaces `from` by `to` in the generated homeserver.yaml (for what
    /// environment overrides cannot express, such as an extra listener).
    pub fn edit_config(mut self, from: &str, to: &str) -> Self {
        self.config_edits.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Leaves a `MYELIN_*` setting at the server's own default.
    pub fn unset(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// The server's name (`it.test` unless set).
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = name.to_owned();
        self
    }

    /// Open registration with only the dummy UIA stage.
    pub fn open_registration(self) -> Self {
        self.env("MYELIN_ENABLE_REGISTRATION", "true")
            .env("MYELIN_ENABLE_REGISTRATION_WITHOUT_VERIFICATION", "true")
    }

    pub async fn start(self) -> Server {
        let dir = TempDir::new("server");
        let data_dir = dir.path().join("data");
        let data_dir_text = data_dir.to_str().expect("temp paths are UTF-8").to_owned();
        let output = run_myelin(&[
            "generate",
            "--server-name",
            &self.server_name,
            "--data-dir",
            &data_dir_text,
        ]);
        assert!(
            output.status.success(),
            "myelin generate failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let config_path = data_dir.join("homeserver.yaml");
        let yaml = std::fs::read_to_string(&config_path).expect("generated homeserver.yaml");
        assert!(
            yaml.contains("port: 8008"),
            "generated config has no `port: 8008`"
        );
        // Port 0 for the first start; the port it gets is pinned for restarts.
        let mut yaml = yaml.replace("port: 8008", "port: 0").replace(
            "bind_addresses: ['0.0.0.0']",
            "bind_addresses: ['127.0.0.1']",
        );
        for (from, to) in &self.config_edits {
            assert!(
                yaml.contains(from.as_str()),
                "homeserver.yaml has no {from:?}"
            );
            yaml = yaml.replace(from.as_str(), to);
        }
        std::fs::write(&config_path, yaml).expect("rewrite homeserver.yaml");
        let mut server = Server {
            dir,
            config_path,
            server_name: self.server_name,
            env: self.env,
            child: None,
            port: 0,
            starts: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
        };
        server.spawn().await;
        server
    }
}

/// A running `myelin run` child process with its own data directory.
pub struct Server {
    dir: TempDir,
    config_path: PathBuf,
    server_name: String,
    env: BTreeMap<String, String>,
    child: Option<Child>,
    port: u16,
    starts: u32,
    http: reqwest::Client,
}

impl Server {
    /// A server named `it.test` on SQLite, with registration closed and the
    /// message, registration, login and join rate limits off (tests that
    /// exercise a limit set it back).
    pub fn builder() -> ServerBuilder {
        let mut env = BTreeMap::new();
        for key in [
            "MYELIN_RC_MESSAGE__PER_SECOND",
            "MYELIN_RC_REGISTRATION__PER_SECOND",
            "MYELIN_RC_LOGIN__ADDRESS__PER_SECOND",
            "MYELIN_RC_LOGIN__ACCOUNT__PER_SECOND",
            "MYELIN_RC_LOGIN__FAILED_ATTEMPTS__PER_SECOND",
            "MYELIN_RC_JOINS__LOCAL__PER_SECOND",
        ] {
            env.insert(key.to_owned(), "0".to_owned());
        }
        ServerBuilder {
            server_name: "it.test".to_owned(),
            env,
            config_edits: Vec::new(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's homeserver.yaml (for `myelin <command> -c`).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `@local:server_name`.
    pub fn user_id(&self, local: &str) -> String {
        format!("@{local}:{}", self.server_name)
    }

    /// A client without a session, pointed at this server.
    pub fn client(&self) -> Client {
        Client::new(&self.url())
    }

    /// The server's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `registration_shared_secret` from the generated config.
    pub fn shared_secret(&self) -> String {
        let yaml = std::fs::read_to_string(&self.config_path).expect("read homeserver.yaml");
        yaml.lines()
            .find_map(|line| line.strip_prefix("registration_shared_secret:"))
            .map(|value| value.trim().trim_matches('"').to_owned())
            .filter(|secret| !secret.is_empty())
            .expect("homeserver.yaml has a registration_shared_secret")
    }

    /// Everything the server wrote to stderr (its logs) so far.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|n| std::fs::read_to_string(self.dir.path().join(format!("stderr.{n}.log"))))
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn spawn(&mut self) {
        let generation = self.starts;
        self.starts += 1;
        let stdout_path = self.dir.path().join(format!("stdout.{generation}.log"));
        let stderr_path = self.dir.path().join(format!("stderr.{generation}.log"));
        let stdout = std::fs::File::create(&stdout_path).expect("create stdout log");
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
        let mut command = Command::new(binary());
        command
            .arg("run")
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        scrub_env(&mut command);
        if std::env::var_os("MYELIN_LOG").is_none() {
            command.env("MYELIN_LOG", "info,ruma_state_res=warn");
        }
        command.envs(&self.env);
        let child = command.spawn().expect("cannot start myelin run");
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        let address = loop {
            let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(address) = printed.lines().find_map(|l| l.strip_prefix(LISTENING)) {
                break address.trim().to_owned();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "myelin run exited with {status} before listening\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "myelin run did not print its listening line within {START_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let port: u16 = address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a port from {address:?}"));
        if self.port == 0 {
            self.port = port;
            let yaml = std::fs::read_to_string(&self.config_path).expect("read homeserver.yaml");
            std::fs::write(
                &self.config_path,
                yaml.replace("port: 0", &format!("port: {port}")),
            )
            .expect("pin the port in homeserver.yaml");
        } else {
            assert_eq!(port, self.port, "the server came back on another port");
        }
        self.wait_healthy(deadline).await;
    }

    async fn wait_healthy(&mut self, deadline: Instant) {
        let health = format!("{}/health", self.url());
        loop {
            if let Ok(response) = self.http.get(&health).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "myelin run exited with {status} before /health answered\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "/health did not answer 200 within {START_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for myelin") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "myelin did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sets `MYELIN_<key>` for the next start (see [`Server::restart`]).
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.insert(key.to_owned(), value.into());
    }

    /// Stops the server with SIGTERM and starts it again on the same data
    /// directory, config and port.
    pub async fn restart(&mut self) {
        let status = self.stop().await;
        assert!(
            status.success(),
            "myelin exited with {status} after SIGTERM\n{}",
            self.log_tail()
        );
        self.spawn().await;
    }

    /// Starts a server stopped with [`Server::stop`] or [`Server::kill`]
    /// again, on the same data directory, config and port.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Kills the server (SIGKILL) without letting it drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "server logs ({}):\n{}",
                self.dir.path().display(),
                self.log_tail()
            );
        }
        self.kill();
    }
}
