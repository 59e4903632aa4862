//! The split deployment as local processes: `scripts/split-up.sh` starts
//! traefik, a gateway, two replicas each of client-api, synchrotron and
//! event-persister, and media replicas, on PostgreSQL and NATS; these tests
//! drive it over HTTP (through traefik unless a test needs one replica), kill
//! workers with SIGKILL under load, add and remove persisters while it runs,
//! and check the invariants of the architecture: an acknowledged event is
//! never lost, per room one order, no forks, the same transaction ID gives
//! the same event on any replica, planned partition handovers fail no
//! request; and media uploaded once is served by every media replica.
//!
//! Runs when both `MYELIN_TEST_POSTGRES_URL` (an admin URL; each topology
//! gets a database of its own) and `MYELIN_TEST_NATS_URL` are set. The
//! topologies run one at a time. A failing test prints the warnings and the
//! last lines of every process's log and keeps the run directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

use crate::client::{Client, encode, event_id_of, message_id_and_body};
use crate::harness::{TempDir, workspace_dir};
use crate::interop;

const POSTGRES_VAR: &str = "MYELIN_TEST_POSTGRES_URL";
const NATS_VAR: &str = "MYELIN_TEST_NATS_URL";
/// `split-up.sh` may build the binaries on a cold cache.
const UP_TIMEOUT: Duration = Duration::from_secs(1800);
const ADD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client keeps retrying one send with the same transaction ID.
const RETRY_WINDOW: Duration = Duration::from_secs(60);
/// How long a reader may take to see everything that was acknowledged.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the senders may take to show progress after a disruption.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(240);
const PASSWORD: &str = "split-password-1";
/// A sync filter whose timeline limit is far above what a test sends, so an
/// incremental sync is never cut.
const TIMELINE_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;

/// The admin PostgreSQL URL and the NATS URL, or `None` (after printing
/// why) when the split tests cannot run here.
pub(crate) fn settings() -> Option<(String, String)> {
    match (std::env::var(POSTGRES_VAR), std::env::var(NATS_VAR)) {
        (Ok(postgres), Ok(nats)) if !postgres.is_empty() && !nats.is_empty() => {
            Some((postgres, nats))
        }
        _ => {
            println!("skipped: {POSTGRES_VAR} or {NATS_VAR} not set");
            None
        }
    }
}

fn scripts_dir() -> PathBuf {
    workspace_dir().join("scripts")
}

/// One topology at a time: each is nine processes.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running topology from `split-up.sh`; `split-down.sh` runs when it is
/// dropped, also when the test failed (then the logs are printed first).
pub(crate) struct Split {
    dir: PathBuf,
    hs_url: String,
    topology: BTreeMap<String, String>,
    _temp: TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// The process has exited (a zombie nobody reaped yet counts as exited).
fn process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    })
}

/// Sends `SIG{name}` to a process of the topology.
fn signal(name: &str, pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} {pid} ({name}) failed");
}

/// A process `split-add.sh` started.
pub(crate) struct Added {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) url: String,
}

