//! Pure decisions (SPEC §5): is an account due for a clear, which clear (the whole
//! account or one interface), and may it be cleared now. No I/O, no clock: the caller
//! passes a snapshot of the account and `now`.

use std::time::Duration;

use crate::config::Policy;
pub use crate::store::ClearKind;
use crate::time::{next_reset, Timestamp};

/// Whether a clear can reset a quota (WECHAT.md, "Which 45009s a clear can fix").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resettable {
    Yes,
    /// WeChat's count did not drop after this account's last clear today.
    NotReset,
    /// The token APIs, which a clear is reported not to reset.
    TokenApi,
    /// Reported 45029: a lifetime quota, no daily reset.
    Lifetime,
}

/// The token APIs: never a trigger, a clear is reported not to reset them.
pub const TOKEN_APIS: &[&str] = &[
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
];

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
    pub resettable: Resettable,
    /// WeChat's own counter, read after the 45009 was reported, showed room
    /// (`remain` > 0): something other than the daily quota blocked the call.
    pub room_after_block: bool,
    /// Calls per minute over the last few minutes (reported calls; 0 when none came
    /// lately); `None` when no calls were reported for it today (polled counts only),
    /// which leaves the decision to the threshold and 45009 alone.
    pub rate: Option<f64>,
    /// When this quota's count started: the WeChat day's start or its last reset.
    pub since: Option<Timestamp>,
}

/// The account's clear history as far as the gates need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClearHistory {
    /// Account clears that count against this month's budget (succeeded, or outcome
    /// unknown).
    pub spent_month: u32,
    /// Spent clears of both kinds today (UTC+8).
    pub spent_today: u32,
    /// When the last spent clear of either kind started.
    pub last_spent_at: Option<Timestamp>,
    /// WeChat answered 48006 to an account clear this month: none left whatever our
    /// count says (clears made by hand count too and cannot be queried).
    pub month_exhausted: bool,
    /// Per-interface clears spent this month.
    pub api_spent_month: u32,
    /// WeChat answered 48006 to a per-interface clear this month.
    pub api_month_exhausted: bool,
    /// Paths WeChat refused to reset one by one this month.
    pub api_refused: Vec<String>,
    /// The latest start of any attempt: a clock behind it was stepped back.
    pub latest_attempt_at: Option<Timestamp>,
}

/// Everything the policy needs to know about one account.
#[derive(Debug, Clone)]
pub struct AccountView<'a> {
    pub policy: &'a Policy,
    pub quotas: &'a [QuotaView<'a>],
    pub history: ClearHistory,
    /// A clear of this account (its appid) is already under way.
    pub in_flight: bool,
    /// The account is in `error` (a config-level WeChat error).
    pub in_error: bool,
    /// `[daemon] dry_run`.
    pub dry_run: bool,
    /// No automatic attempt before this (back-off after failed decisions).
    pub backoff_until: Option<Timestamp>,
}

