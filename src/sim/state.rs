//! The simulator's rules (WECHAT.md) as plain functions over its state, with time
//! passed in: daily counts and 45009, tokens, clears and the monthly budget, getApiQuota.
//!
//! Rules chosen where WeChat documents nothing:
//! - a call counts against its daily quota only when it is answered `errcode` 0
//!   (rejected calls are not counted);
//! - every `/cgi-bin/...` API called with a valid token is counted; the token, stable
//!   token, clear and quota endpoints are counted only when the account's table has a
//!   row for them (`/cgi-bin/token` has one in both presets);
//! - a clear resets every count but those marked not-reset and the clear endpoints' own;
//! - clearApiQuota resets one quota (50 a month, its own budget, 48006 past it) and
//!   answers a path the test marked refused with the errcode given (WECHAT.md: which
//!   paths it accepts is uncertain);
//! - a forced stable token refresh revokes the previous stable token at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{json, Value};

use super::faults::Fault;
#[cfg(test)]
use tokens::seconds;
use tokens::Token;
use wire::form_param;
pub use wire::{parse_pairs, Answer, Request};

mod tokens;
mod wire;
use crate::config::LimitTable;
use crate::time::{day_of, month_of, Timestamp};

/// WeChat's monthly clear budget per account.
pub const MONTHLY_CLEARS: u32 = 10;
/// WeChat's monthly budget of per-interface clears (clearApiQuota) per account.
pub const MONTHLY_API_CLEARS: u32 = 50;
/// Lifetime of a new access token, seconds.
const TOKEN_LIFETIME_SECS: i64 = 7200;
/// A stable token is renewed within its last 5 minutes; an old classic token keeps
/// working 5 minutes after a new one is issued (seconds).
const OVERLAP_SECS: i64 = 300;
/// Forced stable token refreshes allowed per account per day.
const FORCE_REFRESH_PER_DAY: u32 = 20;
/// Least time between two forced refreshes, seconds.
const FORCE_REFRESH_GAP_SECS: i64 = 30;
/// Length of a made-up access token, characters.
const TOKEN_CHARS: usize = 96;
/// Longest appid kept in a request record, characters.
const APPID_CHARS: usize = 64;

/// One request the simulator received, as recorded (never a token or secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// The path only, no query, e.g. `/cgi-bin/clear_quota`.
    pub endpoint: String,
    /// The account, when the request named one (appid parameter or a known token).
    pub appid: Option<String>,
    /// The errcode answered (or, for a dropped answer, the one that was not sent);
    /// `None` for HTTP errors and garbage.
    pub errcode: Option<i64>,
    pub at: Timestamp,
}

/// A count tagged with the WeChat day it belongs to; it reads as 0 on any other day.
#[derive(Debug, Clone, Copy)]
struct DayCount {
    day: NaiveDate,
    count: u64,
}

#[derive(Debug, Clone)]
struct Account {
    secret: String,
    limits: LimitTable,
    /// Quota key (first path of its table row, else the path) → today's count.
    usage: HashMap<String, DayCount>,
    /// Quota keys a clear does not reset.
    not_reset: BTreeSet<String>,
    /// (month "YYYY-MM" in UTC+8, clears that took effect in it).
    clears: (String, u32),
    clear_limit: u32,
    /// (month, per-interface clears that took effect in it).
    api_clears: (String, u32),
    /// Quota keys clearApiQuota refuses, with the errcode it answers.
    api_refused: BTreeMap<String, i64>,
    stable: Option<String>,
    classic: Option<String>,
    /// Forced stable refreshes today and the last one.
    forced: (NaiveDate, u32),
    last_forced: Option<Timestamp>,
}

/// Everything the simulator knows. Methods take `now`; none reads a clock.
#[derive(Debug, Default)]
pub struct SimState {
    accounts: BTreeMap<String, Account>,
    tokens: HashMap<String, Token>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) requests: Vec<RecordedRequest>,
}

impl SimState {
    /// Every token value issued (valid or not).
    pub fn token_values(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }
}

fn quota_key(limits: &LimitTable, path: &str) -> String {
    limits
        .entry_for(path)
        .map_or_else(|| path.to_string(), |e| e.key().to_string())
}

impl Account {
    fn used(&self, key: &str, today: NaiveDate) -> u64 {
        match self.usage.get(key) {
            Some(c) if c.day == today => c.count,
            _ => 0,
        }
    }

