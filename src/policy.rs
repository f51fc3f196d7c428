//! Pure decisions (SPEC §5): is an account due for a clear, and may it be cleared now.
//! No I/O, no clock: the caller passes a snapshot of the account and `now`.

use std::time::Duration;

use crate::config::Policy;
use crate::time::{next_reset, Timestamp};

/// One quota's usage today, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaView<'a> {
    /// The path naming the quota.
    pub api: &'a str,
    /// The larger of the local count and WeChat's polled count.
    pub used: u64,
    /// Daily limit; `None` never triggers a threshold clear.
    pub limit: Option<u64>,
    /// Reported blocked (45009) or polled `remain` 0 since the last clear.
    pub blocked: bool,
    /// Whether this quota may trigger a clear (the watch list).
    pub watched: bool,
}

/// The account's clear history as far as the gates need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClearHistory {
    /// Attempts that count against this month's budget (succeeded, or outcome unknown).
    pub spent_month: u32,
    /// Of those, how many today (UTC+8).
    pub spent_today: u32,
    /// When the last spent attempt started.
    pub last_spent_at: Option<Timestamp>,
    /// WeChat answered 48006 this month: no clears left whatever our count says
    /// (clears made by hand count too and cannot be queried).
    pub month_exhausted: bool,
}

/// Everything the policy needs to know about one account.
#[derive(Debug, Clone)]
pub struct AccountView<'a> {
    pub policy: &'a Policy,
    pub quotas: &'a [QuotaView<'a>],
    pub history: ClearHistory,
    /// A clear of this account is already under way.
    pub in_flight: bool,
    /// The account is in `error` (a config-level WeChat error).
    pub in_error: bool,
    /// `[daemon] dry_run`.
    pub dry_run: bool,
}

impl AccountView<'_> {
    /// Clears left this month by our count (0 once WeChat said 48006).
    pub fn clears_left(&self) -> u32 {
        if self.history.month_exhausted {
            0
        } else {
            self.policy
                .monthly_clears
                .saturating_sub(self.history.spent_month)
        }
    }
}

/// Why an account is due (or why a clear was asked for).
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A watched quota was reported blocked (45009).
    Blocked { api: String },
    /// A watched quota reached `threshold × limit`.
    Threshold { api: String, used: u64, limit: u64 },
    /// Someone asked (API or CLI).
    Manual { force: bool, reason: Option<String> },
}