impl AccountView<'_> {
    /// Account clears left this month by our count (0 once WeChat said 48006).
    pub fn clears_left(&self) -> u32 {
        if self.history.month_exhausted {
            0
        } else {
            self.policy
                .monthly_clears
                .saturating_sub(self.history.spent_month)
        }
    }

    /// Per-interface clears left this month by our count (0 once WeChat said 48006).
    pub fn api_clears_left(&self) -> u32 {
        if self.history.api_month_exhausted {
            0
        } else {
            self.policy
                .monthly_api_clears
                .saturating_sub(self.history.api_spent_month)
        }
    }

    /// (exhausted by WeChat, left, monthly, reserve) for one kind of clear.
    fn budget(&self, kind: ClearKind) -> (bool, u32, u32, u32) {
        let p = self.policy;
        match kind {
            ClearKind::Account => (
                self.history.month_exhausted,
                self.clears_left(),
                p.monthly_clears,
                p.reserve,
            ),
            ClearKind::Api => (
                self.history.api_month_exhausted,
                self.api_clears_left(),
                p.monthly_api_clears,
                p.api_reserve,
            ),
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

/// Which clear: the whole account (clear_quota) or one interface (clearApiQuota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Account,
    Api(String),
}

impl Plan {
    pub fn kind(&self) -> ClearKind {
        match self {
            Plan::Account => ClearKind::Account,
            Plan::Api(_) => ClearKind::Api,
        }
    }

    pub fn api(&self) -> Option<&str> {
        match self {
            Plan::Account => None,
            Plan::Api(p) => Some(p),
        }
    }
}

/// Why a due account is not cleared now.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// The account is in `error` until its config changes (force does not skip it).
    InError,
    /// The clock is behind the last recorded attempt (it was stepped back).
    ClockBehind { behind: Duration },
    /// WeChat said 48006 this month for this kind of clear.
    MonthExhausted { kind: ClearKind },
    /// Our count says the monthly budget of this kind is spent.
    BudgetSpent { kind: ClearKind, monthly: u32 },
    /// Only the reserve is left (kept for people).
    Reserve {
        kind: ClearKind,
        left: u32,
        reserve: u32,
    },
    /// A clear of this account is already under way.
    InFlight,
    /// A failed decision backs off (1 min doubling to 1 h).
    Backoff { wait: Duration },
    /// The last clear was less than `min_interval` ago.
    MinInterval { wait: Duration },
    /// `max_clears_per_day` reached today.
    DailyCap { max: u32 },
    /// Too close to the daily reset, which will clear the counters anyway.
    QuietWindow { until_reset: Duration },
    /// A reported 45009, but WeChat's counter shows room: not the daily quota.
    NotDaily,
    /// The path's count did not drop after today's last clear.
    NotReset,
    /// The token APIs are not reset by a clear.
    TokenApi,
    /// A lifetime quota (45029) has no daily reset.
    Lifetime,
    /// At the recent rate, the rest of the day fits in the room left: a clear now
    /// would save nothing.
    Fits { room: u64, rate: f64, minutes: u64 },
    /// At the recent rate the limit is still minutes away: the clear waits until just
    /// before it, so the room left is not thrown away.
    NotYet { room: u64, minutes: u64 },
    /// The clear would save fewer calls than the clears left are likely to save later
    /// this month (pacing).
    Pacing {
        value: u64,
        limit: u64,
        spendable: u32,
        days_after: u32,
    },
    /// `dry_run`: would clear.
    DryRun,
}

impl Hold {
    /// Short name of the gate, for logs and de-duplication.
    pub fn kind(&self) -> &'static str {
        match self {
            Hold::InError => "in_error",
            Hold::ClockBehind { .. } => "clock_behind",
            Hold::MonthExhausted { .. } => "month_exhausted",
            Hold::BudgetSpent { .. } => "budget_spent",
            Hold::Reserve { .. } => "reserve",
            Hold::InFlight => "in_flight",
            Hold::Backoff { .. } => "backoff",
            Hold::MinInterval { .. } => "min_interval",
            Hold::DailyCap { .. } => "daily_cap",
            Hold::QuietWindow { .. } => "quiet_window",
            Hold::NotDaily => "not_daily",
            Hold::NotReset => "not_reset",
            Hold::TokenApi => "token_api",
            Hold::Lifetime => "lifetime_quota",
            Hold::Fits { .. } => "fits",
            Hold::NotYet { .. } => "not_yet",
            Hold::Pacing { .. } => "pacing",
            Hold::DryRun => "dry_run",
        }
    }
}