    /// 45009 when `path`'s quota is used up today.
    fn check_quota(&self, path: &str, now: Timestamp) -> Result<(), Answer> {
        let limit = self.limits.entry_for(path).and_then(|e| e.limit);
        match limit {
            Some(limit) if self.used(&quota_key(&self.limits, path), day_of(now)) >= limit => {
                Err(Answer::err(45009, "reach max api daily quota limit"))
            }
            _ => Ok(()),
        }
    }

    fn count(&mut self, path: &str, now: Timestamp) {
        let key = quota_key(&self.limits, path);
        let today = day_of(now);
        let n = self.used(&key, today) + 1;
        self.usage.insert(
            key,
            DayCount {
                day: today,
                count: n,
            },
        );
    }

    /// Quota check and count for the token, clear and quota endpoints, which count
    /// only when the table has a row for them.
    fn check_own_quota(&self, path: &str, now: Timestamp) -> Result<(), Answer> {
        match self.limits.entry_for(path) {
            Some(_) => self.check_quota(path, now),
            None => Ok(()),
        }
    }

    fn count_own(&mut self, path: &str, now: Timestamp) {
        if self.limits.entry_for(path).is_some() {
            self.count(path, now);
        }
    }

    fn clears_charged(&self, now: Timestamp) -> u32 {
        if self.clears.0 == month_of(now) {
            self.clears.1
        } else {
            0
        }
    }

    fn api_clears_charged(&self, now: Timestamp) -> u32 {
        if self.api_clears.0 == month_of(now) {
            self.api_clears.1
        } else {
            0
        }
    }
}

impl SimState {
    // ----- set-up and inspection (the Simulator's methods) -----

    /// Adds an account, or replaces the secret and limits of a known one (its counts,
    /// clears and tokens stay).
    pub fn add_account(&mut self, appid: &str, secret: &str, limits: LimitTable) {
        match self.accounts.get_mut(appid) {
            Some(a) => {
                a.secret = secret.to_string();
                a.limits = limits;
            }
            None => {
                let epoch = NaiveDate::MIN;
                self.accounts.insert(
                    appid.to_string(),
                    Account {
                        secret: secret.to_string(),
                        limits,
                        usage: HashMap::new(),
                        not_reset: BTreeSet::new(),
                        clears: (String::new(), 0),
                        clear_limit: MONTHLY_CLEARS,
                        api_clears: (String::new(), 0),
                        api_refused: BTreeMap::new(),
                        stable: None,
                        classic: None,
                        forced: (epoch, 0),
                        last_forced: None,
                    },
                );
            }
        }
    }

    fn account(&mut self, appid: &str) -> Result<&mut Account, String> {
        self.accounts
            .get_mut(appid)
            .ok_or_else(|| format!("unknown appid {appid:?}"))
    }

    /// Sets today's count of `path`'s quota.
    pub fn set_usage(
        &mut self,
        appid: &str,
        path: &str,
        used: u64,
        now: Timestamp,
    ) -> Result<(), String> {
        let a = self.account(appid)?;
        let key = quota_key(&a.limits, path);
        a.usage.insert(
            key,
            DayCount {
                day: day_of(now),
                count: used,
            },
        );
        Ok(())
    }

    /// Today's count of `path`'s quota (0 for an unknown account).
    pub fn usage(&self, appid: &str, path: &str, now: Timestamp) -> u64 {
        self.accounts
            .get(appid)
            .map_or(0, |a| a.used(&quota_key(&a.limits, path), day_of(now)))
    }

    /// Today's counts by quota key.
    pub fn usage_today(&self, appid: &str, now: Timestamp) -> BTreeMap<String, u64> {
        let today = day_of(now);
        self.accounts.get(appid).map_or_else(BTreeMap::new, |a| {
            a.usage
                .iter()
                .filter(|(_, c)| c.day == today)
                .map(|(k, c)| (k.clone(), c.count))
                .collect()
        })
    }

    /// Marks `path`'s quota as one a clear does not reset.
    pub fn set_not_reset(&mut self, appid: &str, path: &str) -> Result<(), String> {
        let a = self.account(appid)?;
        let key = quota_key(&a.limits, path);
        a.not_reset.insert(key);
        Ok(())
    }

    /// Clears that took effect this month (UTC+8).
    pub fn clears_charged(&self, appid: &str, now: Timestamp) -> u32 {
        self.accounts
            .get(appid)
            .map_or(0, |a| a.clears_charged(now))
    }

