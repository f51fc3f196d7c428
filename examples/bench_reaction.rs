//! Reaction-time benchmark (bench/reaction.sh): from a 45009 report's arrival to the
//! `clear_quota` request reaching WeChat.
//!
//! Runs the simulator in this process, starts the real (release) daemon against it with a
//! permissive policy, and for each trial posts one 45009 report and takes the time from
//! just before the report was sent to the simulator's record of the clear request (both
//! read the same system clock). Between trials it waits until the clear has settled, so
//! every trial starts from the same state.
//!
//! Usage: `bench_reaction [TRIALS] [DAEMON_BIN]` (default 300, target/release/wxquotad).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wxquotad::config::{LimitTable, PresetName};
use wxquotad::sim::Simulator;
use wxquotad::time::Clock;

const APPID: &str = "wx448f04719cd48f69";
const SECRET: &str = "bench-secret-0123456789abcdef0123";

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} min={:.3}ms p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        v.len(),
        v[0],
        pct(&v, 0.50),
        pct(&v, 0.90),
        pct(&v, 0.99),
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().map_or(300, |s| s.parse().expect("TRIALS"));
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/wxquotad".to_string());

    let sim = Simulator::new(Clock::system());
    sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
    sim.set_clear_limit(APPID, 1_000_000);
    let (sim_addr, _task) = sim.clone().start().await.expect("simulator starts");

    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "{state}"
log_format = "json"

[wechat]
base_url = "http://{sim_addr}"
timeout = "2s"

[policy]
reserve = 0
monthly_clears = 1000000
min_interval = "0s"
max_clears_per_day = 1000000
quiet_before_reset = "0s"

[poll]
interval = "0s"

[[accounts]]
name = "shop"
appid = "{APPID}"
secret_file = "{secret}"
"#,
            state = dir.path().join("state").display(),
            secret = secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut child = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["event"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or("").to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("daemon listening");
    let http = reqwest::Client::new();
    let report = format!("http://{addr}/v1/report");
    let account = format!("http://{addr}/v1/accounts/shop");
    let body = r#"{"account": "shop", "api": "/cgi-bin/user/get", "errcode": 45009}"#;

    // One warm-up trial gets the access token (stable_token) into the daemon's cache, so
    // the trials measure the steady state: report → decision → ledger → clear_quota.
    let mut reaction = Vec::new();
    let mut round_trip = Vec::new();
    let mut missed = 0;
    for trial in 0..=trials {
        let seen = sim
            .requests()
            .iter()
            .filter(|r| r.endpoint == "/cgi-bin/clear_quota")
            .count();
        let t0 = chrono::Utc::now();
        let sent = Instant::now();
        let r = http.post(&report).body(body).send().await.expect("report");
        assert!(r.status().is_success(), "report answered {}", r.status());
        let rtt = sent.elapsed();
        let deadline = Instant::now() + Duration::from_secs(2);
        let at = loop {
            let reqs = sim.requests();
            let clears: Vec<_> = reqs
                .iter()
                .filter(|r| r.endpoint == "/cgi-bin/clear_quota")
                .collect();
            if clears.len() > seen {
                break Some(clears[seen].at);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        match at {
            Some(at) if trial > 0 => {
                reaction.push((at - t0).num_microseconds().unwrap() as f64 / 1000.0);
                round_trip.push(rtt.as_secs_f64() * 1000.0);
            }
            Some(_) => {}
            None => missed += 1,
        }
        // Wait until the clear settled (ok), so the next report finds no clear in flight.
        let want = (trial + 1 - missed) as u64;
        loop {
            let s: serde_json::Value = http
                .get(&account)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let settled = s["clears"]["last"]["outcome"] == "ok";
            if settled && s["clears"]["used"].as_u64() >= Some(want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!("trials={trials} missed={missed}");
    summary("reaction (report sent -> clear_quota at WeChat)", reaction);
    summary("report round trip (client side)", round_trip);
}