/// A `Command` for a script, without the caller's `MYELIN_*`/`SYNAPSE_*`
/// settings (the log filter and the venv excepted).
fn script(name: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(scripts_dir().join(name));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let kept = matches!(key, "MYELIN_LOG" | "MYELIN_VENV");
        if (key.starts_with("MYELIN_") || key.starts_with("SYNAPSE_")) && !kept {
            command.env_remove(key);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn read_topology(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("topology.env")).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

impl Split {
    /// Two replicas of each worker kind behind one gateway.
    async fn up(settings: &(String, String)) -> Split {
        Split::up_with(
            settings,
            &[
                ("CLIENT_APIS", "2"),
                ("SYNCHROTRONS", "2"),
                ("PERSISTERS", "2"),
                ("GATEWAYS", "1"),
            ],
        )
        .await
    }

    /// A topology with the given replica counts (`split-up.sh` settings).
    pub(crate) async fn up_with(
        (postgres, nats): &(String, String),
        counts: &[(&str, &str)],
    ) -> Split {
        let turn = TURN.lock().await;
        let temp = TempDir::new("split");
        let dir = temp.path().join("run");
        let mut split = Split {
            dir: dir.clone(),
            hs_url: String::new(),
            topology: BTreeMap::new(),
            _temp: temp,
            _turn: turn,
        };
        let mut command = script("split-up.sh");
        command
            .env("MYELIN_POSTGRES_URL", postgres)
            .env("MYELIN_NATS_URL", nats)
            .env("SPLIT_DIR", &dir)
            .envs(counts.iter().copied());
        let started = Instant::now();
        let child = command.spawn().expect("cannot run scripts/split-up.sh");
        let output = tokio::time::timeout(UP_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("split-up.sh did not finish within {UP_TIMEOUT:?}"))
            .expect("split-up.sh");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "split-up.sh failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
        println!("split-up.sh took {:.1?}:\n{stdout}", started.elapsed());
        split.hs_url = stdout
            .lines()
            .find_map(|line| line.strip_prefix("HS_URL="))
            .unwrap_or_else(|| panic!("split-up.sh printed no HS_URL=\n{stdout}\n{stderr}"))
            .trim()
            .to_owned();
        split.topology = read_topology(&dir);
        split
    }

    /// One replica of each worker kind but `media` media replicas, every
    /// Myelin process with the `MYELIN_KEY=VALUE` settings in `env`.
    pub(crate) async fn up_small_with_env(
        settings: &(String, String),
        media: &str,
        env: &[String],
    ) -> Split {
        let env_dir = TempDir::new("split-env");
        let env_file = env_dir.path().join("myelin.env");
        std::fs::write(&env_file, env.join("\n") + "\n").expect("write the env file");
        let env_file = env_file.to_str().expect("temp paths are UTF-8").to_owned();
        // split-up.sh copies the settings; the file may go once it is done.
        Split::up_with(
            settings,
            &[
                ("CLIENT_APIS", "1"),
                ("SYNCHROTRONS", "1"),
                ("PERSISTERS", "1"),
                ("GATEWAYS", "1"),
                ("MEDIA", media),
                ("SPLIT_ENV_FILE", &env_file),
            ],
        )
        .await
    }

    fn get(&self, key: &str) -> &str {
        self.topology
            .get(key)
            .unwrap_or_else(|| panic!("topology.env has no {key}: {:?}", self.topology))
    }

    /// `(name, url, pid)` of every process of a role (`CLIENT_API`, ...),
    /// in the order they were started.
    pub(crate) fn processes(&self, role: &str) -> Vec<(String, String, u32)> {
        (1..)
            .map_while(|n| {
                let pid = self.topology.get(&format!("{role}_{n}_PID"))?;
                let url = self
                    .topology
                    .get(&format!("{role}_{n}_URL"))
                    .cloned()
                    .unwrap_or_default();
                let name = self
                    .topology
                    .get(&format!("{role}_{n}_NAME"))
                    .cloned()
                    .unwrap_or_default();
                Some((name, url, pid.parse().expect("a numeric PID")))
            })
            .collect()
    }

    fn urls(&self, role: &str) -> Vec<String> {
        self.processes(role)
            .into_iter()
            .map(|(_, url, _)| url)
            .collect()
    }

    /// `(name, url)` of every Myelin process (`<ROLE>_<N>_URL` entries).
    pub(crate) fn process_urls(&self) -> Vec<(String, String)> {
        self.topology
            .iter()
            .filter_map(|(key, url)| {
                let role_n = key.strip_suffix("_URL")?;
                let (role, n) = role_n.rsplit_once('_')?;
                n.parse::<u32>().ok()?;
                let name = self.topology.get(&format!("{role}_{n}_NAME"))?;
                Some((name.clone(), url.clone()))
            })
            .collect()
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&self.hs_url)
    }

    /// Starts one more process of `role` with `split-add.sh`.
    pub(crate) async fn add(&mut self, role: &str) -> Added {
        let mut command = script("split-add.sh");
        command.arg(role).arg(&self.dir);
        let child = command.spawn().expect("cannot run scripts/split-add.sh");
        let output = tokio::time::timeout(ADD_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("split-add.sh {role} did not finish within {ADD_TIMEOUT:?}"))
            .expect("split-add.sh");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "split-add.sh {role} failed with {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        self.topology = read_topology(&self.dir);
        let field = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("split-add.sh printed no {key}=: {stdout}"))
                .trim()
                .to_owned()
        };
        Added {
            name: field("NAME"),
            pid: field("PID").parse().expect("a numeric PID"),
            url: field("URL"),
        }
    }

    /// SIGKILL, then waits until the process is gone.
    pub(crate) async fn kill9(&self, name: &str, pid: u32) {
        signal(name, pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if process_gone(pid) {
                println!("killed {name} (pid {pid}) with SIGKILL");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} (pid {pid}) still runs 30 s after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs every process of `role` still running.
    pub(crate) async fn kill9_role(&self, role: &str) {
        for (name, _, pid) in self.processes(role) {
            if !process_gone(pid) {
                self.kill9(&name, pid).await;
            }
        }
    }

    /// SIGTERM, then waits until the process has exited.
    pub(crate) async fn terminate(&self, name: &str, pid: u32) {
        signal(name, pid, "TERM");
        self.wait_exit(name, pid).await;
    }

    /// Waits until a process that was told to stop has exited.
    async fn wait_exit(&self, name: &str, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !process_gone(pid) {
            assert!(
                Instant::now() < deadline,
                "{name} (pid {pid}) still runs 60 s after it was told to stop"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("{name} (pid {pid}) stopped");
    }

    pub(crate) async fn database(&self) -> tokio_postgres::Client {
        let url = self.get("DATABASE_URL").to_owned();
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("postgres connection: {error}");
            }
        });
        client
    }

    /// Rooms with more than one forward extremity: forks.
    async fn forks(&self) -> Vec<(String, i64)> {
        self.database()
            .await
            .query(
                "SELECT room_id, count(*) FROM forward_extremities \
                 GROUP BY room_id HAVING count(*) > 1",
                &[],
            )
            .await
            .expect("query forward_extremities")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Asserts that no room has forked.
    async fn assert_no_forks(&self) {
        let forks = self.forks().await;
        assert!(
            forks.is_empty(),
            "rooms with more than one forward extremity (forked): {forks:?}"
        );
    }

    /// Prints which backend holds how many partition leases (advisory locks).
    async fn print_leases(&self) {
        let rows = self
            .database()
            .await
            .query(
                "SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND granted GROUP BY pid ORDER BY pid",
                &[],
            )
            .await
            .expect("query pg_locks");
        let leases: Vec<(i32, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        println!("partition leases by database backend: {leases:?}");
    }

    fn log_report(&self) -> String {
        let mut report = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) else {
            return report;
        };
        let mut logs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let problems: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .collect();
            report.push_str(&format!(
                "--- {} ({} warnings/errors, last 30 shown) ---\n{}\n--- last 15 lines ---\n{}\n",
                log.display(),
                problems.len(),
                problems[problems.len().saturating_sub(30)..].join("\n"),
                lines[lines.len().saturating_sub(15)..].join("\n"),
            ));
        }
        report
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "split topology logs ({}):\n{}",
                self.dir.display(),
                self.log_report()
            );
        }
        if !self.dir.exists() {
            return;
        }
        let output = std::process::Command::new("bash")
            .arg(scripts_dir().join("split-down.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "split-down.sh {} failed with {}:\n{}",
                self.dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("cannot run split-down.sh: {error}"),
        }
    }
}

// --- requests that may fail, for clients that retry ------------------------

pub(crate) async fn try_request(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, String> {
    let mut request = client
        .request_builder(method.clone(), path)
        .timeout(timeout);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("{method} {path}: no answer: {error}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{method} {path}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|error| format!("{method} {path}: {error}: {text}"))
}

pub(crate) fn send_path(room_id: &str, txn_id: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        encode(room_id),
        encode(txn_id)
    )
}

/// One acknowledged send.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    room_id: String,
    sender: String,
    txn_id: String,
    pub(crate) event_id: String,
    attempts: u32,
    /// What the attempts before the acknowledged one got.
    errors: Vec<String>,
}

