//! `wxquotad replay` agrees with the live daemon: the same traffic played by a real
//! application against the simulator (each call a real request, answered 0 or 45009,
//! then reported to a running `wxquotad run`) and replayed by `wxquotad replay` give
//! the same clears (kind, interface, trigger, in order) and the same calls served and
//! rejected. Also the command's errors and exit codes.
//! (Live, each minute is played seconds apart: the policy's min_interval is 0 here.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use wxquotad::config::{LimitSource, LimitTable, PresetName};

const USER_GET: &str = "/cgi-bin/user/get";
const MENU_GET: &str = "/cgi-bin/menu/get";

/// Small limits so every call can be a real request.
const LIMITS: &str = "[accounts.limits]\n\"/cgi-bin/user/get\" = 20\n\"/cgi-bin/menu/get\" = 30\n";
/// The policy's defaults (per-interface clears and the 45009 confirmation on: the
/// test setup turns them off unless named) but for min_interval (the live run plays
/// minutes seconds apart) and the daily cap.
const POLICY: &str =
    "api_clears = true\nconfirm_45009 = true\nmin_interval = \"0s\"\nmax_clears_per_day = 5";

/// Minute by minute: (minute after 09:00, [(api, calls)]). Hand-checked: 09:01 is
/// rejected 5 (45009: a per-interface clear), 09:02 reaches 95% (threshold: another),
/// 09:03 blocks both interfaces (an account clear), 09:04 fits.
const TRACE: &[(u32, &[(&str, u64)])] = &[
    (0, &[(USER_GET, 10)]),
    (1, &[(USER_GET, 15)]),
    (2, &[(USER_GET, 19)]),
    (3, &[(USER_GET, 25), (MENU_GET, 40)]),
    (4, &[(MENU_GET, 5)]),
];

