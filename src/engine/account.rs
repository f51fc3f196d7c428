//! One account's runtime state: today's counters, this month's attempts, flags; and the
//! views the policy and status are built from. Pure: time is passed in.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;

use crate::config::{Account, LimitSource};
use crate::policy::{AccountView, ClearHistory, ClearKind, QuotaView, Resettable, TOKEN_APIS};
use crate::store::{Attempt, AttemptOutcome, UsageRow};
use crate::time::{day_of, month_of, Timestamp};
use crate::wechat::TokenCache;

/// Distinct API paths one account may count per day. Reports naming more are refused,
/// so a client sending random paths cannot grow memory without bound.
pub const MAX_PATHS_PER_ACCOUNT: usize = 4096;

/// One path's count today.
#[derive(Debug, Clone, Default)]
pub struct PathCount {
    pub calls: u64,
    /// Reported 45009 since the last clear.
    pub blocked: bool,
    /// When the 45009 that set `blocked` was first reported (a getApiQuota read after
    /// it can show it was not the daily quota).
    pub blocked_at: Option<Timestamp>,
    /// Reported 45029 today: a lifetime quota, which no clear resets.
    pub lifetime: bool,
    /// Changed since the last flush.
    pub dirty: bool,
    /// Calls reported in each of the last [`RATE_WINDOW_MINUTES`] minutes: (minute
    /// since the Unix epoch, calls), oldest first. For the policy's forecast.
    pub recent: Vec<(i64, u64)>,
    /// When calls were first reported for it today (the day's traffic may start hours
    /// after midnight: rates are taken from here).
    pub first_call_at: Option<Timestamp>,
}

/// How far back the recent rate of calls looks, minutes.
pub const RATE_WINDOW_MINUTES: i64 = 10;

impl PathCount {
    /// Notes `calls` reported at `now` for the recent rate.
    pub fn note_recent(&mut self, now: Timestamp, calls: u64) {
        self.first_call_at.get_or_insert(now);
        let minute = now.timestamp().div_euclid(60);
        match self.recent.last_mut() {
            Some((m, c)) if *m == minute => *c = c.saturating_add(calls),
            _ => self.recent.push((minute, calls)),
        }
        self.recent
            .retain(|(m, _)| *m > minute - RATE_WINDOW_MINUTES);
    }
}

/// WeChat's own count for one path (getApiQuota), valid on the day it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// When it was read.
    pub at: Timestamp,
    pub day: NaiveDate,
    pub used: u64,
    pub daily_limit: u64,
    pub remain: u64,
}

/// Why an account is in `error`.
#[derive(Debug, Clone)]
pub struct AccountError {
    pub errcode: Option<i64>,
    pub message: String,
    pub at: Timestamp,
}

pub struct AccountRuntime {
    pub cfg: Account,
    /// The WeChat day `usage` belongs to.
    pub day: NaiveDate,
    pub usage: HashMap<String, PathCount>,
    /// Attempts since the start of last month (enough for every gate), oldest first.
    pub attempts: Vec<Attempt>,
    pub error: Option<AccountError>,
    /// Failed decisions in a row (reset by a success or a config change).
    pub failures: u32,
    /// No automatic attempt before this (SPEC §5 back-off).
    pub backoff_until: Option<Timestamp>,
    /// The last decision ended with an unknown outcome that no getApiQuota read has
    /// explained yet: the next decision reads first.
    pub unconfirmed: bool,
    pub token: Arc<TokenCache>,
    /// The last hold logged (text and when), so a held account does not log on every report.
    pub last_hold: Option<(String, Timestamp)>,
    /// WeChat's counts by path (getApiQuota).
    pub polled: HashMap<String, Polled>,
    /// Paths WeChat will not report on (76021 unknown, 76022 no permission): errcode.
    pub poll_disabled: HashMap<String, i64>,
    /// Paths WeChat did not reset at a clear today (seen by the check after it); they
    /// never trigger again that day.
    pub not_reset: Vec<String>,
    /// getApiQuota requests made today (for the day summary).
    pub polls_today: u64,
    /// Why polling skipped this account last time, so the reason is logged once.
    pub poll_skip: Option<String>,
}

impl AccountRuntime {
    pub fn new(cfg: Account, now: Timestamp) -> AccountRuntime {
        AccountRuntime {
            cfg,
            day: day_of(now),
            usage: HashMap::new(),
            attempts: Vec::new(),
            error: None,
            failures: 0,
            backoff_until: None,
            unconfirmed: false,
            token: Arc::new(TokenCache::default()),
            last_hold: None,
            polled: HashMap::new(),
            poll_disabled: HashMap::new(),
            not_reset: Vec::new(),
            polls_today: 0,
            poll_skip: None,
        }
    }

