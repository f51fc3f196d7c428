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