    /// Sets this month's clear count, e.g. to stand for clears made by hand.
    pub fn set_clears_charged(
        &mut self,
        appid: &str,
        charged: u32,
        now: Timestamp,
    ) -> Result<(), String> {
        self.account(appid)?.clears = (month_of(now), charged);
        Ok(())
    }

    /// Per-interface clears (clearApiQuota) that took effect this month (UTC+8).
    pub fn api_clears_charged(&self, appid: &str, now: Timestamp) -> u32 {
        self.accounts
            .get(appid)
            .map_or(0, |a| a.api_clears_charged(now))
    }

    /// Makes clearApiQuota refuse `path`'s quota with `errcode`.
    pub fn set_api_clear_refused(
        &mut self,
        appid: &str,
        path: &str,
        errcode: i64,
    ) -> Result<(), String> {
        let a = self.account(appid)?;
        let key = quota_key(&a.limits, path);
        a.api_refused.insert(key, errcode);
        Ok(())
    }

    /// Sets the monthly clear budget (default [`MONTHLY_CLEARS`]).
    pub fn set_clear_limit(&mut self, appid: &str, limit: u32) -> Result<(), String> {
        self.account(appid)?.clear_limit = limit;
        Ok(())
    }

    /// The known appids.
    pub fn appids(&self) -> Vec<String> {
        self.accounts.keys().cloned().collect()
    }

    /// The account a request names: its `appid` parameter (query or body), else the
    /// account of its access token. Never the token itself.
    pub fn appid_of(&self, req: &Request) -> Option<String> {
        let from_params = req
            .param("appid")
            .map(str::to_string)
            .or_else(|| {
                req.json()
                    .and_then(|v| v.get("appid").and_then(Value::as_str).map(str::to_string))
            })
            .or_else(|| form_param(req.body, "appid"));
        let appid = from_params.or_else(|| {
            req.param("access_token")
                .and_then(|t| self.tokens.get(t))
                .map(|t| t.appid.clone())
        })?;
        Some(appid.chars().take(APPID_CHARS).collect())
    }

    // ----- the WeChat API -----

    /// Answers one `/cgi-bin/...` request at `now`, applying its effects.
    pub fn handle(&mut self, req: &Request, now: Timestamp) -> Answer {
        let result = match req.path {
            "/cgi-bin/token" => self.classic_token(req, now),
            "/cgi-bin/stable_token" => self.stable_token(req, now),
            "/cgi-bin/clear_quota" => self.clear_quota(req, now),
            "/cgi-bin/clear_quota/v2" => self.clear_quota_v2(req, now),
            "/cgi-bin/openapi/quota/get" => self.quota_get(req, now),
            "/cgi-bin/openapi/quota/clear" => self.quota_clear(req, now),
            _ => self.other_api(req, now),
        };
        result.unwrap_or_else(|a| a)
    }

    fn require_post(req: &Request) -> Result<(), Answer> {
        if req.post {
            Ok(())
        } else {
            Err(Answer::err(43002, "require POST method"))
        }
    }

    fn body_json(req: &Request) -> Result<Value, Answer> {
        req.json()
            .ok_or_else(|| Answer::err(47001, "data format error"))
    }

    /// Charges one clear and resets the account's counts, or answers 48006.
    fn clear(account: &mut Account, path: &str, now: Timestamp) -> Result<Answer, Answer> {
        account.check_own_quota(path, now)?;
        let charged = account.clears_charged(now);
        if charged >= account.clear_limit {
            return Err(Answer::err(
                48006,
                "forbid to clear quota because of reaching the limit",
            ));
        }
        account.clears = (month_of(now), charged + 1);
        let keep = &account.not_reset;
        account.usage.retain(|k, _| {
            keep.contains(k) || k == "/cgi-bin/clear_quota" || k == "/cgi-bin/clear_quota/v2"
        });
        account.count_own(path, now);
        Ok(Answer::ok())
    }