impl Trigger {
    /// Short kind for logs and the ledger: "45009", "threshold" or "manual".
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Blocked { .. } => "45009",
            Trigger::Threshold { .. } => "threshold",
            Trigger::Manual { force: true, .. } => "forced",
            Trigger::Manual { .. } => "manual",
        }
    }

    /// The API that triggered it, if any.
    pub fn api(&self) -> Option<&str> {
        match self {
            Trigger::Blocked { api } | Trigger::Threshold { api, .. } => Some(api),
            Trigger::Manual { .. } => None,
        }
    }

    pub fn is_forced(&self) -> bool {
        matches!(self, Trigger::Manual { force: true, .. })
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Blocked { api } => write!(f, "45009 {api}"),
            Trigger::Threshold { api, used, limit } => {
                let pct = (*used as f64 / *limit as f64 * 100.0).floor();
                write!(f, "threshold {api} {pct}%")
            }
            Trigger::Manual { force, reason } => {
                f.write_str(if *force { "forced" } else { "manual" })?;
                if let Some(r) = reason {
                    write!(f, ": {r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a due account is not cleared now.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// The account is in `error` until its config changes.
    InError,
    /// WeChat said 48006 this month.
    MonthExhausted,
    /// Our count says the monthly budget is spent.
    BudgetSpent { monthly: u32 },
    /// Only the reserve is left (kept for people).
    Reserve { left: u32, reserve: u32 },
    /// A clear of this account is already under way.
    InFlight,
    /// The last clear was less than `min_interval` ago.
    MinInterval { wait: Duration },
    /// `max_clears_per_day` reached today.
    DailyCap { max: u32 },
    /// Too close to the daily reset, which will clear the counters anyway.
    QuietWindow { until_reset: Duration },
    /// `dry_run`: would clear.
    DryRun,
}

impl Hold {
    /// Short name of the gate, for logs and de-duplication.
    pub fn kind(&self) -> &'static str {
        match self {
            Hold::InError => "in_error",
            Hold::MonthExhausted => "month_exhausted",
            Hold::BudgetSpent { .. } => "budget_spent",
            Hold::Reserve { .. } => "reserve",
            Hold::InFlight => "in_flight",
            Hold::MinInterval { .. } => "min_interval",
            Hold::DailyCap { .. } => "daily_cap",
            Hold::QuietWindow { .. } => "quiet_window",
            Hold::DryRun => "dry_run",
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::InError => f.write_str("account is in error until its config changes"),
            Hold::MonthExhausted => f.write_str("WeChat answered 48006: no clears left this month"),
            Hold::BudgetSpent { monthly } => {
                write!(f, "all {monthly} clears of this month are spent")
            }
            Hold::Reserve { left, reserve } => write!(
                f,
                "only {left} clears left and {reserve} are reserved for people"
            ),
            Hold::InFlight => f.write_str("a clear of this account is already in flight"),
            Hold::MinInterval { wait } => write!(
                f,
                "last clear too recent (min_interval): {}s to wait",
                wait.as_secs()
            ),
            Hold::DailyCap { max } => write!(f, "{max} clears today already (max_clears_per_day)"),
            Hold::QuietWindow { until_reset } => write!(
                f,
                "daily reset in {}s, inside quiet_before_reset",
                until_reset.as_secs()
            ),
            Hold::DryRun => f.write_str("dry_run: would clear"),
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do.
    NotDue,
    /// Clear now.
    Clear(Trigger),
    /// Due, but a gate says no.
    Hold(Trigger, Hold),
}

/// Why the account is due, if it is: a blocked watched quota first (when
/// `clear_on_45009`), else the watched quota with the highest share of its limit at or
/// past the threshold.
pub fn due(view: &AccountView<'_>) -> Option<Trigger> {
    let policy = view.policy;
    if policy.clear_on_45009 {
        if let Some(q) = view.quotas.iter().find(|q| q.watched && q.blocked) {
            return Some(Trigger::Blocked {
                api: q.api.to_string(),
            });
        }
    }
    view.quotas
        .iter()
        .filter(|q| q.watched)
        .filter_map(|q| {
            let limit = q.limit.filter(|l| *l > 0)?;
            let ratio = q.used as f64 / limit as f64;
            (ratio >= policy.threshold).then_some((ratio, q, limit))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, q, limit)| Trigger::Threshold {
            api: q.api.to_string(),
            used: q.used,
            limit,
        })
}

/// The automatic decision: due, and every gate of SPEC §5 open.
pub fn decide(view: &AccountView<'_>, now: Timestamp) -> Decision {
    match due(view) {
        None => Decision::NotDue,
        Some(trigger) => match gate(view, &trigger, now) {
            None => Decision::Clear(trigger),
            Some(hold) => Decision::Hold(trigger, hold),
        },
    }
}

/// A clear someone asked for. Without force the policy's gates apply (the account need
/// not be due); force skips the reserve, `min_interval` and the quiet window, never the
/// monthly budget, 48006, a clear in flight, or dry run.
pub fn decide_manual(
    view: &AccountView<'_>,
    force: bool,
    reason: Option<String>,
    now: Timestamp,
) -> Decision {
    let trigger = Trigger::Manual { force, reason };
    match gate(view, &trigger, now) {
        None => Decision::Clear(trigger),
        Some(hold) => Decision::Hold(trigger, hold),
    }
}

/// The first closed gate for `trigger`, or `None` when it may clear now.
fn gate(view: &AccountView<'_>, trigger: &Trigger, now: Timestamp) -> Option<Hold> {
    let policy = view.policy;
    let forced = trigger.is_forced();
    let left = view.clears_left();
    if view.in_error && !forced {
        return Some(Hold::InError);
    }
    if view.history.month_exhausted {
        return Some(Hold::MonthExhausted);
    }
    if left == 0 {
        return Some(Hold::BudgetSpent {
            monthly: policy.monthly_clears,
        });
    }
    if !forced && left <= policy.reserve {
        return Some(Hold::Reserve {
            left,
            reserve: policy.reserve,
        });
    }
    if view.in_flight {
        return Some(Hold::InFlight);
    }
    if !forced {
        if let Some(last) = view.history.last_spent_at {
            let since = (now - last).to_std().unwrap_or(Duration::ZERO);
            if since < policy.min_interval {
                return Some(Hold::MinInterval {
                    wait: policy.min_interval - since,
                });
            }
        }
    }
    if view.history.spent_today >= policy.max_clears_per_day {
        return Some(Hold::DailyCap {
            max: policy.max_clears_per_day,
        });
    }
    if !forced {
        let until_reset = (next_reset(now) - now).to_std().unwrap_or(Duration::ZERO);
        if until_reset <= policy.quiet_before_reset {
            return Some(Hold::QuietWindow { until_reset });
        }
    }
    if view.dry_run {
        return Some(Hold::DryRun);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse;

    const NOON: &str = "2026-11-22T12:00:00+08:00";

    fn quota(
        api: &'static str,
        used: u64,
        limit: Option<u64>,
        blocked: bool,
    ) -> QuotaView<'static> {
        QuotaView {
            api,
            used,
            limit,
            blocked,
            watched: true,
        }
    }

    /// One row of the gate table: a change to a healthy, due account and what follows.
    struct Case {
        name: &'static str,
        quotas: Vec<QuotaView<'static>>,
        policy: fn(&mut Policy),
        history: fn(&mut ClearHistory),
        in_flight: bool,
        in_error: bool,
        dry_run: bool,
        now: &'static str,
        expect: fn(&Decision) -> bool,
    }

    fn base() -> Case {
        Case {
            name: "",
            quotas: vec![quota("/cgi-bin/user/get", 455, Some(500), false)],
            policy: |_| {},
            history: |_| {},
            in_flight: false,
            in_error: false,
            dry_run: false,
            now: NOON,
            expect: |d| matches!(d, Decision::Clear(Trigger::Threshold { .. })),
        }
    }

    fn run(case: &Case) -> Decision {
        let mut policy = Policy::default();
        (case.policy)(&mut policy);
        let mut history = ClearHistory::default();
        (case.history)(&mut history);
        let view = AccountView {
            policy: &policy,
            quotas: &case.quotas,
            history,
            in_flight: case.in_flight,
            in_error: case.in_error,
            dry_run: case.dry_run,
        };
        decide(&view, parse(case.now).unwrap())
    }

    #[test]
    fn every_gate() {
        let cases = vec![
            Case {
                name: "threshold reached clears",
                ..base()
            },
            Case {
                name: "below threshold is not due",
                quotas: vec![quota("/cgi-bin/user/get", 449, Some(500), false)],
                expect: |d| *d == Decision::NotDue,
                ..base()
            },
            Case {
                name: "exactly at threshold clears",
                quotas: vec![quota("/cgi-bin/user/get", 450, Some(500), false)],
                ..base()
            },
            Case {
                name: "unwatched quota never triggers",
                quotas: vec![QuotaView {
                    watched: false,
                    ..quota("/cgi-bin/user/get", 500, Some(500), true)
                }],
                expect: |d| *d == Decision::NotDue,
                ..base()
            },
            Case {
                name: "no limit never triggers a threshold clear",
                quotas: vec![quota("/sns/userinfo", 1_000_000, None, false)],
                expect: |d| *d == Decision::NotDue,
                ..base()
            },
            Case {
                name: "45009 clears below the threshold",
                quotas: vec![quota("/cgi-bin/user/get", 10, Some(500), true)],
                expect: |d| matches!(d, Decision::Clear(Trigger::Blocked { .. })),
                ..base()
            },
            Case {
                name: "45009 ignored when clear_on_45009 is off",
                quotas: vec![quota("/cgi-bin/user/get", 10, Some(500), true)],
                policy: |p| p.clear_on_45009 = false,
                expect: |d| *d == Decision::NotDue,
                ..base()
            },
            Case {
                name: "reserve held",
                history: |h| h.spent_month = 8,
                expect: |d| {
                    matches!(
                        d,
                        Decision::Hold(
                            _,
                            Hold::Reserve {
                                left: 2,
                                reserve: 2
                            }
                        )
                    )
                },
                ..base()
            },
            Case {
                name: "one above the reserve still clears",
                history: |h| h.spent_month = 7,
                ..base()
            },
            Case {
                name: "budget spent with no reserve",
                policy: |p| p.reserve = 0,
                history: |h| h.spent_month = 10,
                expect: |d| matches!(d, Decision::Hold(_, Hold::BudgetSpent { monthly: 10 })),
                ..base()
            },
            Case {
                name: "48006 seen this month",
                policy: |p| p.reserve = 0,
                history: |h| {
                    h.spent_month = 3;
                    h.month_exhausted = true
                },
                expect: |d| matches!(d, Decision::Hold(_, Hold::MonthExhausted)),
                ..base()
            },
            Case {
                name: "min_interval not yet passed",
                history: |h| {
                    h.spent_month = 1;
                    h.spent_today = 1;
                    h.last_spent_at = parse("2026-11-22T11:55:00+08:00")
                },
                expect: |d| {
                    *d == Decision::Hold(
                        Trigger::Threshold {
                            api: "/cgi-bin/user/get".into(),
                            used: 455,
                            limit: 500,
                        },
                        Hold::MinInterval {
                            wait: Duration::from_secs(300),
                        },
                    )
                },
                ..base()
            },
            Case {
                name: "min_interval passed",
                history: |h| {
                    h.spent_month = 1;
                    h.spent_today = 1;
                    h.last_spent_at = parse("2026-11-22T11:50:00+08:00")
                },
                ..base()
            },
            Case {
                name: "daily cap",
                history: |h| {
                    h.spent_month = 3;
                    h.spent_today = 3;
                    h.last_spent_at = parse("2026-11-22T09:00:00+08:00")
                },
                expect: |d| matches!(d, Decision::Hold(_, Hold::DailyCap { max: 3 })),
                ..base()
            },
            Case {
                name: "quiet window before the UTC+8 reset",
                now: "2026-11-22T23:40:00+08:00",
                expect: |d| matches!(d, Decision::Hold(_, Hold::QuietWindow { .. })),
                ..base()
            },
            Case {
                name: "just outside the quiet window",
                now: "2026-11-22T23:29:00+08:00",
                ..base()
            },
            Case {
                name: "in flight",
                in_flight: true,
                expect: |d| matches!(d, Decision::Hold(_, Hold::InFlight)),
                ..base()
            },
            Case {
                name: "error state",
                in_error: true,
                expect: |d| matches!(d, Decision::Hold(_, Hold::InError)),
                ..base()
            },
            Case {
                name: "dry run",
                dry_run: true,
                expect: |d| matches!(d, Decision::Hold(_, Hold::DryRun)),
                ..base()
            },
            Case {
                name: "highest ratio wins among several",
                quotas: vec![
                    quota("/cgi-bin/menu/get", 9_500, Some(10_000), false),
                    quota("/cgi-bin/user/get", 499, Some(500), false),
                ],
                expect: |d| matches!(d, Decision::Clear(Trigger::Threshold { api, .. }) if api == "/cgi-bin/user/get"),
                ..base()
            },
        ];
        for case in &cases {
            let d = run(case);
            assert!((case.expect)(&d), "{}: got {d:?}", case.name);
        }
    }

    #[test]
    fn forty_five_011_never_reaches_the_policy_as_blocked() {
        // 45011 (per-minute limit) reports are not marked blocked by the engine; an
        // account with nothing blocked and low usage is simply not due.
        let policy = Policy::default();
        let quotas = vec![quota("/cgi-bin/user/get", 1, Some(500), false)];
        let view = AccountView {
            policy: &policy,
            quotas: &quotas,
            history: ClearHistory::default(),
            in_flight: false,
            in_error: false,
            dry_run: false,
        };
        assert_eq!(decide(&view, parse(NOON).unwrap()), Decision::NotDue);
    }

    #[test]
    fn force_skips_reserve_interval_and_quiet_window_but_never_the_budget() {
        let policy = Policy::default();
        let quotas = vec![];
        let now = parse("2026-11-22T23:50:00+08:00").unwrap();
        let mut view = AccountView {
            policy: &policy,
            quotas: &quotas,
            history: ClearHistory {
                spent_month: 9,
                spent_today: 1,
                last_spent_at: parse("2026-11-22T23:49:00+08:00"),
                month_exhausted: false,
            },
            in_flight: false,
            in_error: false,
            dry_run: false,
        };
        assert!(matches!(
            decide_manual(&view, true, None, now),
            Decision::Clear(Trigger::Manual { force: true, .. })
        ));
        assert!(matches!(
            decide_manual(&view, false, None, now),
            Decision::Hold(_, Hold::Reserve { .. })
        ));
        view.history.spent_month = 10;
        assert!(matches!(
            decide_manual(&view, true, None, now),
            Decision::Hold(_, Hold::BudgetSpent { .. })
        ));
        view.history.spent_month = 1;
        view.history.month_exhausted = true;
        assert!(matches!(
            decide_manual(&view, true, None, now),
            Decision::Hold(_, Hold::MonthExhausted)
        ));
        view.history.month_exhausted = false;
        view.in_flight = true;
        assert!(matches!(
            decide_manual(&view, true, None, now),
            Decision::Hold(_, Hold::InFlight)
        ));
    }

    #[test]
    fn trigger_text_matches_the_status_example() {
        let t = Trigger::Threshold {
            api: "/cgi-bin/user/get".into(),
            used: 455,
            limit: 500,
        };
        assert_eq!(t.to_string(), "threshold /cgi-bin/user/get 91%");
    }
}
