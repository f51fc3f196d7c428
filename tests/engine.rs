//! The engine in-process, on a manual clock, against the simulator on 127.0.0.1:0:
//! `tick()` and reports driven directly, so a test can step past min_interval, a
//! back-off or a midnight without waiting. Every budget behaviour of SPEC §5 and §6
//! that needs no real binary is here; the black-box tests keep the rest.

mod common;

use std::time::Duration;

use common::harness::*;
use common::APPID;
use wxquotad::engine::{ClearOutcome, Report, Reported, Target};
use wxquotad::sim::{Endpoint, FaultKind};
use wxquotad::store::{AttemptOutcome, ClearKind};
use wxquotad::time::parse;

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_outcome_ends_the_decision_and_the_next_one_reads_first() {
    limited(async {
        // confirm_45009 off: any getApiQuota read below is the one after the unknown.
        let h = Harness::new(EAGER, "0s", |c| {
            no_api_clears(c);
            c.accounts[0].policy.confirm_45009 = false;
        })
        .await;
        h.sim.set_usage(APPID, USER_GET, 500);
        // A 5xx: not applied by WeChat, but the daemon cannot know that.
        h.fault(Endpoint::ClearQuota, FaultKind::Http(502), 1);
        h.blocked(USER_GET).await;
        assert_eq!(
            h.requests_to("/cgi-bin/clear_quota").len(),
            1,
            "sent once, never re-sent blindly"
        );
        let rows = h.ledger();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].outcome, AttemptOutcome::Unknown);
        assert!(h.shop().clears.backoff_until.is_some());
        // Still blocked: the next decision, after the back-off, reads getApiQuota first
        // (WeChat still counts 500 of 500: the clear did not take effect), then clears.
        h.advance(61);
        h.tick().await;
        let order: Vec<String> = h
            .endpoints()
            .into_iter()
            .filter(|e| e.contains("quota"))
            .collect();
        assert_eq!(
            order,
            [
                "/cgi-bin/clear_quota",
                "/cgi-bin/openapi/quota/get",
                "/cgi-bin/clear_quota"
            ]
        );
        assert_eq!(h.sim.clears_charged(APPID), 1);
        assert_eq!(
            h.shop().clears.used,
            2,
            "the unknown one stays counted as spent"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_outcome_that_took_effect_is_found_by_the_first_read_and_not_paid_twice() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        // WeChat applies the clear, the answer never comes (the client times out).
        h.fault(Endpoint::ClearQuota, FaultKind::ChargeThenDrop, 1);
        h.report(USER_GET, Reported::Calls(480)).await;
        assert_eq!(h.sim.clears_charged(APPID), 1);
        assert_eq!(h.ledger()[0].outcome, AttemptOutcome::Unknown);
        // Our count still says 480 of 500; WeChat's says 0. After the back-off the
        // decision reads first, learns the clear took effect, and spends nothing.
        h.advance(61);
        h.tick().await;
        assert_eq!(h.requests_to("/cgi-bin/clear_quota").len(), 1);
        assert_eq!(h.requests_to("/cgi-bin/openapi/quota/get").len(), 1);
        assert_eq!(h.ledger().len(), 1);
        let user_get = h
            .shop()
            .apis
            .into_iter()
            .find(|a| a.api == USER_GET)
            .unwrap();
        assert_eq!(user_get.local, 0, "counters start again");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_answer_is_resent_within_the_decision_and_spends_one_clear() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        // -1 proves the clear was not applied: re-sent at once, within the decision.
        h.fault(Endpoint::ClearQuota, FaultKind::Errcode(-1), 1);
        h.blocked(USER_GET).await;
        let rows = h.ledger();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].outcome, AttemptOutcome::Failed);
        assert_eq!(rows[1].outcome, AttemptOutcome::Ok);
        assert_eq!(h.shop().clears.used, 1);
        assert!(h.shop().clears.backoff_until.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_clears_back_off_one_minute_doubling_to_an_hour() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        // The clear endpoint's own daily cap: every attempt fails.
        h.fault(Endpoint::ClearQuota, FaultKind::Errcode(45009), 1000);
        h.blocked(USER_GET).await;
        // Three hours of ticks every 10 s.
        for _ in 0..(3 * 360) {
            h.advance(10);
            h.tick().await;
        }
        let sent = h.requests_to("/cgi-bin/clear_quota");
        let gaps: Vec<i64> = sent
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        let want = [60, 120, 240, 480, 960, 1920, 3600];
        assert!(gaps.len() >= want.len(), "{gaps:?}");
        for (gap, want) in gaps.iter().zip(want.iter().chain(std::iter::repeat(&3600))) {
            assert!(*gap >= *want && *gap < want + 10, "gaps {gaps:?}");
        }
        // A success resets it: the next failure waits one minute again.
        let h2 = Harness::new(EAGER, "0s", no_api_clears).await;
        h2.sim.set_usage(APPID, USER_GET, 500);
        h2.fault(Endpoint::ClearQuota, FaultKind::Errcode(45009), 2);
        h2.blocked(USER_GET).await;
        for _ in 0..30 {
            h2.advance(10);
            h2.tick().await;
        }
        // Failed at 0, failed at 60, succeeded at 180.
        assert_eq!(h2.sim.clears_charged(APPID), 1);
        h2.fault(Endpoint::ClearQuota, FaultKind::Errcode(45009), 1);
        h2.sim.set_usage(APPID, USER_GET, 500);
        h2.blocked(USER_GET).await;
        let before = h2.requests_to("/cgi-bin/clear_quota").len();
        h2.advance(60);
        h2.tick().await;
        assert_eq!(
            h2.requests_to("/cgi-bin/clear_quota").len(),
            before + 1,
            "after a success, the back-off starts again at one minute"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_change_ends_the_back_off() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        h.fault(Endpoint::ClearQuota, FaultKind::Errcode(45009), 1);
        h.blocked(USER_GET).await;
        assert!(h.shop().clears.backoff_until.is_some());
        h.tick().await;
        assert_eq!(
            h.requests_to("/cgi-bin/clear_quota").len(),
            1,
            "backing off"
        );
        let mut changed = h.config.clone();
        changed.accounts[0].policy.max_clears_per_day = 50;
        h.engine.apply_config(changed).unwrap();
        assert!(h.shop().clears.backoff_until.is_none());
        h.tick().await;
        assert_eq!(h.sim.clears_charged(APPID), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_wechat_did_not_reset_never_triggers_again_that_day() {
    limited(async {
        // Polling on, so the check after a clear runs.
        let h = Harness::new(EAGER, "1h", |_| {}).await;
        h.sim.set_not_reset(APPID, MENU_GET);
        h.sim.set_usage(APPID, MENU_GET, 9_500);
        h.report(MENU_GET, Reported::Calls(9_500)).await;
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
        let menu = h
            .shop()
            .apis
            .into_iter()
            .find(|a| a.api == MENU_GET)
            .unwrap();
        assert!(!menu.reset_by_clear, "the check after the clear saw it");
        // WeChat still counts 9,500: more calls reach the threshold again, but no clear
        // is spent on that path today, however long we wait.
        h.report(MENU_GET, Reported::Calls(9_500)).await;
        for _ in 0..6 {
            h.advance(3600);
            h.tick().await;
        }
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
        assert_eq!(h.sim.clears_charged(APPID), 0);
        // A new day: it may trigger again.
        h.clock.set(parse("2026-11-19T12:00:00+08:00").unwrap());
        h.sim.set_usage(APPID, MENU_GET, 9_500);
        h.report(MENU_GET, Reported::Calls(9_500)).await;
        assert_eq!(h.sim.api_clears_charged(APPID), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_apis_and_a_lifetime_quota_never_trigger() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        h.blocked("/cgi-bin/token").await;
        h.report("/cgi-bin/token", Reported::Calls(2_000)).await;
        h.report("/cgi-bin/qrcode/create", Reported::Errcode(45029))
            .await;
        h.report("/cgi-bin/qrcode/create", Reported::Calls(100_000))
            .await;
        h.tick().await;
        assert!(h.ledger().is_empty());
        assert!(
            h.endpoints().iter().all(|e| !e.contains("clear")),
            "{:?}",
            h.endpoints()
        );
        // Another path is still cleared as usual.
        h.sim.set_usage(APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_45009_holds_a_45009_that_is_not_the_daily_quota() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        // WeChat counts 10 of 500: the 45009 came from another limit.
        h.sim.set_usage(APPID, USER_GET, 10);
        h.blocked(USER_GET).await;
        assert_eq!(h.requests_to("/cgi-bin/openapi/quota/get").len(), 1);
        assert!(h.ledger().is_empty(), "no clear spent");
        // Held from now on without asking again on every tick.
        for _ in 0..5 {
            h.advance(60);
            h.tick().await;
        }
        assert_eq!(h.requests_to("/cgi-bin/openapi/quota/get").len(), 1);
        assert!(h.ledger().is_empty());
        // WeChat's counter full: a 45009 is cleared.
        let h2 = Harness::new(EAGER, "0s", |_| {}).await;
        h2.sim.set_usage(APPID, USER_GET, 500);
        h2.blocked(USER_GET).await;
        assert_eq!(h2.sim.api_clears_charged(APPID), 1);
        // Without confirm_45009 the report is trusted, and no read is made.
        let h3 = Harness::new(EAGER, "0s", |c| c.accounts[0].policy.confirm_45009 = false).await;
        h3.sim.set_usage(APPID, USER_GET, 10);
        h3.blocked(USER_GET).await;
        assert_eq!(h3.sim.api_clears_charged(APPID), 1);
        assert!(h3.requests_to("/cgi-bin/openapi/quota/get").is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_due_interface_spends_a_per_interface_clear_several_spend_an_account_clear() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        h.sim.set_usage(APPID, USER_GET, 460);
        h.sim.set_usage(APPID, MENU_GET, 20);
        h.report(USER_GET, Reported::Calls(460)).await;
        h.report(MENU_GET, Reported::Calls(20)).await;
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
        assert_eq!(h.sim.clears_charged(APPID), 0);
        assert_eq!(h.sim.usage(APPID, USER_GET), 0);
        assert_eq!(h.sim.usage(APPID, MENU_GET), 20, "only that interface");
        let s = h.shop();
        assert_eq!((s.api_clears.used, s.api_clears.left), (1, 49));
        assert_eq!(s.clears.used, 0);
        assert_eq!(
            s.api_clears.last.as_ref().unwrap().api.as_deref(),
            Some(USER_GET)
        );
        let row = h.ledger().pop().unwrap();
        assert_eq!(
            (row.kind, row.api.as_deref()),
            (ClearKind::Api, Some(USER_GET))
        );
        let menu = s.apis.iter().find(|a| a.api == MENU_GET).unwrap();
        assert_eq!(menu.local, 20, "our other counts stay");

        // Two interfaces due together: one account clear.
        h.sim.set_usage(APPID, USER_GET, 470);
        h.sim.set_usage(APPID, MENU_GET, 9_600);
        h.engine
            .report(&[
                Report {
                    target: Target::Account("shop".into()),
                    api: USER_GET.into(),
                    what: Reported::Calls(470),
                },
                Report {
                    target: Target::Account("shop".into()),
                    api: MENU_GET.into(),
                    what: Reported::Calls(9_580),
                },
            ])
            .unwrap();
        h.engine.idle().await;
        assert_eq!(h.sim.clears_charged(APPID), 1);
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
        assert_eq!(h.ledger().pop().unwrap().kind, ClearKind::Account);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_path_is_cleared_the_whole_account_way_in_the_same_decision() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        h.sim.set_api_clear_refused(APPID, USER_GET, 40066);
        h.sim.set_usage(APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        let rows = h.ledger();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (rows[0].kind, rows[0].outcome),
            (ClearKind::Api, AttemptOutcome::Failed)
        );
        assert_eq!(
            (rows[1].kind, rows[1].outcome),
            (ClearKind::Account, AttemptOutcome::Ok)
        );
        let s = h.shop();
        assert!(
            s.clears.backoff_until.is_none(),
            "a refusal is not a failure"
        );
        assert_eq!(s.api_clears.refused, [USER_GET]);
        assert_eq!(s.api_clears.used, 0);
        // Remembered: the next day goes straight to the whole account.
        h.clock.set(parse("2026-11-19T12:00:00+08:00").unwrap());
        h.sim.set_usage(APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        assert_eq!(h.requests_to("/cgi-bin/openapi/quota/clear").len(), 1);
        assert_eq!(h.sim.clears_charged(APPID), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_stepped_back_holds_clears_and_never_books_into_the_past() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |c| {
            no_api_clears(c);
            c.accounts[0].policy.confirm_45009 = false;
        })
        .await;
        h.clock.set(parse("2026-12-01T00:40:00+08:00").unwrap());
        h.sim.set_usage(APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        assert_eq!(h.sim.clears_charged(APPID), 1);
        h.report(MENU_GET, Reported::Calls(42)).await;
        // Stepped back into last month.
        h.clock.set(parse("2026-11-30T23:00:00+08:00").unwrap());
        h.sim.set_usage(APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        h.tick().await;
        let manual = h.engine.clear_now("shop", false, None).await.unwrap();
        assert_eq!(manual.outcome, ClearOutcome::Refused, "{manual:?}");
        let forced = h.engine.clear_now("shop", true, None).await.unwrap();
        assert_eq!(forced.outcome, ClearOutcome::Refused, "{forced:?}");
        assert!(forced.reason.contains("clock_behind"), "{forced:?}");
        assert_eq!(h.ledger().len(), 1, "nothing booked into November");
        let menu = h
            .shop()
            .apis
            .into_iter()
            .find(|a| a.api == MENU_GET)
            .unwrap();
        assert_eq!(
            menu.local, 42,
            "today's counts are not zeroed by a day rolling back"
        );
        // Caught up: clears again.
        h.clock.set(parse("2026-12-01T00:50:00+08:00").unwrap());
        h.tick().await;
        assert_eq!(h.sim.clears_charged(APPID), 1 + 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn force_does_not_bypass_error() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        h.fault(Endpoint::ClearQuota, FaultKind::Errcode(40164), 1);
        h.blocked(USER_GET).await;
        assert!(h.shop().error.is_some());
        let forced = h.engine.clear_now("shop", true, None).await.unwrap();
        assert_eq!(forced.outcome, ClearOutcome::Refused, "{forced:?}");
        assert_eq!(h.requests_to("/cgi-bin/clear_quota").len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_and_re_adding_an_account_mid_clear_starts_no_second_clear() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        h.fault(
            Endpoint::ClearQuota,
            FaultKind::Delay(Duration::from_millis(700)),
            10,
        );
        h.engine
            .report(&[Report {
                target: Target::Account("shop".into()),
                api: USER_GET.into(),
                what: Reported::Errcode(45009),
            }])
            .unwrap();
        let wait = h.engine.clear_in_flight(APPID).expect("a clear in flight");
        // Two reloads: without the account, then with it again.
        let mut without = h.config.clone();
        without.accounts.clear();
        h.engine.apply_config(without).unwrap();
        h.engine.apply_config(h.config.clone()).unwrap();
        h.blocked(USER_GET).await;
        h.tick().await;
        assert_eq!(wait.outcome().await.outcome, ClearOutcome::Cleared);
        h.engine.idle().await;
        assert_eq!(h.requests_to("/cgi-bin/clear_quota").len(), 1);
        assert_eq!(h.ledger().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clear_in_flight_can_be_awaited_by_appid() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        h.sim.set_usage(APPID, USER_GET, 500);
        let wait = h
            .engine
            .report_blocked(APPID, USER_GET)
            .unwrap()
            .expect("a clear was started");
        let in_flight = h.engine.clear_in_flight(APPID).expect("in flight");
        assert!(wait.cleared().await);
        assert_eq!(in_flight.outcome().await.outcome, ClearOutcome::Cleared);
        assert_eq!(h.sim.api_clears_charged(APPID), 1);
        h.engine.idle().await;
        assert!(
            h.engine.clear_in_flight(APPID).is_none(),
            "nothing under way now"
        );
        let _ = &h.dir;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_keep_a_bounded_label_set_and_show_both_budgets() {
    limited(async {
        let h = Harness::new(EAGER, "0s", |_| {}).await;
        let items: Vec<Report> = (0..300)
            .map(|i| Report {
                target: Target::Account("shop".into()),
                api: format!("/cgi-bin/made/up{i}"),
                what: Reported::Calls(1),
            })
            .collect();
        h.engine.report(&items).unwrap();
        h.sim.set_usage(common::APPID, USER_GET, 500);
        h.blocked(USER_GET).await;
        let text = h.engine.metrics().render(&h.engine.status());
        let series = text
            .lines()
            .filter(|l| l.starts_with("wxquotad_api_used_calls{"))
            .count();
        assert!(
            (1..=wxquotad::metrics::MAX_API_SERIES).contains(&series),
            "{series} series"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("wxquotad_api_used_calls{") && l.contains(USER_GET)),
            "the blocked path comes first"
        );
        assert!(
            text.contains("wxquotad_api_clears_left{account=\"shop\"} 49"),
            "{text}"
        );
        assert!(
            text.contains("wxquotad_api_clear_attempts_total{account=\"shop\",outcome=\"ok\"} 1"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_prune_keeps_a_month_of_counts_and_drops_older_ones() {
    limited(async {
        let h = Harness::new(EAGER, "0s", no_api_clears).await;
        let menu = "/cgi-bin/menu/get";
        let stored = |day: chrono::NaiveDate| {
            h.engine
                .store()
                .load_usage(day)
                .unwrap()
                .into_iter()
                .find(|r| r.api == menu)
                .map(|r| r.calls)
        };
        let first_day = wxquotad::time::day_of(h.clock.now());
        h.report(menu, Reported::Calls(7)).await;
        h.tick().await;
        assert_eq!(stored(first_day), Some(7), "flushed on its day");
        // The next day's first tick prunes: yesterday's counts stay (history, replay).
        h.advance(24 * 3600);
        h.tick().await;
        assert_eq!(stored(first_day), Some(7), "yesterday is kept");
        // 36 days on, the first day is past the kept window and is dropped.
        for _ in 0..35 {
            h.advance(24 * 3600);
            h.tick().await;
        }
        assert_eq!(stored(first_day), None, "older than the kept window");
    })
    .await;
}
