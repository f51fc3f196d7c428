//! The status document (SPEC §4 `GET /v1/status`), built from account runtimes.

use serde::{Deserialize, Serialize};

use super::account::AccountRuntime;
use crate::config::LimitSource;
use crate::store::ClearKind;
use crate::time::{month_of, next_reset, show, Timestamp};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusDoc {
    pub now: String,
    pub next_reset: String,
    pub dry_run: bool,
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountStatus {
    pub name: String,
    pub appid: String,
    pub kind: String,
    pub preset: String,
    /// "ok", "exhausted" (no clears left this month) or "error".
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorStatus>,
    pub clears: ClearsStatus,
    /// Per-interface clears (clearApiQuota), their own budget.
    pub api_clears: ApiClearsStatus,
    /// Quotas by usage ratio, highest first.
    pub apis: Vec<ApiStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorStatus {
    pub errcode: Option<i64>,
    pub message: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearsStatus {
    pub month: String,
    /// Spent this month (succeeded or of unknown outcome).
    pub used: u32,
    pub left: u32,
    pub reserve: u32,
    pub today: u32,
    pub in_flight: bool,
    /// WeChat answered 48006 this month.
    pub month_exhausted: bool,
    /// After failed clears: no automatic attempt before this (UTC+8).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backoff_until: Option<String>,
    pub last: Option<LastClear>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiClearsStatus {
    pub month: String,
    /// Spent this month (succeeded or of unknown outcome).
    pub used: u32,
    pub left: u32,
    pub reserve: u32,
    /// WeChat answered 48006 to a per-interface clear this month.
    pub month_exhausted: bool,
    /// Paths WeChat refused to clear one by one this month (cleared the whole-account
    /// way instead).
    pub refused: Vec<String>,
    pub last: Option<LastClear>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastClear {
    pub at: String,
    pub reason: String,
    /// "ok", "failed", "unknown" or "in_flight".
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub errcode: Option<i64>,
    /// The interface of a per-interface clear.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiStatus {
    pub api: String,
    /// Other paths sharing this quota (e.g. the two mass-send paths).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub shared_with: Vec<String>,
    /// The larger of `local` (reports) and `wechat` (polled), SPEC §5.
    pub used: u64,
    pub local: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub wechat: Option<u64>,
    pub limit: Option<u64>,
    /// "preset", "config" or "wechat".
    pub limit_source: Option<LimitSource>,
    pub ratio: Option<f64>,
    pub blocked: bool,
    pub watched: bool,
    /// False when, after the last clear, WeChat's count for this path did not go back
    /// to zero (WeChat is reported not to reset some interfaces).
    pub reset_by_clear: bool,
}

/// Builds one account's status as of `now`.
pub fn account_status(acct: &AccountRuntime, in_flight: bool, now: Timestamp) -> AccountStatus {
    let view = super::account::view(acct, &[], false, in_flight, now);
    let history = &view.history;
    let policy = &acct.cfg.policy;
    let left = view.clears_left();
    let state = if acct.error.is_some() {
        "error"
    } else if left == 0 {
        "exhausted"
    } else {
        "ok"
    };
    let last_of = |kind: ClearKind| {
        acct.attempts
            .iter()
            .rev()
            .find(|a| a.kind == kind && month_of(a.started_at) == month_of(now))
            .map(|a| LastClear {
                at: show(a.started_at),
                reason: a.reason.clone(),
                outcome: a.outcome.as_str().to_string(),
                errcode: a.errcode,
                api: a.api.clone(),
            })
    };
    let mut apis: Vec<ApiStatus> = acct
        .quotas()
        .into_iter()
        .map(|q| ApiStatus {
            api: q.paths[0].clone(),
            shared_with: q.paths[1..].to_vec(),
            used: q.used,
            local: q.local,
            wechat: q.wechat,
            limit: q.limit,
            limit_source: q.limit_source,
            ratio: q.ratio().map(|r| (r * 10_000.0).round() / 10_000.0),
            blocked: q.blocked,
            watched: q.watched,
            reset_by_clear: q.reset_by_clear,
        })
        .collect();
    apis.sort_by(|a, b| {
        b.blocked
            .cmp(&a.blocked)
            .then(b.ratio.unwrap_or(-1.0).total_cmp(&a.ratio.unwrap_or(-1.0)))
            .then(b.used.cmp(&a.used))
            .then(a.api.cmp(&b.api))
    });
    AccountStatus {
        name: acct.cfg.name.clone(),
        appid: acct.cfg.appid.clone(),
        kind: acct.cfg.kind.as_str().to_string(),
        preset: acct.cfg.preset.as_str().to_string(),
        state: state.to_string(),
        error: acct.error.as_ref().map(|e| ErrorStatus {
            errcode: e.errcode,
            message: e.message.clone(),
            at: show(e.at),
        }),
        clears: ClearsStatus {
            month: month_of(now),
            used: history.spent_month,
            left,
            reserve: policy.reserve,
            today: history.spent_today,
            in_flight,
            month_exhausted: history.month_exhausted,
            backoff_until: acct.backoff_until.filter(|u| *u > now).map(show),
            last: last_of(ClearKind::Account),
        },
        api_clears: ApiClearsStatus {
            month: month_of(now),
            used: history.api_spent_month,
            left: view.api_clears_left(),
            reserve: policy.api_reserve,
            month_exhausted: history.api_month_exhausted,
            refused: history.api_refused.clone(),
            last: last_of(ClearKind::Api),
        },
        apis,
    }
}

pub fn doc(accounts: Vec<AccountStatus>, dry_run: bool, now: Timestamp) -> StatusDoc {
    StatusDoc {
        now: show(now),
        next_reset: show(next_reset(now)),
        dry_run,
        accounts,
    }
}