/// "clears" or "per-interface clears", for messages.
fn clears_of(kind: ClearKind) -> &'static str {
    match kind {
        ClearKind::Account => "clears",
        ClearKind::Api => "per-interface clears",
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::InError => f.write_str("account is in error until its config changes"),
            Hold::ClockBehind { behind } => write!(
                f,
                "the clock is {}s behind the last recorded attempt (stepped back?): no automatic clear until it catches up",
                behind.as_secs()
            ),
            Hold::MonthExhausted { kind } => write!(
                f,
                "WeChat answered 48006: no {} left this month",
                clears_of(*kind)
            ),
            Hold::BudgetSpent { kind, monthly } => {
                write!(f, "all {monthly} {} of this month are spent", clears_of(*kind))
            }
            Hold::Reserve {
                kind,
                left,
                reserve,
            } => write!(
                f,
                "only {left} {} left and {reserve} are reserved for people",
                clears_of(*kind)
            ),
            Hold::InFlight => f.write_str("a clear of this account is already in flight"),
            Hold::Backoff { wait } => write!(
                f,
                "the last clear failed: backing off, {}s to wait",
                wait.as_secs()
            ),
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
            Hold::NotDaily => f.write_str(
                "WeChat's counter shows room (remain > 0): the 45009 is not the daily quota, a clear would be wasted",
            ),
            Hold::NotReset => f.write_str(
                "WeChat did not reset this interface at today's last clear: another clear would be wasted",
            ),
            Hold::TokenApi => f.write_str("a clear does not reset the token APIs"),
            Hold::Lifetime => f.write_str("a lifetime quota (45029) has no daily reset"),
            Hold::Fits {
                room,
                rate,
                minutes,
            } => write!(
                f,
                "at {rate:.1} calls/min the {minutes} min to the daily reset fit in the {room} calls of room left: a clear would save nothing"
            ),
            Hold::NotYet { room, minutes } => write!(
                f,
                "{room} calls of room left, about {minutes} min at the recent rate: clearing just before the limit, not now"
            ),
            Hold::Pacing {
                value,
                limit,
                spendable,
                days_after,
            } => write!(
                f,
                "a clear now would save about {value} calls (limit {limit}); with {spendable} clears to spend for {days_after} more days this month, it is kept for a day that needs it more"
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
    /// Clear now, this way.
    Clear(Trigger, Plan),
    /// Due, but a gate says no.
    Hold(Trigger, Hold),
}

/// Whether an account is due, and what a clear could fix.
#[derive(Debug, Clone, PartialEq)]
pub enum Due<'a> {
    No,
    /// Due; `fixable` are the due quotas a clear can reset (the trigger's first).
    Yes {
        trigger: Trigger,
        fixable: Vec<&'a str>,
    },
    /// Due only by quotas a clear cannot fix.
    Unfixable(Trigger, Hold),
}

/// Why the account is due, if it is: a blocked watched quota first (when
/// `clear_on_45009`), else the watched quota with the highest share of its limit at or
/// past the threshold. Quotas a clear cannot reset never make it due for a clear.
pub fn due<'a>(view: &AccountView<'a>) -> Due<'a> {
    let policy = view.policy;
    let mut blocked: Option<&QuotaView> = None;
    let mut best: Option<(f64, &QuotaView, u64)> = None;
    let mut fixable: Vec<&'a str> = Vec::new();
    let mut unfixable: Option<(Trigger, Hold)> = None;
    for q in view.quotas.iter().filter(|q| q.watched) {
        let by_block = policy.clear_on_45009 && q.blocked;
        let limit = q.limit.filter(|l| *l > 0);
        let ratio = limit.map(|l| q.used as f64 / l as f64);
        let by_threshold = ratio.is_some_and(|r| r >= policy.threshold);
        if !by_block && !by_threshold {
            continue;
        }
        let trigger = || match (by_block, limit) {
            (false, Some(limit)) => Trigger::Threshold {
                api: q.api.to_string(),
                used: q.used,
                limit,
            },
            _ => Trigger::Blocked {
                api: q.api.to_string(),
            },
        };
        let cannot = match q.resettable {
            Resettable::Yes => None,
            Resettable::NotReset => Some(Hold::NotReset),
            Resettable::TokenApi => Some(Hold::TokenApi),
            Resettable::Lifetime => Some(Hold::Lifetime),
        };
        // confirm_45009: room in WeChat's own counter means another limit blocked it.
        let by_block = by_block && !(policy.confirm_45009 && q.room_after_block);
        let cannot = cannot.or_else(|| (!by_block && !by_threshold).then_some(Hold::NotDaily));
        if let Some(hold) = cannot {
            unfixable.get_or_insert_with(|| (trigger(), hold));
            continue;
        }
        fixable.push(q.api);
        if by_block {
            blocked.get_or_insert(q);
        } else if let (Some(r), Some(l)) = (ratio, limit) {
            if best.is_none_or(|(b, _, _)| r > b) {
                best = Some((r, q, l));
            }
        }
    }
    let trigger = match (blocked, best) {
        (Some(q), _) => Trigger::Blocked {
            api: q.api.to_string(),
        },
        (None, Some((_, q, limit))) => Trigger::Threshold {
            api: q.api.to_string(),
            used: q.used,
            limit,
        },
        (None, None) => {
            return match unfixable {
                Some((t, h)) => Due::Unfixable(t, h),
                None => Due::No,
            }
        }
    };
    let first = trigger.api().unwrap_or_default();
    if let Some(i) = fixable.iter().position(|p| *p == first) {
        let p = fixable.remove(i);
        fixable.insert(0, p);
    }
    Due::Yes { trigger, fixable }
}

