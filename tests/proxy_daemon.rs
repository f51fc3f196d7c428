//! The counting proxy in the real binary: `[proxy]` from the config file, wired into
//! `run` and `run --simulate`, counting into the same status, stopping cleanly.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PROXY: &str = "[proxy]\nlisten = \"127.0.0.1:0\"\nhold = \"5s\"\n";

fn proxy_addr(d: &Daemon) -> SocketAddr {
    let events = d.events_named("proxy_listening");
    let addr = events
        .first()
        .unwrap_or_else(|| panic!("no proxy_listening event; logs:\n{}", d.all_logs()));
    addr["addr"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_proxies_counts_clears_and_retries_and_keeps_secrets_out_of_logs() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", PROXY);
        let d = Daemon::start(&setup.config, &[]);
        let proxy = proxy_addr(&d);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();

        let token: Value = http
            .get(format!(
                "http://{proxy}/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().expect("a token").to_string();

        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 500);
        let v: Value = http
            .get(format!("http://{proxy}/a/shop/cgi-bin/user/get"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["errcode"], 0, "the 45009 was cleared and retried: {v}");
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        let shop = wait_for("the count in status", Duration::from_secs(10), || async {
            let shop = d.shop().await;
            (api_row(&shop, "/cgi-bin/user/get")["used"] == 1).then_some(shop)
        })
        .await;
        assert_eq!(shop["clears"]["used"], 1);
        let metrics = d.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("proxied_calls_total{account=\"shop\",outcome=\"45009\"} 1"), "{metrics}");
        assert!(metrics.contains("proxied_calls_total{account=\"shop\",outcome=\"0\"} 1"), "{metrics}");
        assert!(!metrics.contains(&token));

        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
        assert!(!logs.contains(&token), "the token never reaches the logs");
        assert!(!logs.contains(SECRET), "the secret never reaches the logs");
        // The classic token API was never called.
        assert!(sim.sim.requests().iter().all(|r| r.endpoint != "/cgi-bin/token"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_simulate_serves_the_whole_flow_with_no_credentials() {
    limited(async {
        let setup = Setup::new("http://127.0.0.1:1", "", PROXY);
        let d = Daemon::start_with(&setup.config, &["run", "--simulate"], &[]);
        let proxy = proxy_addr(&d);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let v: Value = http
            .post(format!("http://{proxy}/a/shop/cgi-bin/message/custom/send"))
            .json(&json!({"touser": "o1", "msgtype": "text", "text": {"content": "hi"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["errcode"], 0, "{v}");
        wait_for("the count in status", Duration::from_secs(10), || async {
            let shop = d.shop().await;
            (api_row(&shop, "/cgi-bin/message/custom/send")["used"] == 1).then_some(())
        })
        .await;
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
    })
    .await;
}

#[test]
fn check_reports_proxy_errors_with_their_location() {
    let sim_url = "http://127.0.0.1:1";
    let setup = Setup::new(sim_url, "", "[proxy]\nlisten = \"0.0.0.0:9480\"\n");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.listen") && err.contains("allow must list"),
        "{err}"
    );
}
