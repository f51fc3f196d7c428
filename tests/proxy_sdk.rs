//! A real WeChat SDK through the counting proxy: wechatpy from PyPI, in a venv made by
//! tests/sdk/wechatpy-venv.sh (run by .ci/run, and here when it is missing), pointed at
//! the real daemon's proxy with `API_BASE_URL`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The venv, made on first use; panics saying how to make it when that fails.
fn wechatpy_python() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = target.parent().expect("target dir").join("sdk-venv");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/wechatpy-venv.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&venv)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "could not set up wechatpy (needs python3 with venv and PyPI; .ci/run installs \
         them): run `bash tests/sdk/wechatpy-venv.sh {}` and see:\n{}{}",
        venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    venv.join("bin").join("python")
}

#[tokio::test(flavor = "multi_thread")]
async fn wechatpy_sends_uploads_downloads_and_never_sees_the_45009() {
    let python = wechatpy_python();
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "[proxy]\nlisten = \"127.0.0.1:0\"\n");
        let d = Daemon::start(&setup.config, &[]);
        let proxy = d.events_named("proxy_listening")[0]["addr"]
            .as_str()
            .unwrap()
            .to_string();
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 500);

        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/wechatpy_drive.py");
        let url = format!("http://{proxy}");
        let out = tokio::task::spawn_blocking(move || {
            Command::new(&python)
                .arg(driver)
                .arg(url)
                .arg(APPID)
                .arg(SECRET)
                .env("NO_PROXY", "*")
                .output()
                .expect("python runs")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wechatpy driver failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: Value = serde_json::from_str(stdout.trim()).expect("driver prints JSON");
        assert_eq!(seen["send"], 0, "{seen}");
        assert_eq!(
            seen["user_get"], 0,
            "the 45009 was cleared and retried: {seen}"
        );
        assert_eq!(seen["download_same"], true, "media came back byte for byte");
        assert_eq!(seen["download_type"], "image/jpeg");
        assert_eq!(seen["wrong_secret"], 40125);

        assert_eq!(sim.sim.clears_charged(APPID), 1);
        let sends: Vec<_> = sim
            .sim
            .executions()
            .into_iter()
            .filter(|e| e.path == "/cgi-bin/message/custom/send")
            .collect();
        assert_eq!(sends.len(), 1, "the message was sent once");
        assert!(String::from_utf8_lossy(&sends[0].body).contains("hello from wechatpy"));
        // wechatpy's token came from the daemon's cache: WeChat's classic token API
        // was never called.
        assert!(sim
            .sim
            .requests()
            .iter()
            .all(|r| r.endpoint != "/cgi-bin/token"));
        let counted = |shop: &Value| {
            [
                "/cgi-bin/message/custom/send",
                "/cgi-bin/user/get",
                "/cgi-bin/media/upload",
                "/cgi-bin/media/get",
            ]
            .map(|api| api_row(shop, api)["used"].as_u64().unwrap_or(0))
        };
        let last = std::sync::Mutex::new(Value::Null);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let shop = d.shop().await;
                // The send came before the clear, which started every counter of the
                // account again; the calls after it count one each.
                let ok = counted(&shop) == [0, 1, 1, 1];
                *last.lock().unwrap() = shop;
                if ok {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("each call counted once: {}", last.lock().unwrap()["apis"]));
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
    })
    .await;
}