/// Sends a text whose body is the transaction ID, retrying with the same
/// transaction ID until it is acknowledged; gives up (with every error
/// seen) when an attempt would start after [`RETRY_WINDOW`].
pub(crate) async fn send_retrying(
    client: &Client,
    room_id: &str,
    txn_id: &str,
) -> Result<Sent, String> {
    let content = json!({"msgtype": "m.text", "body": txn_id});
    let path = send_path(room_id, txn_id);
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_request(
            client,
            reqwest::Method::PUT,
            &path,
            Some(&content),
            Duration::from_secs(120),
        )
        .await
        {
            Ok(body) => match body["event_id"].as_str() {
                Some(event_id) => {
                    return Ok(Sent {
                        room_id: room_id.to_owned(),
                        sender: client.user_id.clone(),
                        txn_id: txn_id.to_owned(),
                        event_id: event_id.to_owned(),
                        attempts,
                        errors,
                    });
                }
                None => errors.push(format!("a send answer without event_id: {body}")),
            },
            Err(error) => errors.push(format!("after {:.1?}: {error}", started.elapsed())),
        }
        if started.elapsed() >= RETRY_WINDOW {
            return Err(format!(
                "{} could not send {txn_id} to {room_id} within {RETRY_WINDOW:?} \
                 ({attempts} attempts): {errors:#?}",
                client.user_id
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn try_sync(
    client: &Client,
    since: Option<&str>,
    timeout_ms: u64,
) -> Result<Value, String> {
    let mut path = format!(
        "/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}",
        encode(TIMELINE_FILTER)
    );
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    try_request(
        client,
        reqwest::Method::GET,
        &path,
        None,
        Duration::from_millis(timeout_ms) + Duration::from_secs(90),
    )
    .await
}

pub(crate) fn next_batch(sync: &Value) -> String {
    sync["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("sync without next_batch: {sync}"))
        .to_owned()
}

/// Every event of a room's history as `member` sees it, oldest first,
/// paging `/messages` backwards from the end.
async fn history(member: &Client, room_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..1000 {
        let page = member.messages(room_id, "b", from.as_deref(), 100).await;
        let chunk = page["chunk"]
            .as_array()
            .unwrap_or_else(|| panic!("/messages without chunk: {page}"));
        events.extend(chunk.iter().cloned());
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => {
                events.reverse();
                return events;
            }
        }
    }
    panic!("/messages of {room_id} for {} did not end", member.user_id);
}

/// The `m.room.message` events of a room's history as `member` sees them:
/// `(event_id, body)`, oldest first.
pub(crate) async fn message_history(member: &Client, room_id: &str) -> Vec<(String, String)> {
    history(member, room_id)
        .await
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(message_id_and_body)
        .collect()
}

/// Checks every room's history against the acknowledged sends: each member
/// sees the same messages in the same order; each acknowledged event is
/// there exactly once (and no other event carries its body, which a retry
/// that made a second event would); each sender's sends keep their order.
/// Returns each room's message event IDs in history order.
async fn check_histories(
    members: &[Client],
    rooms: &[String],
    sent: &[Sent],
) -> HashMap<String, Vec<String>> {
    let mut orders = HashMap::new();
    for room_id in rooms {
        let mut reference: Option<(String, Vec<(String, String)>)> = None;
        for member in members {
            let seen = message_history(member, room_id).await;
            match &reference {
                None => reference = Some((member.user_id.clone(), seen)),
                Some((first, expected)) => {
                    if &seen != expected {
                        let diverge = seen
                            .iter()
                            .zip(expected)
                            .position(|(a, b)| a != b)
                            .unwrap_or(seen.len().min(expected.len()));
                        panic!(
                            "{room_id}: /messages differs between {first} ({} messages) and {} \
                             ({} messages), first at index {diverge}: {:?} vs {:?}",
                            expected.len(),
                            member.user_id,
                            seen.len(),
                            expected.get(diverge),
                            seen.get(diverge),
                        );
                    }
                }
            }
        }
        let (_, messages) = reference.expect("at least one member");
        let position: HashMap<&str, usize> = messages
            .iter()
            .enumerate()
            .map(|(index, (event_id, _))| (event_id.as_str(), index))
            .collect();
        assert_eq!(
            position.len(),
            messages.len(),
            "{room_id}: an event appears twice in /messages"
        );
        let mut bodies: HashMap<&str, Vec<&str>> = HashMap::new();
        for (event_id, body) in &messages {
            bodies.entry(body).or_default().push(event_id);
        }
        let in_room: Vec<&Sent> = sent.iter().filter(|s| &s.room_id == room_id).collect();
        for send in &in_room {
            assert!(
                position.contains_key(send.event_id.as_str()),
                "{room_id}: {} was acknowledged to {} (txn {}, {} attempts) but is not in \
                 /messages ({} messages there)",
                send.event_id,
                send.sender,
                send.txn_id,
                send.attempts,
                messages.len()
            );
            let copies = bodies
                .get(send.txn_id.as_str())
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                copies,
                vec![send.event_id.as_str()],
                "{room_id}: txn {} of {} ({} attempts) made these events: {copies:?}; \
                 the client got {}",
                send.txn_id,
                send.sender,
                send.attempts,
                send.event_id
            );
        }
        assert_eq!(
            messages.len(),
            in_room.len(),
            "{room_id}: /messages holds {} messages but {} were acknowledged",
            messages.len(),
            in_room.len()
        );
        // One sender's sends to one room, each sent after the previous was
        // acknowledged, keep that order.
        let mut last: HashMap<&str, (usize, &str)> = HashMap::new();
        for send in &in_room {
            let at = position[send.event_id.as_str()];
            if let Some((before, previous)) = last.get(send.sender.as_str()) {
                assert!(
                    at > *before,
                    "{room_id}: {} sent {} after {previous} was acknowledged, but /messages \
                     orders it before",
                    send.sender,
                    send.txn_id
                );
            }
            last.insert(send.sender.as_str(), (at, send.txn_id.as_str()));
        }
        orders.insert(
            room_id.clone(),
            messages.into_iter().map(|(event_id, _)| event_id).collect(),
        );
    }
    orders
}

/// Registers `count` users named `{prefix}{n}`.
pub(crate) async fn register_users(split: &Split, prefix: &str, count: usize) -> Vec<Client> {
    let mut users = Vec::new();
    for n in 0..count {
        users.push(
            split
                .client()
                .register(&format!("{prefix}{n}"), PASSWORD)
                .await,
        );
    }
    users
}

/// `count` users named `{prefix}{n}` plus a reader; the last list is all of them.
async fn members_and_reader(
    split: &Split,
    prefix: &str,
    count: usize,
) -> (Vec<Client>, Client, Vec<Client>) {
    let users = register_users(split, prefix, count).await;
    let reader = split.client().register("reader", PASSWORD).await;
    let mut everyone = users.clone();
    everyone.push(reader.clone());
    (users, reader, everyone)
}

/// The invariants after a load: the reader's since-token sync saw every
/// acknowledged event exactly once, every member's history holds them in
/// one order that the sync matches, and no room forked.
async fn assert_one_order_for_everyone(
    split: &Split,
    reader: Reader,
    everyone: &[Client],
    rooms: &[String],
    sent: &[Sent],
) {
    let sync_order = reader.finish(sent).await;
    let orders = check_histories(everyone, rooms, sent).await;
    assert_sync_matches_history(&sync_order, &orders);
    split.assert_no_forks().await;
}

/// `count` public rooms made by the first user, joined by all the others.
async fn shared_rooms(users: &[Client], count: usize) -> Vec<String> {
    let mut rooms = Vec::new();
    for n in 0..count {
        let room_id = users[0]
            .create_room(&json!({"preset": "public_chat", "name": format!("split room {n}")}))
            .await;
        for user in &users[1..] {
            user.join(&room_id).await.ok();
        }
        rooms.push(room_id);
    }
    rooms
}

/// Senders that keep sending to every room, each (user, room) pair in its
/// own task, one send after the other, retrying each until acknowledged,
/// until `stop` is set and each pair has sent at least `minimum`.
struct Load {
    tasks: JoinSet<Result<Vec<Sent>, String>>,
    /// Sends that were never acknowledged, as soon as they give up.
    failures: Arc<Mutex<Vec<String>>>,
    acknowledged: Arc<AtomicUsize>,
    per_stream: Arc<Vec<AtomicUsize>>,
    stop: Arc<AtomicBool>,
}

impl Load {
    fn start(users: &[Client], rooms: &[String], tag: &str, minimum: usize) -> Load {
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = users.len() * rooms.len();
        let per_stream: Arc<Vec<AtomicUsize>> =
            Arc::new((0..streams).map(|_| AtomicUsize::new(0)).collect());
        let mut tasks = JoinSet::new();
        for (u, user) in users.iter().enumerate() {
            for (r, room_id) in rooms.iter().enumerate() {
                let stream = u * rooms.len() + r;
                let (user, room_id, tag) = (user.clone(), room_id.clone(), tag.to_owned());
                let (acknowledged, per_stream, stop, failures) = (
                    Arc::clone(&acknowledged),
                    Arc::clone(&per_stream),
                    Arc::clone(&stop),
                    Arc::clone(&failures),
                );
                tasks.spawn(async move {
                    let mut sent = Vec::new();
                    while sent.len() < minimum || !stop.load(Ordering::SeqCst) {
                        let txn_id = format!("{tag}-u{u}-r{r}-{}", sent.len());
                        match send_retrying(&user, &room_id, &txn_id).await {
                            Ok(send) => sent.push(send),
                            Err(failure) => {
                                failures
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(failure.clone());
                                return Err(failure);
                            }
                        }
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                        per_stream[stream].fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(sent)
                });
            }
        }
        Load {
            tasks,
            failures,
            acknowledged,
            per_stream,
            stop,
        }
    }

    /// Panics with the sends that gave up, if any did.
    fn assert_no_failures(&self) {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            failures.is_empty(),
            "sends were never acknowledged:\n{}",
            failures.join("\n")
        );
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::SeqCst)
    }

    fn snapshot(&self) -> Vec<usize> {
        self.per_stream
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect()
    }

    /// Waits until at least `total` sends were acknowledged.
    async fn wait_total(&self, total: usize, what: &str) {
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        while self.acknowledged() < total {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {total} sends acknowledged after {PROGRESS_TIMEOUT:?}",
                self.acknowledged()
            );
            self.assert_no_failures();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every (user, room) stream has `more` acknowledged sends
    /// beyond `since`.
    async fn wait_each_beyond(&self, since: &[usize], more: usize, what: &str) {
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        loop {
            let now = self.snapshot();
            let stalled: Vec<usize> = (0..now.len())
                .filter(|&s| now[s] < since[s] + more)
                .collect();
            if stalled.is_empty() {
                return;
            }
            self.assert_no_failures();
            assert!(
                Instant::now() < deadline,
                "{what}: streams {stalled:?} made fewer than {more} sends in {PROGRESS_TIMEOUT:?} \
                 (counts then {since:?}, now {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the senders and returns every acknowledged send; fails if any
    /// send was not acknowledged within its retry window.
    async fn finish(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        let mut sent = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            match joined.expect("a sender task panicked") {
                Ok(mut more) => sent.append(&mut more),
                Err(failure) => failures.push(failure),
            }
        }
        assert!(
            failures.is_empty(),
            "{} sends were never acknowledged:\n{}",
            failures.len(),
            failures.join("\n")
        );
        let retried: Vec<String> = sent
            .iter()
            .filter(|s| s.attempts > 1)
            .map(|s| {
                let mut first = s.errors.first().cloned().unwrap_or_default();
                first.truncate(300);
                format!(
                    "{} ({} attempts; first error {first})",
                    s.txn_id, s.attempts
                )
            })
            .collect();
        println!(
            "{} sends acknowledged; {} needed retries:",
            sent.len(),
            retried.len()
        );
        for line in &retried {
            println!("  {line}");
        }
        sent
    }
}

/// A member following rooms with incremental syncs through the gateway, from
/// a token taken before the sends, until it has seen every acknowledged event.
struct Reader {
    task: tokio::task::JoinHandle<Result<ReaderOutcome, String>>,
    expected: tokio::sync::watch::Sender<Option<HashSet<String>>>,
}

struct ReaderOutcome {
    /// Per room, the message event IDs in the order the syncs delivered them.
    order: HashMap<String, Vec<String>>,
    duplicates: Vec<String>,
    syncs: usize,
    /// Failed syncs, retried from the same token.
    errors: Vec<String>,
}

impl Reader {
    async fn start(reader: &Client, rooms: &[String]) -> Reader {
        let initial = try_sync(reader, None, 0).await.expect("initial sync");
        let mut since = next_batch(&initial);
        let (expected, expected_rx) = tokio::sync::watch::channel::<Option<HashSet<String>>>(None);
        let reader = reader.clone();
        let rooms: HashSet<String> = rooms.iter().cloned().collect();
        let task = tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            let mut outcome = ReaderOutcome {
                order: HashMap::new(),
                duplicates: Vec::new(),
                syncs: 0,
                errors: Vec::new(),
            };
            let mut failing_since: Option<Instant> = None;
            let deadline = Instant::now() + DELIVERY_TIMEOUT + 2 * PROGRESS_TIMEOUT;
            loop {
                if let Some(expected) = expected_rx.borrow().as_ref()
                    && expected.is_subset(&seen)
                {
                    return Ok(outcome);
                }
                if Instant::now() > deadline {
                    let missing = expected_rx
                        .borrow()
                        .as_ref()
                        .map(|expected| expected.difference(&seen).cloned().collect::<Vec<_>>());
                    return Err(format!(
                        "{} did not see every acknowledged event through incremental syncs \
                         in time (last token {since}); missing: {missing:?}",
                        reader.user_id
                    ));
                }
                let sync = match try_sync(&reader, Some(&since), 5000).await {
                    Ok(sync) => {
                        failing_since = None;
                        sync
                    }
                    Err(error) => {
                        let first = *failing_since.get_or_insert_with(Instant::now);
                        outcome.errors.push(error);
                        if first.elapsed() > RETRY_WINDOW {
                            return Err(format!(
                                "{}'s syncs failed for {RETRY_WINDOW:?}: {:#?}",
                                reader.user_id, outcome.errors
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                };
                outcome.syncs += 1;
                if let Some(joined) = sync["rooms"]["join"].as_object() {
                    for (room_id, room) in joined {
                        if !rooms.contains(room_id) {
                            continue;
                        }
                        if room["timeline"]["limited"] == json!(true) {
                            return Err(format!(
                                "an incremental sync from {since} came back limited for \
                                 {room_id} despite a timeline limit of 1000"
                            ));
                        }
                        for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                            let event_id = event["event_id"].as_str().unwrap_or_default();
                            if !seen.insert(event_id.to_owned()) {
                                outcome
                                    .duplicates
                                    .push(format!("{event_id} again in the sync from {since}"));
                            }
                            if event["type"] == "m.room.message" {
                                outcome
                                    .order
                                    .entry(room_id.clone())
                                    .or_default()
                                    .push(event_id.to_owned());
                            }
                        }
                    }
                }
                since = next_batch(&sync);
            }
        });
        Reader { task, expected }
    }

    /// Waits until the reader has seen every event of `sent`; fails if it
    /// saw any event twice. Returns its per-room order of messages.
    async fn finish(self, sent: &[Sent]) -> HashMap<String, Vec<String>> {
        let expected: HashSet<String> = sent.iter().map(|s| s.event_id.clone()).collect();
        assert_eq!(
            expected.len(),
            sent.len(),
            "two sends got the same event ID"
        );
        self.expected.send_replace(Some(expected));
        let outcome = self
            .task
            .await
            .expect("the reader task panicked")
            .unwrap_or_else(|failure| panic!("{failure}"));
        println!(
            "the reader saw every acknowledged event in {} incremental syncs ({} failed syncs \
             retried: {:?})",
            outcome.syncs,
            outcome.errors.len(),
            outcome.errors
        );
        assert!(
            outcome.duplicates.is_empty(),
            "incremental syncs delivered events more than once: {:?}",
            outcome.duplicates
        );
        outcome.order
    }
}

/// The reader's syncs delivered each room's messages in /messages order.
fn assert_sync_matches_history(
    synced: &HashMap<String, Vec<String>>,
    history: &HashMap<String, Vec<String>>,
) {
    for (room_id, messages) in history {
        let synced = synced.get(room_id).cloned().unwrap_or_default();
        assert_eq!(
            &synced, messages,
            "{room_id}: the reader's incremental syncs and /messages order the room's \
             messages differently"
        );
    }
}

/// Sums `myelin_http_requests_total` of the `/sync` route on a process.
async fn sync_requests(url: &str) -> u64 {
    crate::harness::metric_sum(url, "myelin_http_requests_total", "sync\"").await
}

pub(crate) async fn ready_status(url: &str) -> (u16, String) {
    let request = reqwest::Client::new()
        .get(format!("{url}/ready"))
        .timeout(Duration::from_secs(10));
    match request.send().await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(error) => (0, error.to_string()),
    }
}

// --- the tests ----------------------------------------------------------------

/// matrix-nio, a client we did not write, through traefik and the gateway.
#[tokio::test]
#[cfg_attr(
    any(
        not(all(myelin_test_postgres, myelin_test_nats)),
        myelin_skip_interop,
        not(myelin_python3)
    ),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL, with python3 (and not MYELIN_SKIP_INTEROP=1), to run"
)]
async fn split_matrix_nio_runs_the_flow_through_traefik() {
    let Some(settings) = settings() else { return };
    let venv = interop::venv().await;
    let split = Split::up(&settings).await;
    let mut command = Command::new(venv.join("bin").join("python"));
    command
        .arg(interop::interop_dir().join("nio_flow.py"))
        .arg(&split.hs_url);
    let output = interop::run(command, interop::SCRIPT_TIMEOUT, "nio_flow.py").await;
    println!("{}", output.describe());
    assert_eq!(
        output.code,
        Some(0),
        "the matrix-nio flow failed through traefik: {}",
        output.describe()
    );
}

/// A retry that reaches another client-api replica gets the event of the
/// first try; also when both tries are in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_txn_id_retry_on_another_client_api_gives_the_same_event() {
    let Some(settings) = settings() else { return };
    let split = Split::up(&settings).await;
    let replicas = split.urls("CLIENT_API");
    assert!(replicas.len() >= 2, "two client-api replicas: {replicas:?}");
    let alice = split.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "private_chat"})).await;
    let content = json!({"msgtype": "m.text", "body": "once, on any replica"});

    let first = event_id_of(
        &alice
            .at(&replicas[0])
            .send_reply(&room_id, "m.room.message", "split-txn-1", &content)
            .await
            .ok(),
    );
    let second = event_id_of(
        &alice
            .at(&replicas[1])
            .send_reply(&room_id, "m.room.message", "split-txn-1", &content)
            .await
            .ok(),
    );
    assert_eq!(
        second, first,
        "the retry on client-api replica 2 ({}) made another event than replica 1 ({})",
        replicas[1], replicas[0]
    );
    let through_gateway = event_id_of(
        &alice
            .send_reply(&room_id, "m.room.message", "split-txn-1", &content)
            .await
            .ok(),
    );
    assert_eq!(
        through_gateway, first,
        "the retry through the gateway differs"
    );

    // A retry sent while the first try is still in flight, on the other replica.
    let racing = json!({"msgtype": "m.text", "body": "raced on two replicas"});
    let (on_first, on_second) = (alice.at(&replicas[0]), alice.at(&replicas[1]));
    let (a, b) = tokio::join!(
        on_first.send_reply(&room_id, "m.room.message", "split-txn-2", &racing),
        on_second.send_reply(&room_id, "m.room.message", "split-txn-2", &racing),
    );
    let (a, b) = (event_id_of(&a.ok()), event_id_of(&b.ok()));
    assert_eq!(
        a, b,
        "the same transaction ID sent to both replicas at once got two event IDs"
    );

    let events = history(&alice, &room_id).await;
    for (body, event_id) in [
        ("once, on any replica", &first),
        ("raced on two replicas", &a),
    ] {
        let copies: Vec<&Value> = events
            .iter()
            .filter(|event| event["content"]["body"] == body)
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "{body:?} was stored {} times: {copies:?}",
            copies.len()
        );
        assert_eq!(copies[0]["event_id"], json!(event_id));
    }
    split.assert_no_forks().await;
}

