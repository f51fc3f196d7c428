//! Running as a service: systemd notifications, SIGHUP reload, SIGTERM under load,
//! /metrics, the API token, the CLI client commands and alerts.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Messages received on a fake NOTIFY_SOCKET.
fn notify_socket(dir: &std::path::Path) -> (String, Arc<Mutex<Vec<String>>>) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    });
    (path.display().to_string(), got)
}

async fn wait_message(got: &Arc<Mutex<Vec<String>>>, what: &str, after: usize) -> usize {
    wait_for(what, Duration::from_secs(10), || async {
        let msgs = got.lock().unwrap();
        msgs.iter()
            .enumerate()
            .skip(after)
            .find(|(_, m)| m.lines().any(|l| l == what || l.starts_with(what)))
            .map(|(i, _)| i)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_watchdog_reload_and_stopping_reach_systemd() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let (socket, got) = notify_socket(setup.dir.path());
        // systemd sets WATCHDOG_PID to the service's pid: a shell sets it, then execs.
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_wxquotad"))
            .arg("-c")
            .arg(&setup.config)
            .arg("run");
        let d = Daemon::spawn(
            cmd,
            &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
        );
        let ready = wait_message(&got, "READY=1", 0).await;
        // Pings at half the watchdog interval, while the engine ticks.
        let first = wait_message(&got, "WATCHDOG=1", ready).await;
        wait_message(&got, "WATCHDOG=1", first + 1).await;
        signal(d.child.id(), "HUP");
        let reloading = wait_message(&got, "RELOADING=1", ready + 1).await;
        let msg = got.lock().unwrap()[reloading].clone();
        assert!(msg.contains("MONOTONIC_USEC="), "{msg}");
        wait_message(&got, "READY=1", reloading).await;
        let (code, _) = d.terminate();
        assert_eq!(code, Some(0));
        wait_message(&got, "STOPPING=1", reloading).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_good_config_and_keeps_the_old_on_a_bad_one() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        d.report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 42}"#)
            .await;
        let good = std::fs::read_to_string(&setup.config).unwrap();
        // Good: a second account, and a different threshold for the first.
        let secret = setup.dir.path().join("shop.secret");
        std::fs::write(
            &setup.config,
            format!(
                "{good}\n[accounts.policy]\nthreshold = 0.5\n\n[[accounts]]\nname = \"blog\"\nappid = \"wx0123456789abcdef\"\nsecret_file = \"{}\"\n",
                secret.display()
            ),
        )
        .unwrap();
        signal(d.child.id(), "HUP");
        let status = wait_for("the reload", Duration::from_secs(10), || async {
            let s = d.status().await;
            (s["accounts"].as_array().unwrap().len() == 2).then_some(s)
        })
        .await;
        let menu = status["accounts"][0]["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["api"] == "/cgi-bin/menu/get")
            .cloned()
            .unwrap();
        assert_eq!(menu["used"], 42, "counters survive a reload");
        // The new config is in force a moment before its log line is written.
        wait_for("the reloaded event", Duration::from_secs(10), || async {
            (!d.events_named("reloaded").is_empty()).then_some(())
        })
        .await;
        assert_eq!(d.events_named("reloaded").len(), 1);

        // Bad: an unknown key. The old config stays and the daemon keeps serving.
        std::fs::write(&setup.config, format!("{good}\nbogus = 1\n")).unwrap();
        signal(d.child.id(), "HUP");
        let rejected = wait_for("the rejection", Duration::from_secs(10), || async {
            d.events_named("reload_rejected").into_iter().next()
        })
        .await;
        assert!(
            rejected["message"].as_str().unwrap().contains("bogus"),
            "{rejected}"
        );
        let (s, _) = d
            .report(r#"{"account": "blog", "api": "/cgi-bin/menu/get", "calls": 1}"#)
            .await;
        assert_eq!(s, 200, "the account from the last good config is still there");
        let (code, _) = d.terminate();
        assert_eq!(code, Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_burst_loses_no_accepted_report() {
    use std::sync::atomic::{AtomicU64, Ordering};
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let url = d.url("/v1/report");
        let pid = d.child.id();
        let client = reqwest::Client::new();
        // /sns/userinfo has no daily limit in any preset: no threshold, so no automatic
        // clear can reset the counter the test reads back.
        const API: &str = "/sns/userinfo";
        // Reports answered 200 so far, all workers together.
        let accepted_reports = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let (client, url) = (client.clone(), url.clone());
            let accepted_reports = accepted_reports.clone();
            tasks.push(tokio::spawn(async move {
                // Each worker reports until the daemon stops answering 200: the burst
                // only ends because of the stop, so the SIGTERM lands inside it.
                let mut accepted = 0u64;
                for i in 0u64.. {
                    let calls = 1 + (worker + i) % 7;
                    let body =
                        format!(r#"{{"account": "shop", "api": "{API}", "calls": {calls}}}"#);
                    match client.post(&url).body(body).send().await {
                        Ok(r) if r.status() == 200 => {
                            accepted += calls;
                            accepted_reports.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                accepted
            }));
        }
        // Mid-burst: well under way (the daemon accepted 200 reports), still running.
        wait_for("200 accepted reports", Duration::from_secs(30), || async {
            (accepted_reports.load(Ordering::SeqCst) >= 200).then_some(())
        })
        .await;
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "the burst is still running when SIGTERM is sent"
        );
        signal(pid, "TERM");
        let mut accepted = 0;
        for t in tasks {
            accepted += t.await.unwrap();
        }
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
        assert!(!logs.contains("\"event\":\"cleared\""), "no clear: {logs}");
        let d = Daemon::start(&setup.config, &[]);
        let shop = d.shop().await;
        let used = shop["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["api"] == API)
            .map(|a| a["used"].as_u64().unwrap())
            .unwrap_or(0);
        assert_eq!(used, accepted, "every report that got a 200 was kept");
        assert_eq!(sim.sim.clears_charged(APPID), 0);
    })
    .await;
}

/// Parses the text exposition into (name, labels, value) samples, checking its shape.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        assert!(name.starts_with("wxquotad_"), "{line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, String, f64)], name: &str, label: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.contains(label))
        .map(|s| s.2)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_move_with_reports() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let before = parse_metrics(&d.get("/metrics").await.text().await.unwrap());
        assert_eq!(sample(&before, "wxquotad_clears_left", "shop"), Some(10.0));
        d.report(r#"{"account": "shop", "api": "/cgi-bin/user/get", "calls": 250}"#)
            .await;
        d.report("nonsense").await;
        let after = parse_metrics(&d.get("/metrics").await.text().await.unwrap());
        assert_eq!(
            sample(
                &after,
                "wxquotad_api_used_calls",
                "api=\"/cgi-bin/user/get\""
            ),
            Some(250.0)
        );
        assert_eq!(
            sample(
                &after,
                "wxquotad_api_usage_ratio",
                "api=\"/cgi-bin/user/get\""
            ),
            Some(0.5)
        );
        assert_eq!(
            sample(
                &after,
                "wxquotad_api_daily_limit_calls",
                "api=\"/cgi-bin/user/get\""
            ),
            Some(500.0)
        );
        assert_eq!(
            sample(&after, "wxquotad_report_requests_total", "status=\"200\""),
            Some(1.0)
        );
        assert_eq!(
            sample(&after, "wxquotad_report_requests_total", "status=\"400\""),
            Some(1.0)
        );
        assert_eq!(
            sample(&after, "wxquotad_account_state", "state=\"ok\""),
            Some(1.0)
        );
        // A clear moves the WeChat request and clear attempt counters.
        let (_, a) = d
            .post("/v1/accounts/shop/clear", r#"{"force": true}"#)
            .await;
        assert_eq!(a["outcome"], "cleared", "{a}");
        let after = parse_metrics(&d.get("/metrics").await.text().await.unwrap());
        for (endpoint, want) in [
            ("/cgi-bin/stable_token", 1.0),
            ("/cgi-bin/clear_quota", 1.0),
        ] {
            let label = format!("endpoint=\"{endpoint}\",errcode=\"0\"");
            assert_eq!(
                sample(&after, "wxquotad_wechat_requests_total", &label),
                Some(want),
                "{endpoint}"
            );
        }
        assert_eq!(
            sample(&after, "wxquotad_clear_attempts_total", "outcome=\"ok\""),
            Some(1.0)
        );
        assert_eq!(sample(&after, "wxquotad_clears_used", "shop"), Some(1.0));
        // Counters end in _total; nothing secret is there.
        let text = d.get("/metrics").await.text().await.unwrap();
        assert!(!text.contains(SECRET));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            if line.ends_with(" counter") {
                let name = line.split(' ').nth(2).unwrap();
                assert!(
                    !name.ends_with("_total"),
                    "the family name has no _total: {line}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_token_is_enforced_except_for_healthz() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let token_file = setup.dir.path().join("api-token");
        std::fs::write(&token_file, "tok-3f9a2c\n").unwrap();
        set_mode(&token_file, 0o600);
        setup.edit(
            "log_format = \"json\"",
            &format!(
                "log_format = \"json\"\napi_token_file = \"{}\"",
                token_file.display()
            ),
        );
        let d = Daemon::start(&setup.config, &[]);
        let http = reqwest::Client::new();
        let body = r#"{"account": "shop", "api": "/a", "calls": 1}"#;
        for (auth, want) in [
            (None, 401),
            (Some("Bearer nope"), 401),
            (Some("tok-3f9a2c"), 401),
            (Some("Bearer tok-3f9a2c"), 200),
        ] {
            let mut r = http.post(d.url("/v1/report")).body(body);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), want, "{auth:?}");
            if want == 401 {
                let v: Value = resp.json().await.unwrap();
                assert!(v["error"].as_str().unwrap().contains("bearer token"));
            }
        }
        for path in ["/v1/status", "/metrics", "/v1/accounts/shop"] {
            assert_eq!(d.get(path).await.status(), 401, "{path}");
        }
        assert_eq!(d.get("/healthz").await.status(), 200);

        // The CLI reads the token from the same config.
        let addr = d.addr;
        drop(d);
        setup.edit("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
        let d = Daemon::start(&setup.config, &[]);
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(d);
    })
    .await;
}

#[test]
fn a_public_listen_address_without_a_token_is_refused() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    setup.edit("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:9477\"");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_token_file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_status_report_and_clear_talk_to_the_daemon() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        let cli = |args: &[&str]| setup.cli(args);
        setup.use_free_port();
        let (code, _, err) = cli(&["status"]);
        assert_eq!(code, Some(1), "no daemon yet");
        assert!(err.contains("cannot reach wxquotad"), "{err}");
        let (code, _, err) = cli(&["clear", "shop"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("cannot reach"), "{err}");

        let d = Daemon::start(&setup.config, &[]);
        let (code, out, err) = cli(&[
            "report",
            "--account",
            "shop",
            "--api",
            "/cgi-bin/user/get",
            "--calls",
            "100",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            out,
            "shop /cgi-bin/user/get: reported 100 calls (accepted 1)\n"
        );
        let (code, _, err) = cli(&[
            "report",
            "--account",
            "nobody",
            "--api",
            "/a",
            "--calls",
            "1",
        ]);
        assert_eq!(code, Some(1));
        assert!(err.contains("nobody"), "{err}");
        let (code, out, _) = cli(&["status"]);
        assert_eq!(code, Some(0));
        assert!(out.contains("ACCOUNT") && out.contains("shop"), "{out}");
        assert!(out.contains("/cgi-bin/user/get 100/500 20%"), "{out}");
        let (code, out, _) = cli(&["status", "--json"]);
        assert_eq!(code, Some(0));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["accounts"][0]["name"], "shop");
        let (code, out, err) = cli(&["clear", "shop", "--force", "--reason", "test"]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("cleared"), "{out}");
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        let (code, out, _) = cli(&["status"]);
        assert_eq!(code, Some(0));
        assert!(out.contains("last clear"), "{out}");
        drop(d);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_reach_a_local_receiver_once_not_repeatedly() {
    limited(async {
        // A local webhook receiver.
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let sim = Sim::start(clock()).await;
        let setup = Setup::new(
            &sim.url,
            EAGER_POLICY,
            "",
        );
        setup.edit(
            "[[accounts]]",
            &format!("[[alerts]]\nkind = \"webhook\"\nurl = \"{hook}\"\nevents = [\"cleared\", \"budget_low\"]\n\n[[accounts]]"),
        );
        let d = Daemon::start(&setup.config, &[]);
        for n in 1..=3 {
            d.report(BLOCKED).await;
            wait_for("a clear", Duration::from_secs(10), || async {
                let s = d.shop().await;
                (sim.sim.clears_charged(APPID) == n && s["clears"]["in_flight"] == false)
                    .then_some(())
            })
            .await;
        }
        assert_eq!(sim.sim.clears_charged(APPID), 3);
        // The first clear's alert arrives; the next two are held back (each says so).
        wait_for("the first alert and two held back", Duration::from_secs(10), || async {
            let arrived = received.lock().unwrap().iter().any(|v| v["event"] == "cleared");
            let held = d
                .events()
                .iter()
                .filter(|e| e["message"] == "alert not repeated within repeat_after")
                .count();
            (arrived && held >= 2).then_some(())
        })
        .await;
        let got = received.lock().unwrap().clone();
        let cleared: Vec<&Value> = got.iter().filter(|v| v["event"] == "cleared").collect();
        assert_eq!(cleared.len(), 1, "one alert per account and event per hour: {got:?}");
        assert_eq!(cleared[0]["account"], "shop");
        assert!(cleared[0]["message"].as_str().unwrap().contains("clears left"));
        assert!(got.iter().all(|v| v["event"] != "budget_low"), "7 left is not low");
        assert!(!d.all_logs().contains("/hook"), "the webhook URL is not logged");
    })
    .await;
}

/// journald's socket, where tracing-journald sends (a fixed path).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Parses one datagram of journald's native protocol: `KEY=value\n`, or for values that
/// may hold newlines `KEY\n` + 64-bit little-endian length + value + `\n`.
fn journal_fields(mut d: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|b| *b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).to_string(),
                String::from_utf8_lossy(&line[eq + 1..]).to_string(),
            );
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).to_string();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&rest[8..8 + len]).to_string();
            fields.insert(key, value);
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_text_logs_reach_the_journal_with_fields() {
    // Needs to stand in for journald: only where none runs and /run is writable (CI runs
    // as root in a container without systemd). Elsewhere say so rather than pass quietly.
    let dir = std::path::Path::new(JOURNAL_SOCKET).parent().unwrap();
    if std::path::Path::new(JOURNAL_SOCKET).exists() || std::fs::create_dir_all(dir).is_err() {
        eprintln!("SKIPPED: a journald socket exists or /run/systemd is not writable");
        return;
    }
    let Ok(sock) = UnixDatagram::bind(JOURNAL_SOCKET) else {
        eprintln!("SKIPPED: cannot bind {JOURNAL_SOCKET}");
        return;
    };
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(JOURNAL_SOCKET);
            // Leave /run as it was: these fail harmlessly unless the folders are empty.
            let _ = std::fs::remove_dir("/run/systemd/journal");
            let _ = std::fs::remove_dir("/run/systemd");
        }
    }
    let _cleanup = Cleanup;
    type Entry = std::collections::HashMap<String, String>;
    let got: Arc<Mutex<Vec<Entry>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            sink.lock().unwrap().push(journal_fields(&buf[..n]));
        }
    });
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        setup.edit("log_format = \"json\"", "log_format = \"text\"");
        let mut cmd = bin();
        cmd.arg("-c").arg(&setup.config).arg("run");
        // Under systemd stderr is the journal stream; here the daemon's stderr stays
        // empty, so Daemon::spawn could not see it start: wait on the journal instead.
        cmd.env("JOURNAL_STREAM", "8:12345")
            .env(wxquotad::time::FAKE_NOW_ENV, clock().now().to_rfc3339())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Kill(cmd.spawn().unwrap());
        let entry = wait_for("the listening entry", Duration::from_secs(10), || async {
            got.lock()
                .unwrap()
                .iter()
                .find(|e| e.get("EVENT").map(String::as_str) == Some("listening"))
                .cloned()
        })
        .await;
        assert_eq!(entry["SYSLOG_IDENTIFIER"], "wxquotad");
        assert_eq!(entry["ACCOUNTS"], "1");
        assert_eq!(entry["MESSAGE"], "wxquotad ready");
        assert!(entry["ADDR"].starts_with("127.0.0.1:"));
        signal(child.0.id(), "TERM");
        wait_for("the stopped entry", Duration::from_secs(10), || async {
            got.lock()
                .unwrap()
                .iter()
                .any(|e| e.get("MESSAGE").map(String::as_str) == Some("stopped"))
                .then_some(())
        })
        .await;
    })
    .await;
}

