//! Attacks on the daemon from issue 9 (and `check`'s thoroughness from issue 13), each
//! performed against the real binary: what an outsider on loopback, a hostile neighbour
//! or a careless admin could do, and what the daemon does instead.

mod common;

use common::*;

/// Issue 13 item 2: two unknown keys and two wrongly typed values are four errors, and
/// `check` names each with its line.
#[test]
fn check_reports_every_unknown_key_and_type_error() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    setup.edit(
        "[poll]\n",
        "colour = \"red\"\nmax_clears_per_day = \"three\"\n[poll]\nintreval = \"5m\"\n",
    );
    setup.edit("preset = \"normal\"", "preset = \"normal\"\nkind = 7");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    for key in [
        "policy.colour",
        "policy.max_clears_per_day",
        "poll.intreval",
        "accounts[0].kind",
    ] {
        assert!(stderr.contains(key), "want {key} in:\n{stderr}");
    }
    assert!(stderr.contains(": 4 error(s)"), "{stderr}");
}

/// Issue 9 item 4: an absurd duration is refused by `check` (it used to pass, then make
/// SIGTERM panic), and WeChat's monthly budgets cannot be configured away (item 5).
#[test]
fn check_refuses_absurd_durations_and_budgets_beyond_wechats() {
    for (from, to, key) in [
        (
            "timeout = \"1s\"",
            "timeout = \"60000000000000d\"",
            "wechat.timeout",
        ),
        (
            "interval = \"0s\"",
            "interval = \"60000000000000d\"",
            "poll.interval",
        ),
        (
            "[policy]\n",
            "[policy]\nmonthly_clears = 50\n",
            "policy.monthly_clears",
        ),
        (
            "[policy]\n",
            "[policy]\nmonthly_api_clears = 100\n",
            "policy.monthly_api_clears",
        ),
    ] {
        let setup = Setup::new("http://127.0.0.1:9", "", "");
        setup.edit(from, to);
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .arg("check")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{to}: {stderr}");
        assert!(stderr.contains(key), "{to}: want {key} in {stderr}");
        assert!(stderr.contains(": 1 error(s)"), "{to}: {stderr}");
    }
}