/// 4 users x 4 rooms x 15 messages at once, over two persisters: a reader
/// following with incremental syncs through the gateway sees every event
/// exactly once, in the order /messages gives every member, and no room forks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_many_senders_many_rooms_one_order_no_forks() {
    const USERS: usize = 4;
    const ROOMS: usize = 4;
    const MESSAGES: usize = 15;
    let Some(settings) = settings() else { return };
    let split = Split::up(&settings).await;
    let (users, reader, everyone) = members_and_reader(&split, "sender", USERS).await;
    let rooms = shared_rooms(&everyone, ROOMS).await;

    let reader_task = Reader::start(&reader, &rooms).await;
    let load = Load::start(&users, &rooms, "c", MESSAGES);
    let sent = load.finish().await;
    assert_eq!(sent.len(), USERS * ROOMS * MESSAGES);
    assert_one_order_for_everyone(&split, reader_task, &everyone, &rooms, &sent).await;
}

/// SIGKILL of one of two event persisters while sends are in flight: the
/// senders retry with the same transaction IDs and all get through; every
/// acknowledged event is in the history of every member, in one order; a
/// persister started afterwards becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_persister_killed_under_load_loses_nothing() {
    let Some(settings) = settings() else { return };
    let mut split = Split::up(&settings).await;
    let (users, reader, everyone) = members_and_reader(&split, "member", 3).await;
    // Six rooms: the dead persister's partitions almost surely hold some.
    let rooms = shared_rooms(&everyone, 6).await;

    let reader_task = Reader::start(&reader, &rooms).await;
    let load = Load::start(&users, &rooms, "d", 3);
    load.wait_total(2 * users.len() * rooms.len(), "before the kill")
        .await;
    let (name, _, pid) = split.processes("EVENT_PERSISTER")[0].clone();
    let at_kill = load.snapshot();
    split.kill9(&name, pid).await;
    // Every (user, room) stream gets two more sends through, so every room
    // found a writer again.
    load.wait_each_beyond(&at_kill, 2, "after the persister was killed")
        .await;
    let mut sent = load.finish().await;

    let added = split.add("event-persister").await;
    let (status, body) = ready_status(&added.url).await;
    assert_eq!(
        status, 200,
        "{} /ready after the restart: {body}",
        added.name
    );
    for (name, url, _) in split.processes("EVENT_PERSISTER").iter().skip(1) {
        let (status, body) = ready_status(url).await;
        assert_eq!(status, 200, "{name} /ready: {body}");
    }
    // Writes go on with the new persister (partitions move to it meanwhile).
    for (r, room_id) in rooms.iter().enumerate() {
        let send = send_retrying(&users[0], room_id, &format!("d-after-restart-r{r}"))
            .await
            .unwrap_or_else(|failure| panic!("{failure}"));
        sent.push(send);
    }

    split.print_leases().await;
    assert_one_order_for_everyone(&split, reader_task, &everyone, &rooms, &sent).await;
}

