//! One account's runtime state: today's counters, this month's attempts, flags; and the
//! views the policy and status are built from. Pure: time is passed in.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;

use crate::config::{Account, LimitSource};
use crate::policy::{AccountView, ClearHistory, QuotaView};
use crate::store::{Attempt, UsageRow};
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
    /// Changed since the last flush.
    pub dirty: bool,
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
    pub in_flight: bool,
    pub error: Option<AccountError>,
    pub token: Arc<TokenCache>,
    /// The last hold logged (text and when), so a held account does not log on every report.
    pub last_hold: Option<(String, Timestamp)>,
}

impl AccountRuntime {
    pub fn new(cfg: Account, now: Timestamp) -> AccountRuntime {
        AccountRuntime {
            cfg,
            day: day_of(now),
            usage: HashMap::new(),
            attempts: Vec::new(),
            in_flight: false,
            error: None,
            token: Arc::new(TokenCache::default()),
            last_hold: None,
        }
    }

    /// Starts a new WeChat day if `now` is past the one the counters belong to. The old
    /// day's unflushed rows go to `pending` so the flush still writes them.
    /// Returns the day that ended, if one did.
    pub fn roll(&mut self, now: Timestamp, pending: &mut Vec<UsageRow>) -> Option<NaiveDate> {
        let today = day_of(now);
        if today == self.day {
            return None;
        }
        let ended = self.day;
        pending.extend(self.take_dirty());
        self.usage.clear();
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

    /// After a clear took effect (or may have): counters start again at zero.
    pub fn reset_counters(&mut self) {
        for c in self.usage.values_mut() {
            c.calls = 0;
            c.blocked = false;
            c.dirty = true;
        }
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
    pub fn quotas(&self) -> Vec<QuotaStatus> {
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
            let watched = self.is_watched(&e.paths, e.limit.is_some(), blocked);
            if watched || counted {
                out.push(QuotaStatus {
                    paths: e.paths.clone(),
                    used,
                    limit: e.limit,
                    limit_source: e.limit.map(|_| e.source),
                    blocked,
                    watched,
                });
            }
        }
        for (p, c) in &self.usage {
            if covered.contains(&p.as_str()) {
                continue;
            }
            let paths = vec![p.clone()];
            let watched = self.is_watched(&paths, false, c.blocked);
            out.push(QuotaStatus {
                paths,
                used: c.calls,
                limit: None,
                limit_source: None,
                blocked: c.blocked,
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
        for a in self
            .attempts
            .iter()
            .filter(|a| month_of(a.started_at) == month)
        {
            if a.errcode == Some(48006) {
                h.month_exhausted = true;
            }
            if a.spent() {
                h.spent_month += 1;
                if day_of(a.started_at) == today {
                    h.spent_today += 1;
                }
                h.last_spent_at = Some(a.started_at);
            }
        }
        h
    }

    /// Drops attempts from before last month (the gates never look further back).
    pub fn prune_attempts(&mut self, now: Timestamp) {
        let keep_from = crate::time::start_of_month(
            crate::time::start_of_month(now) - chrono::Duration::days(1),
        );
        self.attempts.retain(|a| a.started_at >= keep_from);
    }
}

/// One quota as status shows it and the policy sees it.
#[derive(Debug, Clone)]
pub struct QuotaStatus {
    pub paths: Vec<String>,
    pub used: u64,
    pub limit: Option<u64>,
    pub limit_source: Option<LimitSource>,
    pub blocked: bool,
    pub watched: bool,
}

impl QuotaStatus {
    pub fn ratio(&self) -> Option<f64> {
        self.limit
            .filter(|l| *l > 0)
            .map(|l| self.used as f64 / l as f64)
    }

    pub fn view(&self) -> QuotaView {
        QuotaView {
            api: self.paths[0].clone(),
            used: self.used,
            limit: self.limit,
            blocked: self.blocked,
            watched: self.watched,
        }
    }
}

/// The policy's view of `acct`; `quotas` must come from `acct.quotas()`.
pub fn view<'a>(
    acct: &'a AccountRuntime,
    quotas: &'a [QuotaView],
    dry_run: bool,
    now: Timestamp,
) -> AccountView<'a> {
    AccountView {
        policy: &acct.cfg.policy,
        quotas,
        history: acct.history(now),
        in_flight: acct.in_flight,
        in_error: acct.error.is_some(),
        dry_run,
    }
}
