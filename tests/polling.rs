//! WeChat's own counters (getApiQuota): usage only WeChat sees, limits WeChat knows,
//! paths it will not report, accounts in error, and the check after a clear.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use wxquotad::config::{LimitSource, LimitTable, PresetName};
use wxquotad::sim::{Endpoint, FaultKind};

/// A config polling every second, only `apis` (so a round is quick).
fn polling_setup(sim: &Sim, apis: &str) -> Setup {
    let setup = Setup::new(&sim.url, "", "");
    setup.edit(
        "interval = \"0s\"",
        &format!("interval = \"1s\"\napis = [{apis}]"),
    );
    setup
}

fn quota_requests(sim: &Sim) -> usize {
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == "/cgi-bin/openapi/quota/get")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_only_wechat_sees_crosses_the_threshold_and_clears_once() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = polling_setup(&sim, r#""/cgi-bin/user/get", "/cgi-bin/menu/get""#);
        // Other servers made these calls: no report reaches the daemon.
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 460);
        let d = Daemon::start(&setup.config, &[]);
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
        let decision = &d.events_named("decision")[0];
        assert_eq!(decision["trigger"], "threshold");
        assert_eq!(decision["api"], "/cgi-bin/user/get");
        // WeChat's count went back to zero; later rounds see it and do nothing more.
        let after_clear = quota_requests(&sim);
        wait_for("three more polls", Duration::from_secs(20), || async {
            (quota_requests(&sim) >= after_clear + 3 * 2).then_some(())
        })
        .await;
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        let shop = d.shop().await;
        let user_get = api_row(&shop, "/cgi-bin/user/get");
        assert_eq!(user_get["wechat"], 0);
        assert_eq!(user_get["local"], 0);
        wait_for(
            "the check after the clear",
            Duration::from_secs(5),
            || async { d.events_named("clear_checked").into_iter().next() },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_polled_daily_limit_overrides_the_preset() {
    limited(async {
        let sim = Sim::start(clock()).await;
        // WeChat's backend says 200 a day, the preset says 500.
        let mut limits = LimitTable::from_preset(PresetName::Normal);
        limits.set("/cgi-bin/user/get", 200, LimitSource::Config);
        sim.sim.add_account(APPID, SECRET, limits);
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 150);
        let setup = polling_setup(&sim, r#""/cgi-bin/user/get""#);
        let d = Daemon::start(&setup.config, &[]);
        let user_get = wait_for("a poll", Duration::from_secs(10), || async {
            let a = api_row(&d.shop().await, "/cgi-bin/user/get");
            (a["wechat"] == 150).then_some(a)
        })
        .await;
        assert_eq!(user_get["limit"], 200);
        assert_eq!(user_get["limit_source"], "wechat");
        assert_eq!(user_get["ratio"], 0.75);
        assert_eq!(sim.sim.clears_charged(APPID), 0);
        // 185 of 200 is past 0.9, though far below 0.9 × 500.
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 185);
        wait_for("the clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_wechat_does_not_know_is_dropped_and_the_others_keep_polling() {
    limited(async {
        let sim = Sim::start(clock()).await;
        // /cgi-bin/made/up has no limit at WeChat: 76021.
        let setup = polling_setup(&sim, r#""/cgi-bin/made/up", "/cgi-bin/user/get""#);
        let d = Daemon::start(&setup.config, &[]);
        let ok_polls = || {
            sim.sim
                .requests()
                .iter()
                .filter(|r| r.endpoint == "/cgi-bin/openapi/quota/get" && r.errcode == Some(0))
                .count()
        };
        wait_for("three rounds", Duration::from_secs(20), || async {
            (ok_polls() >= 3).then_some(())
        })
        .await;
        let reqs = sim.sim.requests();
        let quota: Vec<_> = reqs
            .iter()
            .filter(|r| r.endpoint == "/cgi-bin/openapi/quota/get")
            .collect();
        let unknown = quota.iter().filter(|r| r.errcode == Some(76021)).count();
        let ok = quota.iter().filter(|r| r.errcode == Some(0)).count();
        assert_eq!(unknown, 1, "asked once, then no more");
        assert!(ok >= 3, "the other path is polled every round ({ok})");
        let warnings: Vec<Value> = d
            .events()
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no longer polling")
            })
            .collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0]["api"], "/cgi-bin/made/up");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_in_error_is_not_polled() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = polling_setup(&sim, r#""/cgi-bin/user/get""#);
        // A second account, polled normally: its polls show that rounds go on.
        const BLOG: &str = "wx0123456789abcdef";
        sim.sim
            .add_account(BLOG, SECRET, LimitTable::from_preset(PresetName::Normal));
        let secret = setup.dir.path().join("shop.secret");
        setup.edit(
            "[[accounts]]",
            &format!(
                "[[accounts]]\nname = \"blog\"\nappid = \"{BLOG}\"\nsecret_file = \"{}\"\n\n[[accounts]]",
                secret.display()
            ),
        );
        let polls_of = |appid: &str| {
            sim.sim
                .requests()
                .iter()
                .filter(|r| {
                    r.endpoint == "/cgi-bin/openapi/quota/get" && r.appid.as_deref() == Some(appid)
                })
                .count()
        };
        // The server's IP is not in the account's whitelist: 40164 from the clear.
        sim.fault(Endpoint::ClearQuota, FaultKind::Errcode(40164), 1);
        let d = Daemon::start(&setup.config, &[]);
        let shop_of = |s: &Value| {
            s["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == "shop")
                .cloned()
                .unwrap()
        };
        d.report(BLOCKED).await;
        let shop = wait_for("the error state", Duration::from_secs(10), || async {
            let s = shop_of(&d.status().await);
            (s["state"] == "error").then_some(s)
        })
        .await;
        assert_eq!(shop["error"]["errcode"], 40164);
        assert_eq!(d.events_named("account_error").len(), 1);
        // A round that started before the error may still be polling: wait for one that
        // skipped the account, then for three more rounds of the other account.
        wait_for("a round that skips it", Duration::from_secs(10), || async {
            d.events()
                .into_iter()
                .any(|e| e["message"].as_str().unwrap_or("").contains("account is in error"))
                .then_some(())
        })
        .await;
        let blog_next_round = polls_of(BLOG) + 1;
        wait_for("the next round", Duration::from_secs(20), || async {
            (polls_of(BLOG) >= blog_next_round).then_some(())
        })
        .await;
        let before = polls_of(APPID);
        let blog_before = polls_of(BLOG);
        wait_for("three more rounds", Duration::from_secs(20), || async {
            (polls_of(BLOG) >= blog_before + 3).then_some(())
        })
        .await;
        assert_eq!(polls_of(APPID), before, "no polls while in error");
        let skipped = d
            .events()
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("account is in error")
            })
            .count();
        assert_eq!(skipped, 1, "one log line, not one per round");
        // And no automatic clear either.
        assert_eq!(sim.sim.clears_charged(APPID), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_after_a_clear_finds_a_path_wechat_did_not_reset() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = polling_setup(&sim, r#""/cgi-bin/user/get", "/cgi-bin/menu/get""#);
        sim.sim.set_not_reset(APPID, "/cgi-bin/menu/get");
        sim.sim.set_usage(APPID, "/cgi-bin/menu/get", 9_500);
        sim.sim.set_usage(APPID, "/cgi-bin/user/get", 300);
        let d = Daemon::start(&setup.config, &[]);
        let event = wait_for("the not_reset event", Duration::from_secs(10), || async {
            d.events_named("not_reset").into_iter().next()
        })
        .await;
        assert_eq!(event["api"], "/cgi-bin/menu/get");
        assert_eq!(event["after"], 9_500);
        let shop = d.shop().await;
        assert_eq!(api_row(&shop, "/cgi-bin/menu/get")["reset_by_clear"], false);
        assert_eq!(api_row(&shop, "/cgi-bin/user/get")["reset_by_clear"], true);
        assert_eq!(
            sim.sim.clears_charged(APPID),
            1,
            "min_interval holds the next one"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_without_a_token_is_skipped_with_one_log_line() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = polling_setup(&sim, r#""/cgi-bin/user/get""#);
        // The token API itself is out of quota all day.
        sim.fault(Endpoint::StableToken, FaultKind::Errcode(45009), 1000);
        let d = Daemon::start(&setup.config, &[]);
        let token_asks = || {
            sim.sim
                .requests()
                .iter()
                .filter(|r| r.endpoint == "/cgi-bin/stable_token")
                .count()
        };
        wait_for(
            "three rounds asking for a token",
            Duration::from_secs(20),
            || async { (token_asks() >= 3).then_some(()) },
        )
        .await;
        assert_eq!(quota_requests(&sim), 0, "no token, no polls");
        let skipped = d
            .events()
            .into_iter()
            .filter(|e| e["message"] == "not polling WeChat's counters this round")
            .count();
        assert_eq!(skipped, 1, "one log line, not one per round");
        // Reports still work, and a 45009 still clears through the AppSecret.
        d.report(BLOCKED).await;
        wait_for("the v2 clear", Duration::from_secs(10), || async {
            (sim.sim.clears_charged(APPID) == 1).then_some(())
        })
        .await;
    })
    .await;
}