/// Which clear fixes `fixable`: one interface by clearApiQuota when it is the only one,
/// `api_clears` is on, WeChat has not refused that path, and the per-interface budget
/// has more left than its reserve; else the whole account.
pub fn plan(view: &AccountView<'_>, fixable: &[&str]) -> Plan {
    let p = view.policy;
    match fixable {
        [one]
            if p.api_clears
                && !view.history.api_month_exhausted
                && !view.history.api_refused.iter().any(|r| r == one)
                && view.api_clears_left() > p.api_reserve =>
        {
            Plan::Api(one.to_string())
        }
        _ => Plan::Account,
    }
}

/// The automatic decision: due, and every gate of SPEC §5 open.
pub fn decide(view: &AccountView<'_>, now: Timestamp) -> Decision {
    match due(view) {
        Due::No => Decision::NotDue,
        Due::Unfixable(trigger, hold) => Decision::Hold(trigger, hold),
        Due::Yes { trigger, fixable } => {
            let plan = plan(view, &fixable);
            match gate(view, &plan, false, now).or_else(|| worth(view, &trigger, now)) {
                None => Decision::Clear(trigger, plan),
                Some(hold) => Decision::Hold(trigger, hold),
            }
        }
    }
}

/// A clear made when the room left would last this many more minutes at the recent
/// rate is "just before the limit": reports arrive every few seconds to a minute.
pub const LEAD_MINUTES: f64 = 2.0;
/// A clear saving at least this share of the limit is worth a full clear: spent
/// whenever the gates allow.
pub const FULL_VALUE: f64 = 0.9;
/// A clear saving at least this share of the limit is spent while the clears left
/// cover one for every remaining day of the month.
pub const HALF_VALUE: f64 = 0.5;

/// Whether a due clear is worth making now (issue 12): the timing and pacing half of
/// the policy, on top of the gates. `None`: clear. Needs the trigger quota's recent
/// rate; without it (polled counts only, or a clear asked for) the threshold and 45009
/// decide alone, as before.
///
/// - A threshold trigger waits while the rest of the day fits in the room left
///   (`Fits`), and while the room would last more than [`LEAD_MINUTES`] at the recent
///   rate (`NotYet`): a clear at 90 % throws away the last 10 % of the day's quota.
/// - The value of a clear is the calls it saves until the daily reset: with `D` the
///   calls forecast until then (the lower of the recent rate and the rate since the
///   count started, times the minutes left) and `room` what is left now,
///   `max(0, D − room) − max(0, D − limit)`.
/// - Pacing: a clear worth [`FULL_VALUE`] of the limit is always made; one worth
///   [`HALF_VALUE`] while the clears left (both kinds, above their reserves) exceed
///   the days left in the month; a smaller one only while they exceed
///   `max_clears_per_day` for every day left (the budget cannot run short).
pub fn worth(view: &AccountView<'_>, trigger: &Trigger, now: Timestamp) -> Option<Hold> {
    let api = trigger.api()?;
    let q = view.quotas.iter().find(|q| q.api == api)?;
    let limit = q.limit.filter(|l| *l > 0)?;
    let recent = q.rate?;
    let minutes_left = (next_reset(now) - now).num_seconds().max(0) as f64 / 60.0;
    let room = if q.blocked {
        0
    } else {
        limit.saturating_sub(q.used)
    };
    if matches!(trigger, Trigger::Threshold { .. }) {
        if recent * minutes_left <= room as f64 {
            return Some(Hold::Fits {
                room,
                rate: recent,
                minutes: minutes_left as u64,
            });
        }
        if room as f64 > recent * LEAD_MINUTES {
            return Some(Hold::NotYet {
                room,
                minutes: (room as f64 / recent) as u64,
            });
        }
    }
    // The rate since the count started smooths a burst out of the value forecast;
    // while blocked, calls are refused (not counted), so it is the only one to go by.
    let average = q
        .since
        .map(|s| (now - s).num_seconds().max(60) as f64 / 60.0)
        .map_or(recent, |m| q.used as f64 / m);
    let rate = if q.blocked {
        average
    } else {
        recent.min(average)
    };
    let demand = rate * minutes_left;
    let l = limit as f64;
    let value = (demand - room as f64).max(0.0) - (demand - l).max(0.0);
    if value >= FULL_VALUE * l {
        return None;
    }
    let p = view.policy;
    let spendable = view.clears_left().saturating_sub(p.reserve)
        + if p.api_clears && !view.history.api_month_exhausted {
            view.api_clears_left().saturating_sub(p.api_reserve)
        } else {
            0
        };
    let days_after = days_left_in_month(now);
    if value >= HALF_VALUE * l && spendable > days_after {
        return None;
    }
    if spendable > p.max_clears_per_day.saturating_mul(days_after) {
        return None;
    }
    Some(Hold::Pacing {
        value: value as u64,
        limit,
        spendable,
        days_after,
    })
}

