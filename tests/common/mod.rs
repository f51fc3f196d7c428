//! Shared pieces of the black-box tests: the simulator in-process on 127.0.0.1:0, a
//! config written to a temporary directory, and the real `wxquotad` binary as a child
//! process whose JSON log lines are collected.
#![allow(dead_code)]

pub mod harness;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wxquotad::config::{LimitTable, PresetName};
use wxquotad::sim::Simulator;
use wxquotad::time::Clock;

pub const APPID: &str = "wx448f04719cd48f69";
pub const SECRET: &str = "s3cr3t-appsecret-0123456789abcdef";

/// The instant tests run at (a Wednesday noon in Beijing), so no test depends on the
/// real date: not near the daily reset's quiet window, not across a midnight.
pub const TEST_START: &str = "2026-11-18T12:00:00+08:00";

/// The clock the tests' simulators and daemons share: [`TEST_START`] at first use, then
/// running in real time. Daemons get it through `WXQUOTAD_FAKE_NOW` when they start.
pub fn clock() -> Clock {
    static SHIFTED: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    SHIFTED
        .get_or_init(|| Clock::starting_at(wxquotad::time::parse(TEST_START).unwrap()))
        .clone()
}

/// Every test gives up after this long rather than hang CI.
pub const TEST_LIMIT: Duration = Duration::from_secs(180);

/// The simulator, running in this process.
pub struct Sim {
    pub sim: Simulator,
    pub url: String,
}

impl Sim {
    /// Queues `times` answers of `kind` for requests to `endpoint`.
    pub fn fault(
        &self,
        endpoint: wxquotad::sim::Endpoint,
        kind: wxquotad::sim::FaultKind,
        times: u32,
    ) {
        self.sim.inject(wxquotad::sim::Fault {
            endpoint,
            kind,
            times,
        });
    }

    pub async fn start(clock: Clock) -> Sim {
        let sim = Simulator::new(clock);
        sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
        let (addr, _task) = sim.clone().start().await.expect("simulator starts");
        Sim {
            sim,
            url: format!("http://{addr}"),
        }
    }
}

