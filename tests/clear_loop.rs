//! The clear loop end to end: the real binary against the in-process simulator.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use wxquotad::sim::{Endpoint, Fault, FaultKind};

async fn cleared_count(d: &Daemon) -> u64 {
    d.shop().await["clears"]["used"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn threshold_crossed_clears_once() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        // /cgi-bin/user/get has 500 a day in "normal"; 0.9 × 500 = 450.
        let (s, a) = d
            .report(r#"{"account": "shop", "api": "/cgi-bin/user/get", "calls": 449}"#)
            .await;
        assert_eq!((s, a["accepted"].as_u64()), (200, Some(1)));
        // 449 of 500 is below the threshold: the one clear below names 90% (450), so
        // it was the next report that made the account due, not this one.
        d.report(r#"{"account": "shop", "api": "cgi-bin/user/get", "calls": 1}"#)
            .await;
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
        let shop = wait_for(
            "status to show the clear",
            Duration::from_secs(5),
            || async {
                let s = d.shop().await;
                (s["clears"]["used"] == 1 && s["clears"]["in_flight"] == false).then_some(s)
            },
        )
        .await;
        assert_eq!(shop["clears"]["last"]["outcome"], "ok");
        assert_eq!(
            shop["clears"]["last"]["reason"],
            "threshold /cgi-bin/user/get 90%"
        );
        let user_get = shop["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["api"] == "/cgi-bin/user/get")
            .unwrap()
            .clone();
        assert_eq!(user_get["used"], 0, "counters start again after a clear");
        // The clear went through the stable token, never /cgi-bin/token.
        let reqs = sim.sim.requests();
        assert!(reqs.iter().any(|r| r.endpoint == "/cgi-bin/stable_token"));
        assert!(reqs.iter().all(|r| r.endpoint != "/cgi-bin/token"));
        assert_eq!(
            d.events_named("decision")
                .iter()
                .filter(|e| e["outcome"] == "clear")
                .count(),
            1
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forty_five_009_clears_and_45011_does_not() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let (s, _) = d
            .report(r#"{"appid": "wx448f04719cd48f69", "api": "/cgi-bin/user/info", "errcode": 45011}"#)
            .await;
        assert_eq!(s, 200);
        // Reports are applied before the answer: 45011 did not mark the path blocked,
        // so nothing can make the account due.
        let info = api_row(&d.shop().await, "/cgi-bin/user/info");
        assert_eq!(info["blocked"], false, "45011 never blocks: {info}");
        assert_eq!(sim.sim.clears_charged(APPID), 0, "45011 never clears");

        d.report(r#"{"appid": "wx448f04719cd48f69", "api": "https://api.weixin.qq.com/cgi-bin/user/info?access_token=APPTOKEN", "errcode": 45009}"#)
            .await;
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
        let decision = &d.events_named("decision")[0];
        assert_eq!(decision["trigger"], "45009");
        assert_eq!(decision["api"], "/cgi-bin/user/info");
        assert_eq!(decision["account"], "shop");
        assert!(!d.all_logs().contains("APPTOKEN"), "the query never reaches the logs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reserve_is_held_for_people() {
    limited(async {
        let sim = Sim::start(clock()).await;
        // 3 a month, 2 reserved: exactly one automatic clear.
        let setup = Setup::new(
            &sim.url,
            r#"monthly_clears = 3
reserve = 2
min_interval = "0s"
quiet_before_reset = "0s""#,
            "",
        );
        let d = Daemon::start(&setup.config, &[]);
        let blocked = BLOCKED;
        d.report(blocked).await;
        wait_for("the first clear", Duration::from_secs(10), || async {
            (cleared_count(&d).await == 1).then_some(())
        })
        .await;
        d.report(blocked).await;
        let hold = wait_for("the hold", Duration::from_secs(10), || async {
            d.events_named("decision").into_iter().find(|e| {
                e["outcome"] == "hold" && e["reason"].as_str().unwrap().contains("reserved")
            })
        })
        .await;
        assert_eq!(hold["clears_left"], 2);
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        // A person can still spend the reserve with force.
        let (s, a) = d
            .post(
                "/v1/accounts/shop/clear",
                r#"{"force": true, "reason": "on call"}"#,
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(a["outcome"], "cleared", "{a}");
        assert_eq!(sim.sim.clears_charged(APPID), 2);
        // Without force the policy applies.
        let (_, a) = d.post("/v1/accounts/shop/clear", "").await;
        assert_eq!(a["outcome"], "refused", "{a}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn month_exhausted_by_48006_stops_all_attempts() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        // Clears made by hand on the web platform: WeChat has none left to give.
        sim.fault(Endpoint::ClearQuota, FaultKind::Errcode(48006), 100);
        let d = Daemon::start(&setup.config, &[]);
        d.report(BLOCKED).await;
        let shop = wait_for("exhausted state", Duration::from_secs(10), || async {
            let s = d.shop().await;
            (s["state"] == "exhausted").then_some(s)
        })
        .await;
        assert_eq!(shop["clears"]["left"], 0);
        assert_eq!(shop["clears"]["used"], 0, "a 48006 answer spends nothing");
        assert_eq!(shop["clears"]["last"]["errcode"], 48006);
        let before = clear_requests(&sim);
        assert_eq!(before, 1);
        for _ in 0..3 {
            d.report(BLOCKED).await;
        }
        let (_, a) = d
            .post("/v1/accounts/shop/clear", r#"{"force": true}"#)
            .await;
        assert_eq!(a["outcome"], "refused");
        // The reports' decision ran and was held by the 48006 of this month.
        wait_for("the held decision", Duration::from_secs(10), || async {
            d.events_named("decision")
                .into_iter()
                .find(|e| e["gate"] == "month_exhausted")
        })
        .await;
        assert_eq!(
            clear_requests(&sim),
            before,
            "no further attempts this month"
        );
        assert_eq!(d.events_named("exhausted").len(), 1);
    })
    .await;
}

fn clear_requests(sim: &Sim) -> usize {
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.endpoint.starts_with("/cgi-bin/clear_quota"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_decision_re_sends_only_what_was_not_applied_and_stops_at_an_unknown_outcome() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        // -1: WeChat says it did not apply it (re-sent); 502: might have (not re-sent).
        for kind in [FaultKind::Errcode(-1), FaultKind::Http(502)] {
            sim.sim.inject(Fault {
                endpoint: Endpoint::ClearQuota,
                kind,
                times: 1,
            });
        }
        let d = Daemon::start(&setup.config, &[]);
        d.report(BLOCKED).await;
        let failed = wait_for("the decision to end", Duration::from_secs(20), || async {
            d.events_named("clear_failed").into_iter().next()
        })
        .await;
        assert!(failed["clears_left"].is_u64(), "{failed}");
        assert_eq!(clear_requests(&sim), 2);
        let ledger = setup.ledger();
        let outcomes: Vec<&str> = ledger.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(outcomes, ["failed", "unknown"]);
        assert!(setup.ledger_spent() >= sim.sim.clears_charged(APPID));
        // Still blocked: the next decision is held by the back-off (1 min), not re-sent.
        let shop = d.shop().await;
        assert!(shop["clears"]["backoff_until"].is_string(), "{shop}");
        d.report(BLOCKED).await;
        wait_for("the back-off hold", Duration::from_secs(10), || async {
            d.events_named("decision")
                .into_iter()
                .find(|e| e["gate"] == "backoff")
        })
        .await;
        assert_eq!(clear_requests(&sim), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_reply_counts_as_spent_and_is_not_re_sent() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        sim.fault(Endpoint::ClearQuota, FaultKind::ChargeThenDrop, 1);
        let d = Daemon::start(&setup.config, &[]);
        d.report(BLOCKED).await;
        wait_for("the decision to end", Duration::from_secs(20), || async {
            d.events_named("clear_failed").into_iter().next()
        })
        .await;
        // WeChat charged the lost one; the ledger counts it; nothing was sent again.
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        assert_eq!(setup.ledger()[0].0, "unknown");
        assert_eq!(setup.ledger().len(), 1);
        assert_eq!(d.shop().await["clears"]["used"], 1);
        assert_eq!(clear_requests(&sim), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_api_at_45009_falls_back_to_v2() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        sim.fault(Endpoint::StableToken, FaultKind::Errcode(45009), 100);
        let d = Daemon::start(&setup.config, &[]);
        d.report(BLOCKED).await;
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
        let reqs = sim.sim.requests();
        assert!(reqs.iter().any(|r| r.endpoint == "/cgi-bin/clear_quota/v2"));
        assert!(reqs.iter().all(|r| r.endpoint != "/cgi-bin/clear_quota"));
        assert_eq!(setup.ledger().last().unwrap().2, "appsecret");
        assert!(
            !d.all_logs().contains(SECRET),
            "the AppSecret never reaches the logs"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_reports_change_nothing_and_the_daemon_keeps_serving() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let good = r#"{"account": "shop", "api": "/cgi-bin/user/get", "calls": 10}"#;
        let cases: Vec<(String, u16, &str)> = vec![
            ("not json".into(), 400, "JSON object"),
            ("{\"account\": ".into(), 400, "invalid JSON"),
            ("".into(), 400, "empty"),
            (r#"{"account": "shop", "api": "/cgi-bin/user/get"}"#.into(), 400, "calls"),
            (r#"{"account": "shop", "api": "/cgi-bin/user/get", "calls": -5}"#.into(), 400, "between 1"),
            (format!("[{good}, {{\"account\": \"shop\", \"api\": \"/x y\", \"calls\": 1}}]"), 400, "item 1"),
            (format!("[{good}, {{\"account\": \"nobody\", \"api\": \"/a\", \"calls\": 1}}]"), 404, "item 1"),
            (format!("[{good}, {{\"appid\": \"wx0000000000000000\", \"api\": \"/a\", \"calls\": 1}}]"), 404, "item 1"),
            (format!("[{}]", vec![good; 10_001].join(",")), 413, "at most 10000"),
            (format!("[{}]", vec![good; 30_000].join(",")), 413, "1 MiB"),
        ];
        for (body, status, fragment) in &cases {
            let (s, a) = d.report(body).await;
            assert_eq!(s, *status, "{fragment}: {a}");
            let msg = a["error"].as_str().unwrap_or_default();
            assert!(msg.contains(fragment), "expected {fragment:?} in {msg:?}");
        }
        let shop = d.shop().await;
        let user_get: Vec<&Value> = shop["apis"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["api"] == "/cgi-bin/user/get")
            .collect();
        assert_eq!(user_get[0]["used"], 0, "no bad batch applied anything");
        let (s, _) = d.report(good).await;
        assert_eq!(s, 200, "still serving");
        let health = reqwest::get(d.url("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");
        let (s, a) = d.post("/v1/accounts/nobody/clear", "").await;
        assert_eq!(s, 404, "{a}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_keeps_counters_exactly() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let mut expected = 0u64;
        for i in 1..=50u64 {
            let (s, _) = d
                .report(&format!(
                    r#"[{{"account": "shop", "api": "/cgi-bin/menu/get", "calls": {i}}}, {{"account": "shop", "api": "/cgi-bin/custom/x", "calls": 1}}]"#
                ))
                .await;
            assert_eq!(s, 200);
            expected += i;
        }
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0), "{logs}");
        let d = Daemon::start(&setup.config, &[]);
        let shop = d.shop().await;
        let used = |api: &str| {
            shop["apis"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["api"] == api)
                .map(|a| a["used"].as_u64().unwrap())
        };
        assert_eq!(used("/cgi-bin/menu/get"), Some(expected));
        assert_eq!(used("/cgi-bin/custom/x"), Some(50));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_appear_in_logs_or_status() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        // A failing token fetch and a failing v2 clear put the secret near error paths.
        sim.fault(Endpoint::ClearQuota, FaultKind::Errcode(40001), 1);
        let d = Daemon::start(&setup.config, &[("RUST_LOG", "debug")]);
        d.report(BLOCKED).await;
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
        let status = d.status().await.to_string();
        let logs = d.all_logs();
        let tokens = sim.sim.tokens_issued();
        assert!(!tokens.is_empty());
        for secret in tokens.iter().map(String::as_str).chain([SECRET]) {
            assert!(!status.contains(secret), "secret in status");
            assert!(!logs.contains(secret), "secret in logs");
        }
        let (_, logs) = d.terminate();
        assert!(!logs.contains(SECRET));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_decides_and_logs_but_never_clears() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        setup.edit(
            "log_format = \"json\"",
            "log_format = \"json\"\ndry_run = true",
        );
        let d = Daemon::start(&setup.config, &[]);
        d.report(BLOCKED).await;
        let decision = wait_for("the decision", Duration::from_secs(10), || async {
            d.events_named("decision").into_iter().next()
        })
        .await;
        assert_eq!(decision["outcome"], "dry_run");
        assert_eq!(decision["gate"], "dry_run");
        assert!(decision["reason"].as_str().unwrap().contains("would clear"));
        let (_, a) = d
            .post("/v1/accounts/shop/clear", r#"{"force": true}"#)
            .await;
        assert_eq!(a["outcome"], "refused", "{a}");
        assert_eq!(clear_requests(&sim), 0, "dry run never calls clear_quota");
        assert!(setup.ledger().is_empty());
        assert_eq!(d.status().await["dry_run"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_clears_one_interface_when_asked_with_api() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        let d = Daemon::start(&setup.config, &[]);
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 300);
        sim.sim.set_usage(APPID, "/cgi-bin/menu/get", 200);
        let (s, a) = d
            .post(
                "/v1/accounts/shop/clear",
                r#"{"api": "cgi-bin/user/get", "reason": "one interface"}"#,
            )
            .await;
        assert_eq!((s, a["outcome"].as_str()), (200, Some("cleared")), "{a}");
        assert_eq!(sim.sim.api_clears_charged(APPID), 1);
        assert_eq!(sim.sim.clears_charged(APPID), 0);
        assert_eq!(sim.sim.usage(APPID, "/cgi-bin/user/get"), 0);
        assert_eq!(sim.sim.usage(APPID, "/cgi-bin/menu/get"), 200);
        let shop = d.shop().await;
        assert_eq!(shop["api_clears"]["used"], 1);
        assert_eq!(shop["api_clears"]["last"]["api"], "/cgi-bin/user/get");
        let cleared = d.events_named("cleared");
        assert_eq!(cleared[0]["kind"], "api");
        assert_eq!(cleared[0]["api_clears_left"], 49);
        let (s, a) = d
            .post("/v1/accounts/shop/clear", r#"{"api": "not a path"}"#)
            .await;
        assert_eq!(s, 400, "{a}");
    })
    .await;
}