/// WeChat days after `now`'s in its month.
fn days_left_in_month(now: Timestamp) -> u32 {
    let today = crate::time::day_of(now);
    let next_month = crate::time::day_of(crate::time::start_of_month(
        crate::time::start_of_month(now) + chrono::Duration::days(32),
    ));
    (next_month - today).num_days().saturating_sub(1).max(0) as u32
}

/// A clear someone asked for: the whole account, or only `api` with a per-interface
/// clear. Without force the policy's gates apply (the account need not be due); force
/// skips the reserve, `min_interval`, the back-off, the quiet window and a clock behind,
/// never the monthly budget of that kind, 48006, `error`, a clear in flight, or dry run.
pub fn decide_manual(
    view: &AccountView<'_>,
    force: bool,
    reason: Option<String>,
    api: Option<&str>,
    now: Timestamp,
) -> Decision {
    let trigger = Trigger::Manual { force, reason };
    let plan = match api {
        Some(a) => Plan::Api(a.to_string()),
        None => Plan::Account,
    };
    match gate(view, &plan, force, now) {
        None => Decision::Clear(trigger, plan),
        Some(hold) => Decision::Hold(trigger, hold),
    }
}

/// The first closed gate for a clear by `plan`, or `None` when it may clear now.
pub fn gate(view: &AccountView<'_>, plan: &Plan, forced: bool, now: Timestamp) -> Option<Hold> {
    let policy = view.policy;
    if view.in_error {
        return Some(Hold::InError);
    }
    if let Some(latest) = view.history.latest_attempt_at {
        if !forced && latest > now {
            return Some(Hold::ClockBehind {
                behind: (latest - now).to_std().unwrap_or_default(),
            });
        }
    }
    let kind = plan.kind();
    let (exhausted, left, monthly, reserve) = view.budget(kind);
    if exhausted {
        return Some(Hold::MonthExhausted { kind });
    }
    if left == 0 {
        return Some(Hold::BudgetSpent { kind, monthly });
    }
    if !forced && left <= reserve {
        return Some(Hold::Reserve {
            kind,
            left,
            reserve,
        });
    }
    if view.in_flight {
        return Some(Hold::InFlight);
    }
    if !forced {
        if let Some(until) = view.backoff_until.filter(|u| *u > now) {
            return Some(Hold::Backoff {
                wait: (until - now).to_std().unwrap_or_default(),
            });
        }
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

/// Back-off after `failures` failed decisions in a row: 1 min, doubling, at most 1 h.
pub fn backoff(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);
    if failures == 0 {
        return Duration::ZERO;
    }
    FIRST.saturating_mul(1 << (failures - 1).min(6)).min(MAX)
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
            resettable: Resettable::Yes,
            room_after_block: false,
            rate: None,
            since: None,
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
            expect: |d| matches!(d, Decision::Clear(Trigger::Threshold { .. }, _)),
        }
    }

    fn run(case: &Case) -> Decision {
        // The table checks the gates of account clears; per-interface ones below.
        let mut policy = Policy {
            api_clears: false,
            ..Policy::default()
        };
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
            backoff_until: None,
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
                expect: |d| matches!(d, Decision::Clear(Trigger::Blocked { .. }, _)),
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
                                reserve: 2,
                                ..
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
                expect: |d| matches!(d, Decision::Hold(_, Hold::BudgetSpent { monthly: 10, .. })),
                ..base()
            },
            Case {
                name: "48006 seen this month",
                policy: |p| p.reserve = 0,
                history: |h| {
                    h.spent_month = 3;
                    h.month_exhausted = true
                },
                expect: |d| matches!(d, Decision::Hold(_, Hold::MonthExhausted { .. })),
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
                expect: |d| matches!(d, Decision::Clear(Trigger::Threshold { api, .. }, _) if api == "/cgi-bin/user/get"),
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
            backoff_until: None,
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
                ..ClearHistory::default()
            },
            in_flight: false,
            in_error: false,
            dry_run: false,
            backoff_until: None,
        };
        assert!(matches!(
            decide_manual(&view, true, None, None, now),
            Decision::Clear(Trigger::Manual { force: true, .. }, _)
        ));
        assert!(matches!(
            decide_manual(&view, false, None, None, now),
            Decision::Hold(_, Hold::Reserve { .. })
        ));
        view.history.spent_month = 10;
        assert!(matches!(
            decide_manual(&view, true, None, None, now),
            Decision::Hold(_, Hold::BudgetSpent { .. })
        ));
        view.history.spent_month = 1;
        view.history.month_exhausted = true;
        assert!(matches!(
            decide_manual(&view, true, None, None, now),
            Decision::Hold(_, Hold::MonthExhausted { .. })
        ));
        view.history.month_exhausted = false;
        view.in_flight = true;
        assert!(matches!(
            decide_manual(&view, true, None, None, now),
            Decision::Hold(_, Hold::InFlight)
        ));
        // Force never bypasses `error` (SPEC §4).
        view.in_flight = false;
        view.in_error = true;
        assert!(matches!(
            decide_manual(&view, true, None, None, now),
            Decision::Hold(_, Hold::InError)
        ));
        // A forced per-interface clear spends that budget and is held by its 48006 only.
        view.in_error = false;
        view.history.api_month_exhausted = true;
        assert!(matches!(
            decide_manual(&view, true, None, Some("/cgi-bin/user/get"), now),
            Decision::Hold(
                _,
                Hold::MonthExhausted {
                    kind: ClearKind::Api
                }
            )
        ));
    }

    fn view_of<'a>(
        policy: &'a Policy,
        quotas: &'a [QuotaView<'a>],
        history: ClearHistory,
    ) -> AccountView<'a> {
        AccountView {
            policy,
            quotas,
            history,
            in_flight: false,
            in_error: false,
            dry_run: false,
            backoff_until: None,
        }
    }

    #[test]
    fn one_due_interface_is_cleared_alone_several_clear_the_account() {
        let policy = Policy::default();
        let now = parse(NOON).unwrap();
        let one = [quota("/cgi-bin/user/get", 455, Some(500), false)];
        let d = decide(&view_of(&policy, &one, ClearHistory::default()), now);
        assert!(
            matches!(&d, Decision::Clear(_, Plan::Api(p)) if p == "/cgi-bin/user/get"),
            "{d:?}"
        );
        let two = [
            quota("/cgi-bin/user/get", 455, Some(500), false),
            quota("/cgi-bin/menu/get", 10, Some(10_000), true),
        ];
        let d = decide(&view_of(&policy, &two, ClearHistory::default()), now);
        assert!(
            matches!(&d, Decision::Clear(Trigger::Blocked { api }, Plan::Account) if api == "/cgi-bin/menu/get"),
            "{d:?}"
        );
        // A path WeChat refused, api_clears off, or the per-interface budget down to its
        // reserve: the whole account.
        let refused = ClearHistory {
            api_refused: vec!["/cgi-bin/user/get".into()],
            ..ClearHistory::default()
        };
        assert!(matches!(
            decide(&view_of(&policy, &one, refused), now),
            Decision::Clear(_, Plan::Account)
        ));
        let off = Policy {
            api_clears: false,
            ..Policy::default()
        };
        assert!(matches!(
            decide(&view_of(&off, &one, ClearHistory::default()), now),
            Decision::Clear(_, Plan::Account)
        ));
        let reserve_only = ClearHistory {
            api_spent_month: 45,
            ..ClearHistory::default()
        };
        assert!(matches!(
            decide(&view_of(&policy, &one, reserve_only), now),
            Decision::Clear(_, Plan::Account)
        ));
    }

    #[test]
    fn clears_that_cannot_help_are_never_decided() {
        let policy = Policy::default();
        let now = parse(NOON).unwrap();
        let with = |r: Resettable, room: bool| QuotaView {
            resettable: r,
            room_after_block: room,
            ..quota("/cgi-bin/user/get", 10, Some(500), true)
        };
        for (q, gate) in [
            (with(Resettable::NotReset, false), "not_reset"),
            (with(Resettable::TokenApi, false), "token_api"),
            (with(Resettable::Lifetime, false), "lifetime_quota"),
            (with(Resettable::Yes, true), "not_daily"),
        ] {
            let quotas = [q];
            let d = decide(&view_of(&policy, &quotas, ClearHistory::default()), now);
            assert!(
                matches!(&d, Decision::Hold(_, h) if h.kind() == gate),
                "{gate}: {d:?}"
            );
        }
        // Without confirm_45009 a reported 45009 is trusted.
        let trusting = Policy {
            confirm_45009: false,
            ..Policy::default()
        };
        let quotas = [with(Resettable::Yes, true)];
        assert!(matches!(
            decide(&view_of(&trusting, &quotas, ClearHistory::default()), now),
            Decision::Clear(..)
        ));
        // An unfixable path does not stop another due one from being cleared alone.
        let quotas = [
            with(Resettable::NotReset, false),
            quota("/cgi-bin/menu/get", 9_500, Some(10_000), false),
        ];
        assert!(matches!(
            decide(&view_of(&policy, &quotas, ClearHistory::default()), now),
            Decision::Clear(_, Plan::Api(p)) if p == "/cgi-bin/menu/get"
        ));
    }

    #[test]
    fn backoff_and_a_clock_behind_hold_automatic_clears() {
        let policy = Policy::default();
        let now = parse(NOON).unwrap();
        let quotas = [quota("/cgi-bin/user/get", 455, Some(500), false)];
        let mut view = view_of(&policy, &quotas, ClearHistory::default());
        view.backoff_until = Some(now + chrono::Duration::seconds(60));
        assert!(matches!(
            decide(&view, now),
            Decision::Hold(_, Hold::Backoff { wait }) if wait == Duration::from_secs(60)
        ));
        assert!(matches!(
            decide(&view, now + chrono::Duration::seconds(60)),
            Decision::Clear(..)
        ));
        view.backoff_until = None;
        view.history.latest_attempt_at = Some(now + chrono::Duration::seconds(5));
        assert!(matches!(
            decide(&view, now),
            Decision::Hold(_, Hold::ClockBehind { .. })
        ));
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(7), Duration::from_secs(3600));
        assert_eq!(backoff(40), Duration::from_secs(3600));
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

    /// user/get (500 a day) counted since 07:00, `used` now, `rate` calls a minute
    /// lately, at `now` (a UTC+8 time on 2026-11-02, 28 days before the month ends).
    fn forecast(
        used: u64,
        blocked: bool,
        rate: Option<f64>,
        now: &str,
        history: ClearHistory,
        policy: &Policy,
    ) -> Decision {
        let quotas = [QuotaView {
            rate,
            since: parse("2026-11-02T07:00:00+08:00"),
            ..quota("/cgi-bin/user/get", used, Some(500), blocked)
        }];
        decide(
            &view_of(policy, &quotas, history),
            parse(&format!("2026-11-02T{now}:00+08:00")).unwrap(),
        )
    }

    #[test]
    fn forecast_clears_just_before_the_limit_and_only_when_it_saves_calls() {
        let p = Policy::default();
        let h = ClearHistory::default;
        let held =
            |d: &Decision, gate: &str| matches!(d, Decision::Hold(_, hold) if hold.kind() == gate);
        // 455 of 500 at 14:00, 1 call a minute lately: 45 minutes of room, and the
        // 600 minutes to midnight need more. Not yet.
        let d = forecast(455, false, Some(1.0), "14:00", h(), &p);
        assert!(held(&d, "not_yet"), "{d:?}");
        // Room for one more minute at that rate: clear now (a full clear's worth).
        let d = forecast(499, false, Some(1.0), "14:00", h(), &p);
        assert!(
            matches!(d, Decision::Clear(Trigger::Threshold { .. }, _)),
            "{d:?}"
        );
        // A burst: 450 in the last minute. The limit is seconds away: clear now.
        let d = forecast(455, false, Some(450.0), "14:00", h(), &p);
        assert!(matches!(d, Decision::Clear(..)), "{d:?}");
        // Traffic stopped (0 a minute lately): the rest of the day fits.
        let d = forecast(455, false, Some(0.0), "14:00", h(), &p);
        assert!(held(&d, "fits"), "{d:?}");
        // At 22:00 and 0.2 calls a minute, 120 minutes need 24 calls: 45 left fit.
        let d = forecast(455, false, Some(0.2), "22:00", h(), &p);
        assert!(held(&d, "fits"), "{d:?}");
        // No rate known (polled counts only): the threshold decides, as before.
        let d = forecast(455, false, None, "14:00", h(), &p);
        assert!(matches!(d, Decision::Clear(..)), "{d:?}");
        // The reason says why, in numbers.
        let d = forecast(455, false, Some(1.0), "14:00", h(), &p);
        let Decision::Hold(_, hold) = d else {
            unreachable!()
        };
        assert_eq!(
            hold.to_string(),
            "45 calls of room left, about 45 min at the recent rate: clearing just before the limit, not now"
        );
    }

    #[test]
    fn pacing_keeps_clears_for_the_days_that_need_them() {
        let p = Policy::default();
        let held = |d: &Decision| matches!(d, Decision::Hold(_, Hold::Pacing { .. }));
        // Blocked at 21:00 after 500 calls since 07:00 (0.6 a minute): about 180 calls
        // to save before midnight, 36% of the limit.
        let low = |history: ClearHistory| forecast(500, true, Some(0.6), "21:00", history, &p);
        // 53 clears to spend (8 + 45 above the reserves) for 28 more days: fewer than
        // 3 a day (max_clears_per_day): the low-value clear waits.
        assert!(
            held(&low(ClearHistory::default())),
            "{:?}",
            low(ClearHistory::default())
        );
        // Plenty left for what remains of the month (e.g. late in it): spent.
        let d = forecast(
            500,
            true,
            Some(0.6),
            "21:00",
            ClearHistory::default(),
            &Policy {
                monthly_api_clears: 50,
                api_reserve: 0,
                max_clears_per_day: 1,
                ..Policy::default()
            },
        );
        assert!(matches!(d, Decision::Clear(..)), "{d:?}");
        // Blocked at 12:00 after 500 since 07:00 (1.67 a minute): 720 minutes would
        // need far more than a limit: a full clear's worth, always spent.
        let d = forecast(500, true, Some(1.6), "12:00", ClearHistory::default(), &p);
        assert!(
            matches!(d, Decision::Clear(Trigger::Blocked { .. }, _)),
            "{d:?}"
        );
        // Blocked at 17:00 (0.83 a minute since 07:00): about 350 calls to save, more
        // than half a limit: spent while one clear is left for every remaining day.
        let half = |history: ClearHistory| forecast(500, true, Some(1.0), "17:00", history, &p);
        assert!(matches!(half(ClearHistory::default()), Decision::Clear(..)));
        let few_left = ClearHistory {
            api_spent_month: 30,
            spent_month: 3,
            ..ClearHistory::default()
        };
        let d = half(few_left);
        assert!(held(&d), "{d:?}");
        let Decision::Hold(_, hold) = d else {
            unreachable!()
        };
        assert!(
            hold.to_string()
                .contains("with 20 clears to spend for 28 more days"),
            "{hold}"
        );
    }
}
