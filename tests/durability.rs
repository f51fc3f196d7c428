//! Crashes, restarts and the calendar: the budget holds across kill -9, state survives,
//! and days and months turn at 00:00 UTC+8 whatever the machine's time zone.

mod common;

use std::time::Duration;

use common::*;
use wxquotad::sim::{Endpoint, FaultKind};
use wxquotad::time::{parse, Clock};

#[tokio::test(flavor = "multi_thread")]
async fn budget_never_exceeded_across_kill_9_and_restart() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let sim = Sim::start(clock()).await;
        // Our budget (4) is below WeChat's (10), so WeChat's 48006 cannot hide a bug.
        let setup = Setup::new(
            &sim.url,
            r#"monthly_clears = 4
reserve = 0
min_interval = "0s"
max_clears_per_day = 100
quiet_before_reset = "0s""#,
            "",
        );
        // Slow clears, so some kills land while a request is in flight and WeChat
        // charges after the daemon is gone.
        sim.fault(
            Endpoint::ClearQuota,
            FaultKind::Delay(Duration::from_millis(250)),
            1000,
        );
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..10 {
            let d = Daemon::start(&setup.config, &[]);
            d.report(BLOCKED).await;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..400))).await;
            d.kill9();
            let charged = sim.sim.clears_charged(APPID);
            tokio::time::sleep(Duration::from_millis(300)).await; // let a delayed charge land
            let charged_late = sim.sim.clears_charged(APPID);
            assert!(charged_late >= charged);
            // The restart settles in-flight attempts as spent; check after it.
            let d = Daemon::start(&setup.config, &[]);
            let spent = setup.ledger_spent();
            assert!(
                spent >= sim.sim.clears_charged(APPID),
                "round {round}: ledger {spent} < charged {}",
                sim.sim.clears_charged(APPID)
            );
            assert!(spent <= 4, "round {round}: ledger {spent} over the budget");
            d.kill9();
        }
        assert!(sim.sim.clears_charged(APPID) <= 4);
        assert!(
            sim.sim.clears_charged(APPID) >= 1,
            "some clears went through"
        );
        assert_eq!(setup.integrity_check(), "ok");
        assert!(
            setup.ledger().iter().all(|r| r.0 != "in_flight"),
            "every in-flight attempt was settled at start-up"
        );
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_at_most_a_few_seconds_of_counts() {
    tokio::time::timeout(TEST_LIMIT, async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        d.report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 1234}"#)
            .await;
        // The flush runs every 2 s: wait until the count is on disk, then kill.
        wait_for("the flush", Duration::from_secs(20), || async {
            (setup.usage_on_disk("/cgi-bin/menu/get") == Some(1234)).then_some(())
        })
        .await;
        d.kill9();
        let d = Daemon::start(&setup.config, &[]);
        let shop = d.shop().await;
        let menu = api_row(&shop, "/cgi-bin/menu/get");
        assert_eq!(menu["used"], 1234);
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn day_and_month_turn_at_midnight_utc8_in_any_time_zone() {
    tokio::time::timeout(TEST_LIMIT, async {
        // A minute before midnight: room for a slow machine to start the daemon, clear and
        // report before the day turns (checked below), at the cost of a minute's wait.
        let start = "2026-11-30T23:59:00+08:00";
        let sim = Sim::start(Clock::starting_at(parse(start).unwrap())).await;
        let setup = Setup::new(
            &sim.url,
            r#"quiet_before_reset = "0s"
min_interval = "0s""#,
            "",
        );
        let env = [("WXQUOTAD_FAKE_NOW", start), ("TZ", "America/New_York")];
        let d = Daemon::start(&setup.config, &env);
        d.report(BLOCKED).await;
        d.report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 777}"#)
            .await;
        let shop = wait_for("the clear", Duration::from_secs(30), || async {
            let s = d.shop().await;
            (s["clears"]["used"] == 1).then_some(s)
        })
        .await;
        assert_eq!(shop["clears"]["month"], "2026-11");
        assert_eq!(shop["clears"]["today"], 1);
        let status = d.status().await;
        assert_eq!(status["next_reset"], "2026-12-01T00:00:00+08:00");
        d.report(r#"{"account": "shop", "api": "/cgi-bin/menu/get", "calls": 5}"#)
            .await;
        // The report above was applied before this status was read: both on the 30th.
        let before_midnight = d.status().await;
        assert!(
            before_midnight["now"]
                .as_str()
                .is_some_and(|now| now.starts_with("2026-11-30T")),
            "the clear and the report must land before midnight: {before_midnight}"
        );
        // Past 00:00 UTC+8 (16:00 UTC; 11:00 in New York, where nothing happens).
        let shop = wait_for("the new month", Duration::from_secs(120), || async {
            let s = d.shop().await;
            (s["clears"]["month"] == "2026-12").then_some(s)
        })
        .await;
        assert_eq!(shop["clears"]["used"], 0, "a new month's budget");
        assert_eq!(shop["clears"]["left"], 10);
        assert_eq!(shop["clears"]["today"], 0);
        let menu = api_row(&shop, "/cgi-bin/menu/get");
        assert_eq!(menu["used"], 0, "a new day's counters");
        let summary = wait_for("the day summary", Duration::from_secs(30), || async {
            d.events_named("day_summary").into_iter().next()
        })
        .await;
        assert_eq!(summary["day"], "2026-11-30");
        assert_eq!(summary["clears"], 1);
        // Yesterday's counts reached the state file under yesterday's date.
        let (code, _) = d.terminate();
        assert_eq!(code, Some(0));
        let c = rusqlite::Connection::open(setup.state_db()).unwrap();
        let calls: i64 = c
            .query_row(
                "SELECT calls FROM usage WHERE day = '2026-11-30' AND api = '/cgi-bin/menu/get'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            calls, 5,
            "counts after the clear, on the day they were made"
        );
    })
    .await
    .expect("within the time limit");
}