    /// Starts a new WeChat day if `now` is past the one the counters belong to. The old
    /// day's unflushed rows go to `pending` so the flush still writes them.
    /// Returns the day that ended, if one did. Days only roll forward: a clock stepped
    /// back keeps today's counts (zeroing them would lose them).
    pub fn roll(&mut self, now: Timestamp, pending: &mut Vec<UsageRow>) -> Option<NaiveDate> {
        let today = day_of(now);
        if today <= self.day {
            return None;
        }
        let ended = self.day;
        pending.extend(self.take_dirty());
        self.usage.clear();
        self.polled.retain(|_, p| p.day == today);
        self.polls_today = 0;
        self.not_reset.clear();
        self.day = today;
        Some(ended)
    }

    /// Rows changed since the last flush, marked clean.
    pub fn take_dirty(&mut self) -> Vec<UsageRow> {
        let mut rows = Vec::new();
        for (api, c) in self.usage.iter_mut().filter(|(_, c)| c.dirty) {
            c.dirty = false;
            rows.push(UsageRow {
                appid: self.cfg.appid.clone(),
                day: self.day,
                api: api.clone(),
                calls: c.calls,
                blocked: c.blocked,
            });
        }
        rows
    }

    /// After a clear took effect (or may have): counters start again at zero, ours and
    /// our copy of WeChat's (the limits WeChat told us stay) — every path for an account
    /// clear, the paths sharing `only`'s quota for a per-interface clear.
    pub fn reset_counters(&mut self, only: Option<&str>) {
        let paths: Option<Vec<String>> = only.map(|p| match self.cfg.limits.entry_for(p) {
            Some(e) => e.paths.clone(),
            None => vec![p.to_string()],
        });
        let hit = |p: &str| paths.as_ref().is_none_or(|ps| ps.iter().any(|x| x == p));
        for (path, c) in self.usage.iter_mut().filter(|(p, _)| hit(p)) {
            let _ = path;
            c.calls = 0;
            c.blocked = false;
            c.blocked_at = None;
            c.dirty = true;
        }
        for (_, p) in self.polled.iter_mut().filter(|(p, _)| hit(p)) {
            p.used = 0;
            p.remain = p.daily_limit;
        }
    }

    /// Whether a clear can reset the quota of `paths` (SPEC §5).
    fn resettable(&self, paths: &[String]) -> Resettable {
        if paths.iter().any(|p| TOKEN_APIS.contains(&p.as_str())) {
            Resettable::TokenApi
        } else if paths
            .iter()
            .any(|p| self.usage.get(p).is_some_and(|c| c.lifetime))
        {
            Resettable::Lifetime
        } else if paths.iter().any(|p| self.not_reset.contains(p)) {
            Resettable::NotReset
        } else {
            Resettable::Yes
        }
    }

    /// Whether WeChat's counter, read after the 45009 of `paths` was reported, showed
    /// room (`remain` > 0).
    fn room_after_block(&self, paths: &[String]) -> bool {
        paths.iter().any(|p| {
            let since = self.usage.get(p).and_then(|c| c.blocked_at);
            match (since, self.polled.get(p)) {
                (Some(since), Some(q)) => q.day == self.day && q.at >= since && q.remain > 0,
                _ => false,
            }
        })
    }

    /// WeChat's count for a quota today: the largest polled `used` over its paths, the
    /// polled limit, and whether WeChat says nothing remains.
    fn polled_for(&self, paths: &[String]) -> Option<(u64, u64, bool)> {
        paths
            .iter()
            .filter_map(|p| self.polled.get(p))
            .filter(|p| p.day == self.day)
            .map(|p| (p.used, p.daily_limit, p.daily_limit > 0 && p.remain == 0))
            .max_by_key(|p| p.0)
    }

    /// The paths to poll: `[poll] apis`, else each watched quota's naming path; never
    /// /sns paths (getApiQuota cannot report them) nor paths WeChat refused.
    pub fn poll_paths(&self, apis: &[String]) -> Vec<String> {
        let paths: Vec<String> = if apis.is_empty() {
            self.quotas()
                .into_iter()
                .filter(|q| q.watched && q.limit.is_some())
                .map(|q| q.paths[0].clone())
                .collect()
        } else {
            apis.to_vec()
        };
        paths
            .into_iter()
            .filter(|p| crate::apipath::pollable(p) && !self.poll_disabled.contains_key(p))
            .collect()
    }

    /// Whether `path` may trigger a clear: in the watch list when there is one; else any
    /// path with a known limit, or one WeChat showed has a limit by answering 45009.
    pub fn is_watched(&self, paths: &[String], has_limit: bool, blocked: bool) -> bool {
        let watch = &self.cfg.policy.watch;
        if watch.is_empty() {
            has_limit || blocked
        } else {
            paths.iter().any(|p| watch.contains(p))
        }
    }