/// A config in its own temporary directory (state, secret file and config file).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    /// Runs the CLI with this config; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = bin()
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `policy` is TOML for the [policy] table body; `extra` goes at the end of the file.
    /// Unless `policy` names them, per-interface clears and the 45009 confirmation are
    /// off, so a reported 45009 clears the whole account at once (the tests of those
    /// two are in tests/engine.rs and name them).
    pub fn new(base_url: &str, policy: &str, extra: &str) -> Setup {
        let mut policy = policy.to_string();
        for (key, off) in [
            ("api_clears", "api_clears = false"),
            ("confirm_45009", "confirm_45009 = false"),
        ] {
            if !policy.contains(key) {
                policy = format!("{off}\n{policy}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("shop.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        set_mode(&secret, 0o600);
        let config = dir.path().join("config.toml");
        let text = format!(
            r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "{state}"
log_format = "json"

[wechat]
base_url = "{base_url}"
timeout = "1s"

[policy]
{policy}

[poll]
interval = "0s"

[[accounts]]
name = "shop"
appid = "{APPID}"
preset = "normal"
secret_file = "{secret}"
{extra}
"#,
            state = dir.path().join("state").display(),
            secret = secret.display(),
        );
        std::fs::write(&config, text).unwrap();
        set_mode(&config, 0o600);
        Setup { dir, config }
    }

    /// Replaces `from` (which must be there) with `to` in the config file.
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "config has no {from:?}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }

    /// Listens on a free port chosen now (for the CLI, which reads the address from
    /// the config); returns it.
    pub fn use_free_port(&self) -> SocketAddr {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        self.edit("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
        addr
    }

    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("state").join("wxquotad.db")
    }

    /// Spent attempts in the ledger (this month and every other).
    pub fn ledger_spent(&self) -> u32 {
        let c = rusqlite::Connection::open(self.state_db()).unwrap();
        c.query_row("SELECT count(*) FROM clears WHERE spent = 1", [], |r| {
            r.get(0)
        })
        .unwrap()
    }

    /// The stored count of `api` (any day), `None` before the first flush.
    pub fn usage_on_disk(&self, api: &str) -> Option<u64> {
        let c = rusqlite::Connection::open(self.state_db()).ok()?;
        c.query_row("SELECT max(calls) FROM usage WHERE api = ?1", [api], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten()
        .map(|n| n as u64)
    }

    /// `PRAGMA integrity_check` on the state file: "ok" when sound.
    pub fn integrity_check(&self) -> String {
        let c = rusqlite::Connection::open(self.state_db()).unwrap();
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    /// Every ledger row as (outcome, errcode, method).
    pub fn ledger(&self) -> Vec<(String, Option<i64>, String)> {
        let c = rusqlite::Connection::open(self.state_db()).unwrap();
        let mut s = c
            .prepare("SELECT outcome, errcode, method FROM clears ORDER BY id")
            .unwrap();
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The real binary, running.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
    /// The thread collecting stderr; it ends when the process closes stderr.
    reader: Option<std::thread::JoinHandle<()>>,
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wxquotad"))
}

impl Daemon {
    /// Starts `wxquotad -c CONFIG run` with `env` and waits until it listens.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(config, &["run"], env)
    }

    /// Starts `wxquotad -c CONFIG ARGS...` and waits until it listens.
    pub fn start_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = bin();
        cmd.arg("-c").arg(config).args(args);
        Daemon::spawn(cmd, env)
    }

    /// Starts `cmd` (the binary, or a shell that execs it) with `env`, collecting its
    /// stderr, and waits until it listens.
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        if !env.iter().any(|(k, _)| *k == wxquotad::time::FAKE_NOW_ENV) {
            cmd.env(wxquotad::time::FAKE_NOW_ENV, clock().now().to_rfc3339());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("wxquotad starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["event"] == "listening" {
                            let _ = tx.send(v["addr"].as_str().unwrap_or("").to_string());
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            })
        };
        // Generous: a loaded CI machine can take many seconds to start a process.
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Daemon {
            child,
            addr,
            logs,
            http: reqwest::Client::new(),
            reader: Some(reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs `body` to /v1/report; returns (status, JSON answer).
    pub async fn report(&self, body: &str) -> (u16, Value) {
        self.post("/v1/report", body).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("daemon answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("daemon answers")
    }

    pub async fn status(&self) -> Value {
        self.http
            .get(self.url("/v1/status"))
            .send()
            .await
            .expect("daemon answers")
            .json()
            .await
            .expect("status is JSON")
    }

    /// The account "shop" in the status document.
    pub async fn shop(&self) -> Value {
        self.status().await["accounts"][0].clone()
    }

    /// Log lines parsed as JSON objects.
    pub fn events(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn events_named(&self, event: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    pub fn all_logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit status code.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        signal(self.child.id(), "TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        // The reader thread has taken the last lines once stderr is closed.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.all_logs())
    }

    /// SIGKILL: no chance to flush or settle anything.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.all_logs()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The least time [`wait_for`] gives a condition: a condition that holds returns at once,
/// so a long limit costs a passing test nothing, while a short one fails a slow machine.
pub const MIN_WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` (at least
/// [`MIN_WAIT`]).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = limit.max(MIN_WAIT);
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a test body, failing it rather than hanging CI past [`TEST_LIMIT`].
pub async fn limited<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test finished within its time limit");
}

/// One quota's row in an account's status (`Value::Null` when absent).
pub fn api_row(account: &Value, path: &str) -> Value {
    account["apis"]
        .as_array()
        .expect("apis is an array")
        .iter()
        .find(|a| a["api"] == path)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The report that makes "shop" due: /cgi-bin/user/get answered 45009.
pub const BLOCKED: &str = r#"{"account": "shop", "api": "/cgi-bin/user/get", "errcode": 45009}"#;

/// A permissive policy for tests that need several clears quickly.
pub const EAGER_POLICY: &str = r#"reserve = 0
min_interval = "0s"
max_clears_per_day = 100
quiet_before_reset = "0s""#;