/// SIGKILL of the synchrotron a user's long-poll is parked on: the client's
/// retry through the gateway lands on the other replica, from the same
/// since token, and gets every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_synchrotron_killed_mid_long_poll_retry_gets_everything() {
    let Some(settings) = settings() else { return };
    let split = Split::up(&settings).await;
    let users = register_users(&split, "member", 2).await;
    let (alice, bob) = (&users[0], &users[1]);
    let rooms = shared_rooms(&users, 1).await;
    let room_id = &rooms[0];
    let synchrotrons = split.processes("SYNCHROTRON");
    assert_eq!(synchrotrons.len(), 2, "{synchrotrons:?}");

    // Which replica serves bob: the one whose sync counter moves.
    let mut since = next_batch(&try_sync(bob, None, 0).await.expect("initial sync"));
    let before: Vec<u64> = sync_counts(&synchrotrons).await;
    for _ in 0..3 {
        since = next_batch(&try_sync(bob, Some(&since), 0).await.expect("sync"));
    }
    let after: Vec<u64> = sync_counts(&synchrotrons).await;
    let moved: Vec<usize> = (0..2).filter(|&i| after[i] > before[i]).collect();
    assert_eq!(
        moved.len(),
        1,
        "bob's syncs were not pinned to one synchrotron: counts {before:?} -> {after:?}"
    );
    let (serving, other) = (moved[0], 1 - moved[0]);
    println!("bob's syncs go to {}", synchrotrons[serving].0);

    // Three messages bob gets from that replica.
    let mut expected = Vec::new();
    for n in 0..3 {
        expected.push(
            send_retrying(alice, room_id, &format!("before-kill-{n}"))
                .await
                .unwrap_or_else(|failure| panic!("{failure}")),
        );
    }
    let mut received: Vec<String> = Vec::new();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while received.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "bob did not get the first messages: {received:?}"
        );
        let sync = try_sync(bob, Some(&since), 5000).await.expect("sync");
        received.extend(timeline_ids(&sync, room_id));
        since = next_batch(&sync);
    }

    // Park a long-poll, then kill its replica. (A server may end a long-poll
    // early with nothing new; then park again from the new token.)
    let mut parked = None;
    for _ in 0..5 {
        let poll = {
            let (bob, since) = (bob.clone(), since.clone());
            tokio::spawn(async move { try_sync(&bob, Some(&since), 60_000).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !poll.is_finished() {
            parked = Some(poll);
            break;
        }
        let early = poll.await.expect("poll task").expect("an early sync");
        received.extend(timeline_ids(&early, room_id));
        since = next_batch(&early);
    }
    let poll = parked.expect("bob's long-poll never stayed parked for a second");
    let counted_before_kill = sync_requests(&synchrotrons[other].1).await;
    split
        .kill9(&synchrotrons[serving].0, synchrotrons[serving].2)
        .await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), poll)
        .await
        .expect("bob's long-poll got no answer within 120 s of its synchrotron's death")
        .expect("poll task");
    println!("the parked long-poll ended with: {outcome:?}");
    if let Ok(sync) = &outcome {
        received.extend(timeline_ids(sync, room_id));
        since = next_batch(sync);
    }

    for n in 0..5 {
        expected.push(
            send_retrying(alice, room_id, &format!("after-kill-{n}"))
                .await
                .unwrap_or_else(|failure| panic!("{failure}")),
        );
    }
    // bob retries through the gateway from his last token until he has it all.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut errors = Vec::new();
    while received.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "bob's retries did not get everything: received {received:?}, expected {:?}, \
             errors {errors:?}",
            expected.iter().map(|s| &s.event_id).collect::<Vec<_>>()
        );
        match try_sync(bob, Some(&since), 5000).await {
            Ok(sync) => {
                received.extend(timeline_ids(&sync, room_id));
                since = next_batch(&sync);
            }
            Err(error) => {
                errors.push(error);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    println!("errors while retrying: {errors:?}");
    let expected_ids: Vec<String> = expected.iter().map(|s| s.event_id.clone()).collect();
    assert_eq!(
        received, expected_ids,
        "bob's syncs across the kill delivered other events, or some twice, or out of order"
    );
    let counted_after = sync_requests(&synchrotrons[other].1).await;
    assert!(
        counted_after > counted_before_kill,
        "the surviving synchrotron {} served none of bob's retries",
        synchrotrons[other].0
    );
    let (status, body) = ready_status(split.get("GATEWAY_1_URL")).await;
    assert_eq!(
        status, 200,
        "the gateway is not ready with one synchrotron: {body}"
    );
}

async fn sync_counts(synchrotrons: &[(String, String, u32)]) -> Vec<u64> {
    let mut counts = Vec::new();
    for (_, url, _) in synchrotrons {
        counts.push(sync_requests(url).await);
    }
    counts
}

pub(crate) fn timeline_ids(sync: &Value, room_id: &str) -> Vec<String> {
    sync["rooms"]["join"][room_id]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// A third persister joins while sends run: partitions move to it, every
/// send is eventually acknowledged, nothing is lost or doubled, no fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_third_persister_joins_under_load_without_forks() {
    let Some(settings) = settings() else { return };
    let mut split = Split::up(&settings).await;
    let (users, reader, everyone) = members_and_reader(&split, "member", 3).await;
    let rooms = shared_rooms(&everyone, 4).await;

    let reader_task = Reader::start(&reader, &rooms).await;
    let load = Load::start(&users, &rooms, "e", 3);
    load.wait_total(users.len() * rooms.len(), "before the new persister")
        .await;
    split.print_leases().await;
    let added = split.add("event-persister").await;
    println!("{} is ready at {}", added.name, added.url);
    // Sends go on while partitions keep moving over the next ticks.
    let at_join = load.snapshot();
    load.wait_each_beyond(&at_join, 3, "after the third persister joined")
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sent = load.finish().await;

    split.print_leases().await;
    for (name, url, _) in split.processes("EVENT_PERSISTER") {
        let (status, body) = ready_status(&url).await;
        assert_eq!(status, 200, "{name} /ready after the rebalance: {body}");
    }
    assert_one_order_for_everyone(&split, reader_task, &everyone, &rooms, &sent).await;
}

/// Planned handovers under load, with no process crashing: six times, a
/// third persister joins (the others give it partitions) and leaves with
/// SIGTERM (giving them back). A writer hands a partition over only after
/// its in-flight writes, and the client API resends a request that finds no
/// writer, so every send should be acknowledged on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_planned_persister_handovers_fail_no_send() {
    let Some(settings) = settings() else { return };
    let mut split = Split::up(&settings).await;
    let users = register_users(&split, "member", 3).await;
    let rooms = shared_rooms(&users, 8).await;

    let load = Load::start(&users, &rooms, "h", 3);
    load.wait_total(users.len() * rooms.len(), "before the handovers")
        .await;
    for cycle in 0..6 {
        let before = load.snapshot();
        let added = split.add("event-persister").await;
        println!("cycle {cycle}: {} joined", added.name);
        load.wait_each_beyond(&before, 2, "after a persister joined")
            .await;
        // Both older writers give partitions back, each on its own tick.
        tokio::time::sleep(Duration::from_secs(4)).await;
        split.terminate(&added.name, added.pid).await;
        let before = load.snapshot();
        load.wait_each_beyond(&before, 2, "after a persister left")
            .await;
    }
    let sent = load.finish().await;

    check_histories(&users, &rooms, &sent).await;
    split.assert_no_forks().await;
    let retried: Vec<String> = sent
        .iter()
        .filter(|send| send.attempts > 1)
        .map(|send| {
            format!(
                "{} in {} ({} attempts): {:?}",
                send.txn_id, send.room_id, send.attempts, send.errors
            )
        })
        .collect();
    assert!(
        retried.is_empty(),
        "{} of {} sends failed during planned handovers (no process crashed) and were \
         acknowledged only on a retry:\n{}",
        retried.len(),
        sent.len(),
        retried.join("\n")
    );
}