    /// Every quota worth showing or deciding on: each quota of the limit table that is
    /// watched or has usage, plus each counted path outside the table.
    pub fn quotas(&self) -> Vec<QuotaStatus<'_>> {
        let mut out = Vec::new();
        let mut covered: Vec<&str> = Vec::new();
        for e in self.cfg.limits.entries() {
            let mut used = 0u64;
            let mut blocked = false;
            let mut counted = false;
            for p in &e.paths {
                covered.push(p);
                if let Some(c) = self.usage.get(p) {
                    used = used.saturating_add(c.calls);
                    blocked |= c.blocked;
                    counted = true;
                }
            }
            let local = used;
            let mut limit = e.limit;
            let mut source = e.limit.map(|_| e.source);
            let mut wechat = None;
            let room_after_block = self.room_after_block(&e.paths);
            if let Some((polled_used, polled_limit, none_left)) = self.polled_for(&e.paths) {
                // SPEC §5: the larger of the two counts; WeChat's limit is the one that counts.
                used = used.max(polled_used);
                blocked |= none_left;
                if polled_limit > 0 {
                    limit = Some(polled_limit);
                    source = Some(LimitSource::Wechat);
                }
                wechat = Some(polled_used);
                counted = true;
            }
            let watched = self.is_watched(&e.paths, limit.is_some(), blocked);
            if watched || counted {
                out.push(QuotaStatus {
                    paths: &e.paths,
                    used,
                    local,
                    wechat,
                    limit,
                    limit_source: source,
                    blocked,
                    watched,
                    reset_by_clear: !e.paths.iter().any(|p| self.not_reset.contains(p)),
                    resettable: self.resettable(&e.paths),
                    room_after_block,
                });
            }
        }
        // Paths outside the limit table: reported ones, and polled ones (a path in
        // `[poll] apis` whose limit only WeChat knows).
        let mut extra: Vec<&String> = self
            .usage
            .keys()
            .chain(self.polled.keys())
            .filter(|p| !covered.contains(&p.as_str()))
            .collect();
        extra.sort();
        extra.dedup();
        for p in extra {
            let paths = std::slice::from_ref(p);
            let (local, mut blocked) = self
                .usage
                .get(p.as_str())
                .map_or((0, false), |c| (c.calls, c.blocked));
            let mut used = local;
            let mut limit = None;
            let mut wechat = None;
            if let Some((polled_used, polled_limit, none_left)) = self.polled_for(paths) {
                used = used.max(polled_used);
                blocked |= none_left;
                limit = (polled_limit > 0).then_some(polled_limit);
                wechat = Some(polled_used);
            }
            let watched = self.is_watched(paths, limit.is_some(), blocked);
            out.push(QuotaStatus {
                reset_by_clear: !self.not_reset.contains(p),
                resettable: self.resettable(paths),
                room_after_block: self.room_after_block(paths),
                paths,
                used,
                local,
                wechat,
                limit,
                limit_source: limit.map(|_| LimitSource::Wechat),
                blocked,
                watched,
            });
        }
        out
    }

    /// The clear history the gates need, as of `now`.
    pub fn history(&self, now: Timestamp) -> ClearHistory {
        let month = month_of(now);
        let today = day_of(now);
        let mut h = ClearHistory::default();
        for a in &self.attempts {
            h.latest_attempt_at = h.latest_attempt_at.max(Some(a.started_at));
            if month_of(a.started_at) != month {
                continue;
            }
            let api = a.kind == ClearKind::Api;
            if a.errcode == Some(48006) {
                if api {
                    h.api_month_exhausted = true;
                } else {
                    h.month_exhausted = true;
                }
            }
            if api && a.outcome == AttemptOutcome::Failed && is_api_refusal(a.errcode) {
                if let Some(p) = &a.api {
                    if !h.api_refused.contains(p) {
                        h.api_refused.push(p.clone());
                    }
                }
            }
            if a.spent() {
                if api {
                    h.api_spent_month += 1;
                } else {
                    h.spent_month += 1;
                }
                if day_of(a.started_at) == today {
                    h.spent_today += 1;
                }
                h.last_spent_at = h.last_spent_at.max(Some(a.started_at));
            }
        }
        h
    }

    /// Drops attempts from before last month (the gates never look further back), and
    /// keeps at most [`MAX_UNSPENT_ATTEMPTS`] unspent ones: spent ones are bounded by
    /// the monthly budgets, failed ones only matter as the latest.
    pub fn prune_attempts(&mut self, now: Timestamp) {
        let keep_from = crate::time::start_of_month(
            crate::time::start_of_month(now) - chrono::Duration::days(1),
        );
        self.attempts.retain(|a| a.started_at >= keep_from);
        let unspent = self.attempts.iter().filter(|a| !a.spent()).count();
        if unspent > MAX_UNSPENT_ATTEMPTS {
            let mut drop = unspent - MAX_UNSPENT_ATTEMPTS;
            // Refusals of per-interface clears are kept: they say which path cannot be.
            self.attempts.retain(|a| {
                let keep = a.spent()
                    || drop == 0
                    || (a.kind == ClearKind::Api && is_api_refusal(a.errcode));
                if !keep {
                    drop -= 1;
                }
                keep
            });
        }
    }
}