fn traffic_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (minute, row) in TRACE {
        for (api, calls) in *row {
            text.push_str(&format!(
                "{{\"t\": \"2026-11-18T09:{minute:02}:00+08:00\", \"account\": \"shop\", \"api\": \"{api}\", \"calls\": {calls}}}\n"
            ));
        }
    }
    let path = dir.join("traffic.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// (kind, api, trigger) of each clear.
type ClearRow = (String, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_agrees_with_the_live_daemon_on_the_same_traffic() {
    limited(async {
        // Live: the simulator with the same limits as the config, the real daemon.
        let sim = Sim::start(clock()).await;
        let mut limits = LimitTable::from_preset(PresetName::Normal);
        limits.set(USER_GET, 20, LimitSource::Config);
        limits.set(MENU_GET, 30, LimitSource::Config);
        sim.sim.add_account(APPID, SECRET, limits);
        let setup = Setup::new(&sim.url, POLICY, LIMITS);
        let daemon = Daemon::start(&setup.config, &[]);
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{}/cgi-bin/stable_token", sim.url))
            .json(&serde_json::json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap().to_string();
        let (mut served, mut rejected) = (0u64, 0u64);
        for (_, row) in TRACE {
            let mut batch = Vec::new();
            for (api, calls) in *row {
                let mut ok = 0;
                for _ in 0..*calls {
                    let v: Value = http
                        .get(format!("{}{api}?access_token={token}", sim.url))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    match v["errcode"].as_i64().unwrap_or(0) {
                        0 => ok += 1,
                        45009 => {}
                        other => panic!("the simulator answered {other} to {api}"),
                    }
                }
                served += ok;
                rejected += calls - ok;
                if ok > 0 {
                    batch.push(serde_json::json!({"account": "shop", "api": api, "calls": ok}));
                }
                if ok < *calls {
                    batch.push(serde_json::json!({"account": "shop", "api": api, "errcode": 45009}));
                }
            }
            let (code, body) = daemon
                .report(&Value::Array(batch).to_string())
                .await;
            assert_eq!(code, 200, "{body}");
            // The next minute starts once any clear this one decided has settled.
            wait_for("no clear in flight", Duration::from_secs(20), || async {
                (daemon.shop().await["clears"]["in_flight"] == Value::Bool(false)).then_some(())
            })
            .await;
        }
        let (code, logs) = daemon.terminate();
        assert_eq!(code, Some(0), "{logs}");
        let (store, _) = wxquotad::store::Store::open(
            &setup.dir.path().join("state"),
            wxquotad::time::parse("2026-11-18T12:00:00+08:00").unwrap(),
        )
        .unwrap();
        let live: Vec<ClearRow> = store
            .attempts_since(wxquotad::time::parse("2026-11-01T00:00:00+08:00").unwrap())
            .unwrap()
            .into_iter()
            .map(|a| (a.kind.as_str().to_string(), a.api, a.trigger))
            .collect();
        drop(store);
        assert_eq!(
            live,
            vec![
                ("api".to_string(), Some(USER_GET.to_string()), "45009".to_string()),
                ("api".to_string(), Some(USER_GET.to_string()), "threshold".to_string()),
                ("account".to_string(), None, "45009".to_string()),
            ],
            "the hand-checked trace, live"
        );

        // Replay: the same config and traffic.
        let traffic = traffic_file(setup.dir.path());
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .args(["replay", "--json", "--traffic"])
            .arg(&traffic)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let shop = &doc["accounts"][0];
        let replayed: Vec<ClearRow> = shop["clears"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap().to_string(),
                    c["api"].as_str().map(str::to_string),
                    c["trigger"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(replayed, live);
        assert_eq!(shop["served"], served);
        assert_eq!(shop["rejected"], rejected);
        assert_eq!((served, rejected), (94, 20), "hand-checked");
    })
    .await;
}

#[test]
fn bad_traffic_or_config_is_a_clear_error_with_its_exit_code() {
    let setup = Setup::new("http://127.0.0.1:9", POLICY, "");
    let dir = setup.dir.path();
    let run = |traffic: &std::path::Path, config: &std::path::Path, json: bool| {
        let mut cmd = bin();
        cmd.arg("-c")
            .arg(config)
            .args(["replay", "--traffic"])
            .arg(traffic);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let good = r#"{"t": "2026-11-18T09:00:00+08:00", "account": "shop", "api": "/cgi-bin/user/get", "calls": 1}"#;
    // A malformed line: exit 1, the file and the line named, nothing on stdout.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, format!("{good}\n{{\"t\": \"2026-11-18T08:00:00+08:00\", \"account\": \"shop\", \"api\": \"/a\", \"calls\": 1}}\n")).unwrap();
    let out = run(&bad, &setup.config, false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl: line 2: ") && err.contains("sorted by time"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // With --json the error is also a JSON document on stdout.
    let out = run(&bad, &setup.config, true);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("line 2"), "{doc}");
    // A missing file.
    let out = run(&dir.join("absent.jsonl"), &setup.config, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.jsonl"));
    // No account of the config in the file.
    let other = dir.join("other.jsonl");
    std::fs::write(&other, good.replace("\"shop\"", "\"blog\"")).unwrap();
    let out = run(&other, &setup.config, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names blog"));
    // An invalid config: 78, with its location.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[policy]\nthreshold = 2\n").unwrap();
    let ok = dir.join("ok.jsonl");
    std::fs::write(&ok, format!("{good}\n")).unwrap();
    let out = run(&ok, &broken, false);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("threshold"));
}

#[test]
fn the_table_shows_each_day_and_the_totals() {
    let setup = Setup::new("http://127.0.0.1:9", POLICY, LIMITS);
    let traffic = traffic_file(setup.dir.path());
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .args(["replay", "--traffic"])
        .arg(&traffic)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let day = table
        .lines()
        .find(|l| l.starts_with("2026-11-18"))
        .unwrap_or_else(|| panic!("no line for the day:\n{table}"));
    let cells: Vec<&str> = day.split_whitespace().collect();
    // day, wanted, served, rejected, blocked minutes, clears | none, naive, oracle, clears
    assert_eq!(cells[1..6], ["114", "94", "20", "2", "3"], "{table}");
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
    assert!(table.contains("efficiency"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_records_reported_calls_as_a_traffic_file_that_replay_reads() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, POLICY, "");
        setup.edit(
            "log_format = \"json\"",
            "log_format = \"json\"\ntraffic_log = \"recorded.jsonl\"",
        );
        let daemon = Daemon::start(&setup.config, &[]);
        for body in [
            r#"{"account": "shop", "api": "/cgi-bin/user/get", "calls": 10}"#,
            r#"[{"account": "shop", "api": "cgi-bin/user/get", "calls": 5}, {"appid": "wx448f04719cd48f69", "api": "/cgi-bin/menu/get", "errcode": 45011}]"#,
            r#"{"account": "shop", "api": "/cgi-bin/menu/get", "errcode": 45009}"#,
        ] {
            let (code, answer) = daemon.report(body).await;
            assert_eq!(code, 200, "{answer}");
        }
        let (code, logs) = daemon.terminate();
        assert_eq!(code, Some(0), "{logs}");
        // Written at the latest at shutdown; each minute's lines sorted.
        let file = setup.dir.path().join("recorded.jsonl");
        let text = std::fs::read_to_string(&file).expect("the traffic log was written");
        let t = wxquotad::replay::traffic::parse(&text).unwrap();
        let sum = |api: &str| -> u64 { t.demand.iter().filter(|d| d.api == api).map(|d| d.calls).sum() };
        assert_eq!(sum(USER_GET), 15);
        assert_eq!(sum(MENU_GET), 1, "a 45009 is one call wanted; a 45011 is not recorded");
        assert!(t.demand.iter().all(|d| d.account == "shop"));
        // And replay reads it back.
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .args(["replay", "--json", "--traffic"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["accounts"][0]["wanted"], 16);
    })
    .await;
}