/// A daemon whose next clear_quota request takes 700 ms to answer.
async fn with_a_slow_clear() -> (Sim, Setup, Daemon) {
    let sim = Sim::start(clock()).await;
    let setup = Setup::new(&sim.url, EAGER_POLICY, "");
    sim.fault(
        wxquotad::sim::Endpoint::ClearQuota,
        wxquotad::sim::FaultKind::Delay(Duration::from_millis(700)),
        1,
    );
    let d = Daemon::start(&setup.config, &[]);
    (sim, setup, d)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_clear_in_flight_settle() {
    limited(async {
        let (sim, setup, d) = with_a_slow_clear().await;
        d.report(BLOCKED).await;
        wait_for(
            "the clear to be in flight",
            Duration::from_secs(10),
            || async { (d.shop().await["clears"]["in_flight"] == true).then_some(()) },
        )
        .await;
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
        let ledger = setup.ledger();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].0, "ok", "settled before exit, not left in flight");
        assert_eq!(sim.sim.clears_charged(APPID), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_hanging_up_does_not_cancel_a_clear() {
    limited(async {
        let (_sim, setup, d) = with_a_slow_clear().await;
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let r = impatient
            .post(d.url("/v1/accounts/shop/clear"))
            .body(r#"{"force": true}"#)
            .send()
            .await;
        assert!(r.is_err(), "the caller gave up first");
        // The outcome is recorded a moment before the account leaves in-flight: wait for both.
        wait_for("the clear to settle", Duration::from_secs(60), || async {
            let s = d.shop().await;
            (s["clears"]["last"]["outcome"] == "ok" && s["clears"]["in_flight"] == false)
                .then_some(s)
        })
        .await;
        assert_eq!(setup.ledger()[0].0, "ok");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_state_dir_exits_naming_the_first_and_changes_nothing() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        let first = Daemon::start(&setup.config, &[]);
        first
            .report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 130}"#)
            .await;
        let db = setup.state_db();
        wait_for("the flush", Duration::from_secs(20), || async {
            (setup.usage_on_disk("/cgi-bin/menu/get") == Some(130)).then_some(())
        })
        .await;
        let before = std::fs::read(&db).unwrap();
        // The same state_dir, another port (listen 127.0.0.1:0 picks a free one).
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .env(wxquotad::time::FAKE_NOW_ENV, clock().now().to_rfc3339())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("pid {}", first.child.id())),
            "names the first daemon: {stderr}"
        );
        assert!(stderr.contains("in use by another wxquotad"), "{stderr}");
        assert!(!stderr.contains("\"event\":\"listening\""), "{stderr}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "the state file is untouched"
        );
        // The first keeps counting and keeps its counts.
        first
            .report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 1}"#)
            .await;
        assert_eq!(
            api_row(&first.shop().await, "/cgi-bin/menu/get")["used"],
            131
        );
        let (code, _) = first.terminate();
        assert_eq!(code, Some(0));
    })
    .await;
}