/// Unspent attempts an account keeps in memory at most (see `prune_attempts`).
pub const MAX_UNSPENT_ATTEMPTS: usize = 64;

/// Whether an errcode from clearApiQuota means "not this path": anything but success,
/// "busy", a token to renew, 45009 and 48006 (WECHAT.md).
pub fn is_api_refusal(errcode: Option<i64>) -> bool {
    matches!(errcode, Some(c) if !matches!(c, 0 | -1 | 40001 | 40014 | 42001 | 45009 | 48006))
}

/// One quota as status shows it and the policy sees it.
#[derive(Debug, Clone)]
pub struct QuotaStatus<'a> {
    /// The paths sharing the quota; the first names it.
    pub paths: &'a [String],
    /// The larger of `local` and `wechat`.
    pub used: u64,
    /// Counted from reports.
    pub local: u64,
    /// WeChat's polled count today, if polled.
    pub wechat: Option<u64>,
    /// False when the check after the last clear saw WeChat keep counting this path.
    pub reset_by_clear: bool,
    pub limit: Option<u64>,
    pub limit_source: Option<LimitSource>,
    pub blocked: bool,
    pub watched: bool,
    pub resettable: Resettable,
    pub room_after_block: bool,
}

impl AccountRuntime {
    /// Calls per minute to the quota of `paths` over the last [`RATE_WINDOW_MINUTES`]
    /// (from the first minute with calls in it, at least one; 0 when none came lately):
    /// `None` when no calls were reported for it today.
    pub fn recent_rate(&self, paths: &[String], now: Timestamp) -> Option<f64> {
        let minute = now.timestamp().div_euclid(60);
        let mut calls = 0u64;
        let mut first = minute;
        let mut reported = false;
        for p in paths {
            let Some(u) = self.usage.get(p) else { continue };
            reported |= u.calls > 0 || !u.recent.is_empty();
            for (m, c) in &u.recent {
                if *m > minute - RATE_WINDOW_MINUTES && *m <= minute {
                    calls = calls.saturating_add(*c);
                    first = first.min(*m);
                }
            }
        }
        reported.then(|| calls as f64 / (minute - first + 1) as f64)
    }

    /// Since when the count of the quota of `paths` has been running today: its first
    /// reported call, or the last clear that reset it if later (the day's start when
    /// nothing was reported).
    pub fn counting_since(&self, paths: &[String]) -> Timestamp {
        let day_start = crate::time::start_of_day(self.day);
        let start = paths
            .iter()
            .filter_map(|p| self.usage.get(p).and_then(|u| u.first_call_at))
            .min()
            .map_or(day_start, |first| first.max(day_start));
        self.attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Ok && a.started_at >= day_start)
            .filter(|a| match a.kind {
                ClearKind::Account => true,
                ClearKind::Api => a.api.as_ref().is_some_and(|p| paths.contains(p)),
            })
            .map(|a| a.started_at)
            .fold(start, Timestamp::max)
    }
}

impl<'a> QuotaStatus<'a> {
    /// The view with the recent rate and the start of the count, for decisions.
    pub fn view_at(&self, acct: &AccountRuntime, now: Timestamp) -> QuotaView<'a> {
        QuotaView {
            rate: acct.recent_rate(self.paths, now),
            since: Some(acct.counting_since(self.paths)),
            ..self.view()
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.limit
            .filter(|l| *l > 0)
            .map(|l| self.used as f64 / l as f64)
    }

    pub fn view(&self) -> QuotaView<'a> {
        QuotaView {
            api: &self.paths[0],
            used: self.used,
            limit: self.limit,
            blocked: self.blocked,
            watched: self.watched,
            resettable: self.resettable,
            room_after_block: self.room_after_block,
            rate: None,
            since: None,
        }
    }
}

/// The policy's view of `acct`; `quotas` must come from `acct.quotas()`.
pub fn view<'a>(
    acct: &'a AccountRuntime,
    quotas: &'a [QuotaView<'a>],
    dry_run: bool,
    in_flight: bool,
    now: Timestamp,
) -> AccountView<'a> {
    AccountView {
        policy: &acct.cfg.policy,
        quotas,
        history: acct.history(now),
        in_flight,
        in_error: acct.error.is_some(),
        dry_run,
        backoff_until: acct.backoff_until,
    }
}
