//! The real binary's command line: `check` on good and bad configs, `presets`, and the
//! README's first command (`run --simulate` on the shipped example config).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "fixtures missing in {}", dir.display());
    files
}

#[test]
fn check_rejects_each_invalid_fixture_with_exit_78_and_the_spot() {
    for file in fixtures() {
        let text = std::fs::read_to_string(&file).unwrap();
        // First line: "# expect: <key path> line <n>".
        let expect = text
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# expect: ");
        let (key, line) = expect.rsplit_once(" line ").unwrap();
        let out = bin().arg("-c").arg(&file).arg("check").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", file.display());
        let spot = format!("{}:{line}:", file.display());
        assert!(
            stderr.contains(&spot),
            "{}: want {spot} in {stderr}",
            file.display()
        );
        if key != "-" {
            assert!(
                stderr.contains(key),
                "{}: want {key} in {stderr}",
                file.display()
            );
        }
    }
}

#[test]
fn check_accepts_a_good_config_and_prints_a_summary() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shop"), "{stdout}");
    assert!(!stdout.contains(SECRET));
}

#[test]
fn a_missing_config_is_exit_78_naming_the_file() {
    let out = bin()
        .args(["-c", "/nonexistent/wxquotad.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wxquotad.toml"));
}

#[test]
fn bad_usage_is_exit_2() {
    let out = bin()
        .args(["report", "--account", "shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn presets_prints_the_tables() {
    let out = bin().args(["presets", "test"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("/cgi-bin/token"));
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("/cgi-bin/user/get") && l.contains(" 100")));
    let out = bin().args(["presets"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("preset \"normal\"") && stdout.contains("preset \"test\""));
    assert!(stdout.contains("/cgi-bin/message/mass/send"));
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_first_command_simulates_a_threshold_clear() {
    tokio::time::timeout(TEST_LIMIT, async {
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let text = std::fs::read_to_string(&example).expect("config.example.toml is shipped");
        // The same file, on a free port and with JSON logs so the test can read them.
        assert!(text.contains("listen = \"127.0.0.1:9477\""));
        let text = text
            .replace("listen = \"127.0.0.1:9477\"", "listen = \"127.0.0.1:0\"")
            .replace("log_format = \"text\"", "log_format = \"json\"");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        let d = Daemon::start_with(&config, &["run", "--simulate"], &[]);
        let (s, _) = d
            .report(r#"{"account":"shop","api":"/cgi-bin/user/get","calls":480}"#)
            .await;
        assert_eq!(s, 200);
        // One interface due: reset alone by clearApiQuota (one of 50), not one of the 10.
        let shop = wait_for("the simulated clear", Duration::from_secs(10), || async {
            let s = d.shop().await;
            (s["api_clears"]["last"]["outcome"] == "ok").then_some(s)
        })
        .await;
        assert_eq!(shop["api_clears"]["used"], 1);
        assert_eq!(shop["api_clears"]["last"]["api"], "/cgi-bin/user/get");
        assert_eq!(shop["clears"]["used"], 0);
        assert!(
            !dir.path().join("wxquotad-state").exists(),
            "simulation keeps its state apart"
        );
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
    })
    .await
    .expect("within the time limit");
}

#[test]
fn the_packaged_production_config_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml");
    let out = bin().arg("-c").arg(&path).arg("check").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `check` command the example's header teaches (the line holding "check
/// --simulate"), as arguments after `wxquotad`.
fn example_check_command() -> Vec<String> {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
    )
    .unwrap();
    let line = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find(|l| l.contains("config.example.toml check"))
        .expect("the example's header shows how to check it");
    let (_, command) = line.split_once("wxquotad ").unwrap();
    command.split_whitespace().map(String::from).collect()
}

#[test]
fn the_check_the_example_and_readme_teach_passes_on_a_fresh_machine() {
    let args = example_check_command();
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let shown = format!("wxquotad {}", args.join(" "));
    assert!(readme.contains(&shown), "README does not show `{shown}`");
    // Run from the repository, as a new user would, with none of the example's secret
    // files present (they live under /etc/wxquotad).
    assert!(!std::path::Path::new("/etc/wxquotad/shop.secret").exists());
    let out = bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "`{shown}`: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
    // It still teaches: each missing secret is named as a warning.
    assert!(stderr.contains("warning:") && stderr.contains("/etc/wxquotad/shop.secret"));
    // Without --simulate the same file is (rightly) an error: secrets must resolve.
    let strict: Vec<&String> = args.iter().filter(|a| *a != "--simulate").collect();
    let out = bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(strict)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn help_shows_exit_codes_everywhere() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["status", "--help"],
        vec!["report", "--help"],
        vec!["clear", "--help"],
        vec!["presets", "--help"],
        vec!["sim", "--help"],
    ] {
        let out = bin().args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout.contains("Exit codes:") && stdout.contains("78  invalid config"),
            "{args:?}: {stdout}"
        );
    }
}

#[test]
fn check_and_presets_speak_json() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["accounts"][0]["name"], "shop");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));

    let bad =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/bad_threshold.toml");
    let out = bin()
        .arg("-c")
        .arg(&bad)
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(v["ok"], false);
    let e = &v["errors"][0];
    assert!(
        e["line"].as_u64().is_some() && e["message"].as_str().is_some(),
        "{v}"
    );

    let out = bin().args(["presets", "test", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("presets --json");
    assert_eq!(v["test"]["/cgi-bin/user/get"], 100, "{v}");
    assert!(v.get("normal").is_none());
}

/// Runs the CLI against the daemon of `setup`; returns (exit code, stdout, stderr).
fn cli(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    setup.cli(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn report_clear_and_status_speak_human_and_json() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        setup.use_free_port();
        let d = Daemon::start(&setup.config, &[]);

        let (code, out, err) = tokio::task::block_in_place(|| {
            cli(
                &setup,
                &[
                    "report",
                    "--account",
                    "shop",
                    "--api",
                    "/cgi-bin/user/info",
                    "--calls",
                    "3",
                ],
            )
        });
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            out,
            "shop /cgi-bin/user/info: reported 3 calls (accepted 1)\n"
        );
        let (code, out, _) = tokio::task::block_in_place(|| {
            cli(
                &setup,
                &[
                    "report",
                    "--account",
                    "shop",
                    "--api",
                    "/cgi-bin/user/info",
                    "--calls",
                    "2",
                    "--json",
                ],
            )
        });
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).expect("report --json");
        assert_eq!(v["accepted"], 1);

        let (code, out, err) = tokio::task::block_in_place(|| {
            cli(
                &setup,
                &["clear", "shop", "--force", "--reason", "cli test"],
            )
        });
        assert_eq!(code, Some(0), "{err}");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("shop: cleared"));
        assert!(lines.next().unwrap().starts_with("  why: "), "{out}");
        let (code, out, _) =
            tokio::task::block_in_place(|| cli(&setup, &["clear", "shop", "--force", "--json"]));
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).expect("clear --json");
        assert_eq!(v["outcome"], "cleared");

        // One interface only: clearApiQuota, one of the 50, not one of the 10.
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 300);
        let (code, out, err) = tokio::task::block_in_place(|| {
            cli(
                &setup,
                &["clear", "shop", "--api", "/cgi-bin/user/get", "--json"],
            )
        });
        assert_eq!(code, Some(0), "{out} {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("clear --api --json");
        assert_eq!(v["outcome"], "cleared");
        assert_eq!(sim.sim.api_clears_charged(APPID), 1);
        assert_eq!(sim.sim.usage(APPID, "/cgi-bin/user/get"), 0);

        let (code, out, _) = tokio::task::block_in_place(|| cli(&setup, &["status", "--json"]));
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).expect("status --json");
        assert_eq!(v["accounts"][0]["clears"]["used"], 2);
        assert_eq!(v["accounts"][0]["api_clears"]["used"], 1);
        let (code, out, _) = tokio::task::block_in_place(|| cli(&setup, &["status"]));
        assert_eq!(code, Some(0));
        assert!(
            out.lines()
                .any(|l| l.starts_with("shop ") && l.contains(" ok ")),
            "{out}"
        );
        assert!(out.contains("API LEFT"), "{out}");
        assert!(
            out.lines().any(|l| l.contains("last interface clear")),
            "{out}"
        );

        // An unknown account: exit 1, and with --json an error document on stdout.
        let (code, out, err) =
            tokio::task::block_in_place(|| cli(&setup, &["clear", "nosuch", "--json"]));
        assert_eq!(code, Some(1));
        let v: serde_json::Value = serde_json::from_str(&out).expect("error as JSON");
        assert!(v["error"].as_str().unwrap().contains("nosuch"), "{v}");
        assert!(err.starts_with("wxquotad: "), "{err}");
        drop(d);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_listen_and_dry_run_override_the_file_and_survive_a_reload() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let d = Daemon::start_with(&setup.config, &["run", "--listen", &free, "--dry-run"], &[]);
        assert_eq!(d.addr.to_string(), free, "--listen is where it listens");
        assert_eq!(d.status().await["dry_run"], true);
        signal(d.child.id(), "HUP");
        wait_for("the reload", Duration::from_secs(20), || async {
            (!d.events_named("reloaded").is_empty()).then_some(())
        })
        .await;
        assert_eq!(
            d.status().await["dry_run"],
            true,
            "a reload keeps --dry-run"
        );
        let (s, _) = d.report(BLOCKED).await;
        assert_eq!(s, 200);
        let decision = wait_for("the decision", Duration::from_secs(10), || async {
            d.events_named("decision").into_iter().next()
        })
        .await;
        assert_eq!(decision["outcome"], "dry_run", "{decision}");
        assert!(sim
            .sim
            .requests()
            .iter()
            .all(|r| !r.endpoint.contains("clear_quota")));
        assert!(
            d.all_logs()
                .lines()
                .all(|l| !l.contains("listen and state_dir changes")),
            "the override is not mistaken for a config change"
        );

        // A public address without an API token is refused, as in the file.
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .args(["run", "--listen", "0.0.0.0:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("api_token_file"));
    })
    .await;
}
