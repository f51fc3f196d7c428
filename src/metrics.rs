//! Prometheus metrics (`GET /metrics`): long-lived counters updated where things happen,
//! and gauges read from the status document at each scrape (so they can never drift
//! from what `status` shows).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::engine::StatusDoc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountOutcome {
    pub account: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointErrcode {
    pub endpoint: String,
    /// WeChat's errcode, or "http_5xx", "timeout", "unreadable", "connect".
    pub errcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountApi {
    account: String,
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountState {
    account: String,
    state: String,
}

/// Per-(account, path) series exported at most, per account (the most relevant first).
pub const MAX_API_SERIES: usize = 64;

/// The counters. Cheap to clone; clones share values.
#[derive(Clone, Default)]
pub struct Metrics {
    /// `POST /v1/report` requests by HTTP status.
    pub report_requests: Family<StatusLabel, Counter>,
    /// Report items accepted.
    pub report_items: Counter,
    /// Clear attempts (ledger rows) by account and outcome (ok, failed, unknown).
    pub clear_attempts: Family<AccountOutcome, Counter>,
    /// clearApiQuota requests by account and outcome (per-interface clears).
    pub api_clear_attempts: Family<AccountOutcome, Counter>,
    /// Requests to WeChat by endpoint and errcode.
    pub wechat_requests: Family<EndpointErrcode, Counter>,
    /// Calls the counting proxy forwarded, by account ("-" when unattributed) and
    /// outcome (WeChat's errcode, "http_502", "not_sent", "no_answer").
    pub proxied: Family<AccountOutcome, Counter>,
}

impl Metrics {
    /// Counts one proxied try.
    pub fn count_proxied(&self, account: &str, outcome: &str) {
        self.proxied
            .get_or_create(&AccountOutcome {
                account: account.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one request to WeChat by endpoint and errcode ("0" for success, or
    /// "http_502", "timeout", "unreadable", "connect").
    pub fn count_wechat(&self, endpoint: &str, result: Result<(), &crate::wechat::WechatError>) {
        use crate::wechat::WechatError;
        let errcode = match result {
            Ok(()) => "0".to_string(),
            Err(WechatError::Api { errcode, .. }) => errcode.to_string(),
            Err(WechatError::Http { status }) => format!("http_{status}"),
            Err(WechatError::Timeout) => "timeout".into(),
            Err(WechatError::Unreadable(_)) => "unreadable".into(),
            Err(WechatError::Connect(_)) => "connect".into(),
        };
        self.wechat_requests
            .get_or_create(&EndpointErrcode {
                endpoint: endpoint.to_string(),
                errcode,
            })
            .inc();
    }

    /// The text exposition: the counters plus gauges from `status`.
    pub fn render(&self, status: &StatusDoc) -> String {
        let mut reg = Registry::with_prefix("wxquotad");
        reg.register(
            "report_requests",
            "POST /v1/report requests by HTTP status",
            self.report_requests.clone(),
        );
        reg.register(
            "report_items",
            "Report items accepted",
            self.report_items.clone(),
        );
        reg.register(
            "clear_attempts",
            "clear_quota requests by outcome (ok, failed, unknown = maybe took effect)",
            self.clear_attempts.clone(),
        );
        reg.register(
            "api_clear_attempts",
            "clearApiQuota (per-interface clear) requests by outcome (ok, failed, unknown = maybe took effect)",
            self.api_clear_attempts.clone(),
        );
        reg.register(
            "wechat_requests",
            "Requests to WeChat by endpoint and errcode",
            self.wechat_requests.clone(),
        );
        reg.register(
            "proxied_calls",
            "Calls the counting proxy forwarded, by account and outcome (errcode, http_NNN, not_sent, no_answer)",
            self.proxied.clone(),
        );

        let used = Family::<AccountApi, Gauge>::default();
        let limit = Family::<AccountApi, Gauge>::default();
        let ratio = Family::<AccountApi, Gauge<f64, AtomicU64>>::default();
        let blocked = Family::<AccountApi, Gauge>::default();
        let clears_used = Family::<AccountLabel, Gauge>::default();
        let clears_left = Family::<AccountLabel, Gauge>::default();
        let clears_today = Family::<AccountLabel, Gauge>::default();
        let api_clears_used = Family::<AccountLabel, Gauge>::default();
        let api_clears_left = Family::<AccountLabel, Gauge>::default();
        let state = Family::<AccountState, Gauge>::default();
        for a in &status.accounts {
            let account = AccountLabel {
                account: a.name.clone(),
            };
            clears_used
                .get_or_create(&account)
                .set(a.clears.used as i64);
            clears_left
                .get_or_create(&account)
                .set(a.clears.left as i64);
            clears_today
                .get_or_create(&account)
                .set(a.clears.today as i64);
            api_clears_used
                .get_or_create(&account)
                .set(a.api_clears.used as i64);
            api_clears_left
                .get_or_create(&account)
                .set(a.api_clears.left as i64);
            for s in ["ok", "exhausted", "error"] {
                state
                    .get_or_create(&AccountState {
                        account: a.name.clone(),
                        state: s.to_string(),
                    })
                    .set((a.state == s) as i64);
            }
            // Paths are chosen by clients: export only the first MAX_API_SERIES of the
            // status order (blocked, then by share of the limit, then by use), so a client
            // sending made-up paths cannot grow the label set without bound.
            for q in a.apis.iter().take(MAX_API_SERIES) {
                let key = AccountApi {
                    account: a.name.clone(),
                    api: q.api.clone(),
                };
                used.get_or_create(&key).set(q.used as i64);
                blocked.get_or_create(&key).set(q.blocked as i64);
                if let Some(l) = q.limit {
                    limit.get_or_create(&key).set(l as i64);
                }
                if let Some(r) = q.ratio {
                    ratio.get_or_create(&key).set(r);
                }
            }
        }
        reg.register_with_unit(
            "api_used",
            "Calls counted today (UTC+8) per quota: the larger of reported and WeChat's count",
            Unit::Other("calls".into()),
            used,
        );
        reg.register_with_unit(
            "api_daily_limit",
            "Daily limit per quota",
            Unit::Other("calls".into()),
            limit,
        );
        reg.register_with_unit(
            "api_usage",
            "Share of the daily limit used",
            Unit::Other("ratio".into()),
            ratio,
        );
        reg.register(
            "api_blocked",
            "1 when the quota was reported blocked (45009) since the last clear",
            blocked,
        );
        reg.register(
            "clears_used",
            "Clears counted against this month's budget",
            clears_used,
        );
        reg.register("clears_left", "Clears left this month", clears_left);
        reg.register("clears_today", "Clears counted today", clears_today);
        reg.register(
            "api_clears_used",
            "Per-interface clears (clearApiQuota) counted against this month's budget",
            api_clears_used,
        );
        reg.register(
            "api_clears_left",
            "Per-interface clears left this month",
            api_clears_left,
        );
        reg.register(
            "account_state",
            "1 for the account's current state (ok, exhausted, error)",
            state,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
        out
    }
}