    /// `POST /cgi-bin/clear_quota?access_token=` with `{"appid"}`.
    fn clear_quota(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        Self::require_post(req)?;
        let owner = self.token_account(req, now)?;
        let body = Self::body_json(req)?;
        let appid = body
            .get("appid")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Answer::err(41002, "appid missing"))?;
        if appid != owner {
            return Err(Answer::err(40013, "invalid appid"));
        }
        let account = self
            .accounts
            .get_mut(&owner)
            .expect("tokens belong to accounts");
        Self::clear(account, req.path, now)
    }

    /// `POST /cgi-bin/clear_quota/v2?appid=&appsecret=`; the two may also come in a
    /// JSON or form body.
    fn clear_quota_v2(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        Self::require_post(req)?;
        let json = req.json();
        let get = |k: &str| {
            req.param(k)
                .map(str::to_string)
                .or_else(|| {
                    json.as_ref()
                        .and_then(|v| v.get(k).and_then(Value::as_str).map(str::to_string))
                })
                .or_else(|| form_param(req.body, k))
        };
        let (appid, secret) = (get("appid"), get("appsecret"));
        let account = self.credentials(appid.as_deref(), secret.as_deref())?;
        Self::clear(account, req.path, now)
    }

    /// `POST /cgi-bin/openapi/quota/get?access_token=` with `{"cgi_path"}`.
    fn quota_get(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        Self::require_post(req)?;
        let owner = self.token_account(req, now)?;
        let body = Self::body_json(req)?;
        let cgi_path = body
            .get("cgi_path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Answer::err(40097, "invalid args"))?;
        let account = self
            .accounts
            .get_mut(&owner)
            .expect("tokens belong to accounts");
        account.check_own_quota(req.path, now)?;
        if cgi_path.starts_with("/sns/") {
            return Err(Answer::err(76022, "no permission to query this cgi_path"));
        }
        let limit = account
            .limits
            .entry_for(cgi_path)
            .and_then(|e| e.limit)
            .ok_or_else(|| Answer::err(76021, "cgi_path not found"))?;
        let used = account.used(&quota_key(&account.limits, cgi_path), day_of(now));
        account.count_own(req.path, now);
        Ok(Answer {
            body: json!({
                "errcode": 0,
                "errmsg": "ok",
                "quota": {
                    "daily_limit": limit,
                    "used": used,
                    "remain": limit.saturating_sub(used),
                },
            }),
        })
    }

    /// `POST /cgi-bin/openapi/quota/clear?access_token=` with `{"cgi_path"}`
    /// (clearApiQuota): resets that one quota, one of 50 a month.
    fn quota_clear(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        Self::require_post(req)?;
        let owner = self.token_account(req, now)?;
        let body = Self::body_json(req)?;
        let cgi_path = body
            .get("cgi_path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Answer::err(40097, "invalid args"))?;
        let account = self
            .accounts
            .get_mut(&owner)
            .expect("tokens belong to accounts");
        account.check_own_quota(req.path, now)?;
        let key = quota_key(&account.limits, cgi_path);
        if let Some(&code) = account.api_refused.get(&key) {
            return Err(Answer::err(code, "cgi_path not allowed to clear"));
        }
        let charged = account.api_clears_charged(now);
        if charged >= MONTHLY_API_CLEARS {
            return Err(Answer::err(
                48006,
                "forbid to clear quota because of reaching the limit",
            ));
        }
        account.api_clears = (month_of(now), charged + 1);
        if !account.not_reset.contains(&key) {
            account.usage.remove(&key);
        }
        account.count_own(req.path, now);
        Ok(Answer::ok())
    }

    /// Any other `/cgi-bin/...` API: a valid token, then the daily quota.
    fn other_api(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        let owner = self.token_account(req, now)?;
        let account = self
            .accounts
            .get_mut(&owner)
            .expect("tokens belong to accounts");
        account.check_quota(req.path, now)?;
        account.count(req.path, now);
        Ok(Answer::ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitSource, PresetName};
    use crate::time::parse;

    const APP: &str = "wxapp";
    const SECRET: &str = "secret-1";

    fn at(s: &str) -> Timestamp {
        parse(s).unwrap()
    }

    fn state() -> SimState {
        let mut s = SimState::default();
        s.add_account(APP, SECRET, LimitTable::from_preset(PresetName::Normal));
        s
    }

    /// Sends a request; `query` is a raw query string, `body` raw bytes.
    fn call(
        s: &mut SimState,
        post: bool,
        path: &str,
        query: &str,
        body: &str,
        now: Timestamp,
    ) -> Answer {
        let query = parse_pairs(query);
        let req = Request {
            post,
            path,
            query: &query,
            body: body.as_bytes(),
        };
        s.handle(&req, now)
    }

    fn stable(s: &mut SimState, force: bool, now: Timestamp) -> Answer {
        let body = json!({
            "grant_type": "client_credential",
            "appid": APP,
            "secret": SECRET,
            "force_refresh": force,
        });
        call(s, true, "/cgi-bin/stable_token", "", &body.to_string(), now)
    }

    fn token_of(a: &Answer) -> String {
        a.body["access_token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    fn api(s: &mut SimState, path: &str, token: &str, now: Timestamp) -> i64 {
        call(s, true, path, &format!("access_token={token}"), "{}", now).errcode()
    }

    fn clear(s: &mut SimState, token: &str, now: Timestamp) -> i64 {
        call(
            s,
            true,
            "/cgi-bin/clear_quota",
            &format!("access_token={token}"),
            &json!({"appid": APP}).to_string(),
            now,
        )
        .errcode()
    }

    fn clear_v2(s: &mut SimState, query: &str, body: &str, now: Timestamp) -> i64 {
        call(s, true, "/cgi-bin/clear_quota/v2", query, body, now).errcode()
    }

    #[test]
    fn ten_clears_a_month_then_48006_and_a_new_month_in_utc8_starts_again() {
        let mut s = state();
        let t = at("2026-11-30T23:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        for i in 0..10 {
            let code = if i % 2 == 0 {
                clear(&mut s, &token, t)
            } else {
                clear_v2(&mut s, &format!("appid={APP}&appsecret={SECRET}"), "", t)
            };
            assert_eq!(code, 0, "clear {i}");
        }
        assert_eq!(s.clears_charged(APP, t), 10);
        assert_eq!(clear(&mut s, &token, t), 48006);
        assert_eq!(
            clear_v2(&mut s, &format!("appid={APP}&appsecret={SECRET}"), "", t),
            48006
        );
        assert_eq!(s.clears_charged(APP, t), 10);
        // 23:59:59 Beijing is still November; one second later it is December.
        let last = at("2026-11-30T23:59:59+08:00");
        assert_eq!(clear(&mut s, &token, last), 48006);
        let next = last + seconds(1);
        assert_eq!(s.clears_charged(APP, next), 0);
        assert_eq!(clear(&mut s, &token, next), 0);
        assert_eq!(s.clears_charged(APP, next), 1);
    }

    #[test]
    fn clear_api_quota_resets_one_quota_fifty_a_month_and_refuses_marked_paths() {
        let mut s = state();
        let now = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, now));
        s.set_usage(APP, "/cgi-bin/user/get", 400, now).unwrap();
        s.set_usage(APP, "/cgi-bin/menu/get", 300, now).unwrap();
        let clear_one = |s: &mut SimState, path: &str| {
            call(
                s,
                true,
                "/cgi-bin/openapi/quota/clear",
                &format!("access_token={token}"),
                &json!({ "cgi_path": path }).to_string(),
                now,
            )
            .errcode()
        };
        assert_eq!(clear_one(&mut s, "/cgi-bin/user/get"), 0);
        assert_eq!(s.usage(APP, "/cgi-bin/user/get", now), 0);
        assert_eq!(
            s.usage(APP, "/cgi-bin/menu/get", now),
            300,
            "only that quota"
        );
        assert_eq!(s.api_clears_charged(APP, now), 1);
        assert_eq!(s.clears_charged(APP, now), 0, "its own budget");
        s.set_api_clear_refused(APP, "/cgi-bin/menu/get", 40200)
            .unwrap();
        assert_eq!(clear_one(&mut s, "/cgi-bin/menu/get"), 40200);
        assert_eq!(s.usage(APP, "/cgi-bin/menu/get", now), 300);
        for _ in 1..MONTHLY_API_CLEARS {
            assert_eq!(clear_one(&mut s, "/cgi-bin/user/get"), 0);
        }
        assert_eq!(clear_one(&mut s, "/cgi-bin/user/get"), 48006);
        assert_eq!(s.api_clears_charged(APP, now), MONTHLY_API_CLEARS);
        let bad = call(
            &mut s,
            true,
            "/cgi-bin/openapi/quota/clear",
            "access_token=nope",
            r#"{"cgi_path": "/cgi-bin/user/get"}"#,
            now,
        );
        assert_eq!(bad.errcode(), 40001);
    }

    #[test]
    fn daily_counts_reach_45009_and_reset_at_midnight_utc8() {
        let mut s = state();
        let t = at("2026-11-22T23:59:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        s.set_usage(APP, "/cgi-bin/user/get", 498, t).unwrap();
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, t), 0);
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, t), 0);
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, t), 45009);
        // Rejected calls are not counted.
        assert_eq!(s.usage(APP, "/cgi-bin/user/get", t), 500);
        // Another API is unaffected; an API with no table row is counted without limit.
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &token, t), 0);
        assert_eq!(api(&mut s, "/cgi-bin/message/template/send", &token, t), 0);
        assert_eq!(s.usage(APP, "/cgi-bin/message/template/send", t), 1);
        let tomorrow = at("2026-11-23T00:00:00+08:00");
        assert_eq!(s.usage(APP, "/cgi-bin/user/get", tomorrow), 0);
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, tomorrow), 0);
        assert_eq!(s.usage(APP, "/cgi-bin/user/get", tomorrow), 1);
    }

    #[test]
    fn mass_send_paths_share_one_quota() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        s.set_usage(APP, "/cgi-bin/message/mass/send", 99, t)
            .unwrap();
        assert_eq!(api(&mut s, "/cgi-bin/message/mass/sendall", &token, t), 0);
        assert_eq!(api(&mut s, "/cgi-bin/message/mass/send", &token, t), 45009);
        assert_eq!(
            api(&mut s, "/cgi-bin/message/mass/sendall", &token, t),
            45009
        );
        assert_eq!(s.usage(APP, "/cgi-bin/message/mass/send", t), 100);
        assert_eq!(s.usage(APP, "/cgi-bin/message/mass/sendall", t), 100);
    }

    #[test]
    fn a_clear_resets_counts_except_not_reset_paths() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        s.set_usage(APP, "/cgi-bin/user/get", 500, t).unwrap();
        s.set_usage(APP, "/cgi-bin/token", 2000, t).unwrap();
        s.set_not_reset(APP, "/cgi-bin/token").unwrap();
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, t), 45009);
        assert_eq!(clear(&mut s, &token, t), 0);
        assert_eq!(s.usage(APP, "/cgi-bin/user/get", t), 0);
        assert_eq!(s.usage(APP, "/cgi-bin/token", t), 2000);
        assert_eq!(api(&mut s, "/cgi-bin/user/get", &token, t), 0);
        let q = format!("grant_type=client_credential&appid={APP}&secret={SECRET}");
        assert_eq!(
            call(&mut s, false, "/cgi-bin/token", &q, "", t).errcode(),
            45009
        );
    }

    #[test]
    fn stable_token_is_reused_and_renewed_in_its_last_five_minutes() {
        let mut s = state();
        let t0 = at("2026-11-22T10:00:00+08:00");
        let a = stable(&mut s, false, t0);
        assert_eq!(a.body["expires_in"], 7200);
        let b = stable(&mut s, false, t0 + seconds(6000));
        assert_eq!(token_of(&a), token_of(&b));
        assert_eq!(b.body["expires_in"], 1200);
        // Within the last 5 minutes: a new token; the old one works until it expires.
        let c = stable(&mut s, false, t0 + seconds(6901));
        assert_ne!(token_of(&a), token_of(&c));
        assert_eq!(c.body["expires_in"], 7200);
        assert_eq!(
            stable(&mut s, false, t0 + seconds(6950)).body,
            c.body.clone().tap_expires(7151)
        );
        assert_eq!(
            api(
                &mut s,
                "/cgi-bin/menu/get",
                &token_of(&a),
                t0 + seconds(7199)
            ),
            0
        );
        assert_eq!(
            api(
                &mut s,
                "/cgi-bin/menu/get",
                &token_of(&a),
                t0 + seconds(7200)
            ),
            42001
        );
        assert!(token_of(&a).len() >= 64);
    }

    trait TapExpires {
        fn tap_expires(self, n: i64) -> Value;
    }

    impl TapExpires for Value {
        fn tap_expires(mut self, n: i64) -> Value {
            self["expires_in"] = json!(n);
            self
        }
    }

    #[test]
    fn stable_token_errors_and_force_refresh_limits() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let send = |s: &mut SimState, body: Value| {
            call(s, true, "/cgi-bin/stable_token", "", &body.to_string(), t).errcode()
        };
        assert_eq!(send(&mut s, json!({"appid": APP, "secret": SECRET})), 40002);
        assert_eq!(
            send(
                &mut s,
                json!({"grant_type": "client_credential", "secret": SECRET})
            ),
            41002
        );
        assert_eq!(
            send(
                &mut s,
                json!({"grant_type": "client_credential", "appid": "wxnope", "secret": SECRET})
            ),
            40013
        );
        assert_eq!(
            send(
                &mut s,
                json!({"grant_type": "client_credential", "appid": APP, "secret": "bad"})
            ),
            40125
        );
        assert_eq!(
            call(&mut s, false, "/cgi-bin/stable_token", "", "", t).errcode(),
            43002
        );

        let first = token_of(&stable(&mut s, false, t));
        let forced = token_of(&stable(&mut s, true, t));
        assert_ne!(first, forced);
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &first, t), 40001);
        assert_eq!(stable(&mut s, true, t + seconds(29)).errcode(), 45011);
        let mut now = t;
        for _ in 1..20 {
            now += seconds(30);
            assert_eq!(stable(&mut s, true, now).errcode(), 0);
        }
        assert_eq!(stable(&mut s, true, now + seconds(30)).errcode(), 45009);
        // Not forcing still works, and the limit is per day.
        assert_eq!(stable(&mut s, false, now + seconds(30)).errcode(), 0);
        let tomorrow = at("2026-11-23T00:00:00+08:00");
        assert_eq!(stable(&mut s, true, tomorrow).errcode(), 0);
    }

    #[test]
    fn classic_token_counts_and_revokes_the_previous_after_five_minutes() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let q = format!("grant_type=client_credential&appid={APP}&secret={SECRET}");
        let first = token_of(&call(&mut s, false, "/cgi-bin/token", &q, "", t));
        let stable_token = token_of(&stable(&mut s, false, t));
        let second = token_of(&call(
            &mut s,
            false,
            "/cgi-bin/token",
            &q,
            "",
            t + seconds(60),
        ));
        assert_ne!(first, second);
        assert_eq!(s.usage(APP, "/cgi-bin/token", t), 2);
        let later = t + seconds(60 + 299);
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &first, later), 0);
        let cut = t + seconds(60 + 300);
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &first, cut), 40001);
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &second, cut), 0);
        // The stable token is untouched by the classic one.
        assert_eq!(api(&mut s, "/cgi-bin/menu/get", &stable_token, cut), 0);
        // Errors.
        assert_eq!(
            call(
                &mut s,
                false,
                "/cgi-bin/token",
                &format!("appid={APP}&secret={SECRET}"),
                "",
                t
            )
            .errcode(),
            40002
        );
        assert_eq!(
            call(
                &mut s,
                false,
                "/cgi-bin/token",
                "grant_type=client_credential&appid=wxnope&secret=x",
                "",
                t
            )
            .errcode(),
            40013
        );
        assert_eq!(
            call(
                &mut s,
                false,
                "/cgi-bin/token",
                &format!("grant_type=client_credential&appid={APP}&secret=bad"),
                "",
                t
            )
            .errcode(),
            40125
        );
        // The token API's own daily limit.
        s.set_usage(APP, "/cgi-bin/token", 2000, t).unwrap();
        assert_eq!(
            call(&mut s, false, "/cgi-bin/token", &q, "", t).errcode(),
            45009
        );
    }

    #[test]
    fn clear_quota_checks_its_token_and_appid() {
        let mut s = state();
        s.add_account(
            "wxother",
            "other-secret",
            LimitTable::from_preset(PresetName::Test),
        );
        let t = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        let body = json!({"appid": APP}).to_string();
        assert_eq!(
            call(&mut s, true, "/cgi-bin/clear_quota", "", &body, t).errcode(),
            41001
        );
        assert_eq!(
            call(
                &mut s,
                true,
                "/cgi-bin/clear_quota",
                "access_token=forged",
                &body,
                t
            )
            .errcode(),
            40001
        );
        let q = format!("access_token={token}");
        assert_eq!(
            call(&mut s, true, "/cgi-bin/clear_quota", &q, "{}", t).errcode(),
            41002
        );
        let other = json!({"appid": "wxother"}).to_string();
        assert_eq!(
            call(&mut s, true, "/cgi-bin/clear_quota", &q, &other, t).errcode(),
            40013
        );
        assert_eq!(
            call(
                &mut s,
                true,
                "/cgi-bin/clear_quota",
                &q,
                &body,
                t + seconds(7200)
            )
            .errcode(),
            42001
        );
        assert_eq!(s.clears_charged(APP, t), 0);
        assert_eq!(s.clears_charged("wxother", t), 0);
    }

    #[test]
    fn clear_quota_v2_errors_and_body_forms() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        assert_eq!(
            clear_v2(&mut s, &format!("appsecret={SECRET}"), "", t),
            41002
        );
        assert_eq!(clear_v2(&mut s, &format!("appid={APP}"), "", t), 41004);
        assert_eq!(clear_v2(&mut s, "appid=wxnope&appsecret=x", "", t), 40013);
        assert_eq!(
            clear_v2(&mut s, &format!("appid={APP}&appsecret=bad"), "", t),
            40125
        );
        assert_eq!(s.clears_charged(APP, t), 0);
        let json_body = json!({"appid": APP, "appsecret": SECRET}).to_string();
        assert_eq!(clear_v2(&mut s, "", &json_body, t), 0);
        assert_eq!(
            clear_v2(&mut s, "", &format!("appid={APP}&appsecret={SECRET}"), t),
            0
        );
        assert_eq!(s.clears_charged(APP, t), 2);
    }

    #[test]
    fn quota_get_reports_fields_76021_and_76022() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        s.set_usage(APP, "/cgi-bin/user/get", 520, t).unwrap();
        let ask = |s: &mut SimState, path: &str| {
            let q = format!("access_token={token}");
            call(
                s,
                true,
                "/cgi-bin/openapi/quota/get",
                &q,
                &json!({"cgi_path": path}).to_string(),
                t,
            )
        };
        let a = ask(&mut s, "/cgi-bin/user/get");
        assert_eq!(
            a.body["quota"],
            json!({"daily_limit": 500, "used": 520, "remain": 0})
        );
        s.set_usage(APP, "/cgi-bin/message/mass/sendall", 30, t)
            .unwrap();
        let a = ask(&mut s, "/cgi-bin/message/mass/send");
        assert_eq!(
            a.body["quota"],
            json!({"daily_limit": 100, "used": 30, "remain": 70})
        );
        assert_eq!(ask(&mut s, "/sns/userinfo").errcode(), 76022);
        assert_eq!(
            ask(&mut s, "/cgi-bin/message/template/send").errcode(),
            76021
        );
        // A limit added to the table is reported.
        let mut limits = LimitTable::from_preset(PresetName::Normal);
        limits.set(
            "/cgi-bin/message/template/send",
            100000,
            LimitSource::Config,
        );
        s.add_account(APP, SECRET, limits);
        assert_eq!(
            ask(&mut s, "/cgi-bin/message/template/send").body["quota"]["daily_limit"],
            100000
        );
        let q = "access_token=nope";
        assert_eq!(
            call(&mut s, true, "/cgi-bin/openapi/quota/get", q, "{}", t).errcode(),
            40001
        );
    }

    #[test]
    fn a_limit_on_the_clear_endpoint_itself_gives_45009() {
        let mut s = SimState::default();
        let mut limits = LimitTable::from_preset(PresetName::None);
        limits.set("/cgi-bin/clear_quota/v2", 1, LimitSource::Config);
        s.add_account(APP, SECRET, limits);
        let t = at("2026-11-22T10:00:00+08:00");
        let q = format!("appid={APP}&appsecret={SECRET}");
        assert_eq!(clear_v2(&mut s, &q, "", t), 0);
        assert_eq!(clear_v2(&mut s, &q, "", t), 45009);
        assert_eq!(s.clears_charged(APP, t), 1);
    }

    #[test]
    fn requests_name_the_account_but_never_the_token() {
        let mut s = state();
        let t = at("2026-11-22T10:00:00+08:00");
        let token = token_of(&stable(&mut s, false, t));
        let q = parse_pairs(&format!("access_token={token}"));
        let req = Request {
            post: true,
            path: "/cgi-bin/user/get",
            query: &q,
            body: b"",
        };
        assert_eq!(s.appid_of(&req).as_deref(), Some(APP));
        let q = parse_pairs("appid=wx%41b+c");
        let req = Request {
            post: true,
            path: "/cgi-bin/clear_quota/v2",
            query: &q,
            body: b"",
        };
        assert_eq!(s.appid_of(&req).as_deref(), Some("wxAb c"));
    }
}