/// Media uploaded through traefik and the gateway lands in the directory the
/// media replicas share: the gateway and every replica serve it, and a
/// thumbnail made behind the gateway has the size asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_media_uploaded_through_the_gateway_is_served_by_every_replica() {
    let Some(settings) = settings() else { return };
    // A small upload limit, so a body past it is cheap to send.
    let env = [format!("MYELIN_MAX_UPLOAD_SIZE={SPLIT_MAX_UPLOAD}")];
    let split = Split::up_small_with_env(&settings, "2", &env).await;
    let replicas = split.urls("MEDIA");
    assert_eq!(replicas.len(), 2, "two media replicas: {replicas:?}");
    let alice = split.client().register("alice", PASSWORD).await;
    let token = alice.access_token.clone().expect("a token");
    let http = alice.http().clone();

    let picture = {
        let pixels = image::RgbImage::from_fn(120, 90, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(pixels)
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("encode a PNG");
        out.into_inner()
    };
    let uploaded = http
        .post(alice.url("/_matrix/media/v3/upload?filename=split.png"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .expect("upload through traefik");
    assert_eq!(uploaded.status(), 200);
    let uploaded: Value = uploaded.json().await.expect("JSON");
    let uri = uploaded["content_uri"].as_str().expect("a content_uri");
    let media_id = uri
        .strip_prefix("mxc://split.test/")
        .unwrap_or_else(|| panic!("{uri} is not an mxc URI of split.test"))
        .to_owned();
    let download = format!("/_matrix/client/v1/media/download/split.test/{media_id}");

    let bases = std::iter::once(split.hs_url.clone()).chain(replicas);
    for base in bases {
        let answer = http
            .get(format!("{base}{download}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("download from {base}: {error}"));
        assert_eq!(answer.status(), 200, "download from {base}");
        assert_eq!(
            answer
                .headers()
                .get("content-disposition")
                .and_then(|value| value.to_str().ok()),
            Some("inline; filename=\"split.png\""),
            "from {base}"
        );
        let bytes = answer.bytes().await.expect("bytes");
        assert_eq!(bytes.as_ref(), picture.as_slice(), "bytes from {base}");
    }

    let thumbnail = http
        .get(alice.url(&format!(
            "/_matrix/client/v1/media/thumbnail/split.test/{media_id}?width=48&height=48&method=crop"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("thumbnail through traefik");
    assert_eq!(thumbnail.status(), 200);
    let bytes = thumbnail.bytes().await.expect("bytes");
    let decoded = image::load_from_memory(&bytes).expect("the thumbnail decodes");
    assert_eq!((decoded.width(), decoded.height()), (48, 48));

    // Bodies larger than the gateway keeps whole stream through it, sent
    // in chunks without a length, and come back with their length.
    let chunked = |size: usize| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..size)
            .map(|n| (n % 251) as u8)
            .collect::<Vec<u8>>()
            .chunks(64 * 1024)
            .map(|chunk| Ok(chunk.to_vec()))
            .collect();
        reqwest::Body::wrap_stream(futures::stream::iter(chunks))
    };
    let large = SPLIT_MAX_UPLOAD_BYTES - 1000;
    let uploaded = http
        .post(alice.url("/_matrix/media/v3/upload"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(chunked(large))
        .send()
        .await
        .expect("a streamed upload through traefik");
    assert_eq!(uploaded.status(), 200);
    let uploaded: Value = uploaded.json().await.expect("JSON");
    let large_id = uploaded["content_uri"]
        .as_str()
        .and_then(|uri| uri.strip_prefix("mxc://split.test/"))
        .expect("an mxc URI of split.test")
        .to_owned();
    let answer = http
        .get(alice.url(&format!(
            "/_matrix/client/v1/media/download/split.test/{large_id}"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download through traefik");
    assert_eq!(answer.content_length(), Some(large as u64));
    let bytes = answer.bytes().await.expect("bytes");
    assert!(
        bytes.len() == large && bytes.iter().enumerate().all(|(n, b)| *b == (n % 251) as u8),
        "the streamed upload came back changed ({} bytes)",
        bytes.len()
    );

    let refused = http
        .post(alice.url("/_matrix/media/v3/upload"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(chunked(SPLIT_MAX_UPLOAD_BYTES + 1))
        .send()
        .await
        .expect("an answer to an upload past the limit");
    assert_eq!(refused.status(), 413);
    let refused: Value = refused.json().await.expect("JSON");
    assert_eq!(refused["errcode"], "M_TOO_LARGE", "{refused}");
}

/// The upload limit of the split media test, as written and in bytes.
const SPLIT_MAX_UPLOAD: &str = "1M";
const SPLIT_MAX_UPLOAD_BYTES: usize = 1024 * 1024;
