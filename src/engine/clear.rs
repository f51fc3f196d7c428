//! Running one decision to clear: a first getApiQuota read when it can change the
//! decision, then at most one clear that may take effect — by token, AppSecret or
//! clearApiQuota — with write-ahead ledger rows, settlement, and what each outcome does
//! to the account: back-off, error, remembered refusals (SPEC §5, §6).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::account::{is_api_refusal, AccountError};
use super::{Engine, State};
use crate::config::{AlertEvent, ClearVia, Secret};
use crate::policy::{self, Decision, Plan, Trigger};
use crate::store::{Attempt, AttemptOutcome, NewAttempt, Settlement, StoreError};
use crate::wechat::{Action, ApiQuota, TokenCache, WechatClient, WechatError};

/// Re-sends within one decision, only after answers that prove the clear was not
/// applied (no connection made, errcode -1).
const MAX_RESENDS: u32 = 2;
/// Pause before a re-send; doubles, ±25 % jitter.
const RESEND_PAUSE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClearOutcome {
    Cleared,
    Refused,
    Failed,
}

/// What a clear came to (the API's answer to `POST /v1/accounts/{name}/clear`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearResult {
    pub outcome: ClearOutcome,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Token,
    AppSecret,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::AppSecret => "appsecret",
        }
    }
}

/// How one clear request (with its proven-unapplied re-sends) ended.
enum End {
    Cleared(String),
    /// A gate where the row is written, or a 48006: nothing more to try; no back-off.
    Refused(String),
    /// Failed; may have taken effect when `unknown`. Starts a back-off.
    Failed {
        reason: String,
        unknown: bool,
    },
    /// clearApiQuota will not do this path (remembered through the ledger row), or
    /// cannot be used now (no token): the same decision may clear the whole account.
    ApiUnusable(String),
    /// The account went into `error`.
    Error(String),
}

/// Everything one decision to clear needs, copied out of the state so the lock is not
/// held across requests.
pub(super) struct Job {
    name: String,
    appid: String,
    secret: Secret,
    via: ClearVia,
    fingerprint: String,
    trigger: Trigger,
    plan: Plan,
    /// A per-interface clear someone asked for: never widened to the whole account.
    asked_api: bool,
    policy: crate::config::Policy,
    client: WechatClient,
    token: Arc<TokenCache>,
    /// Whether to read getApiQuota before spending (confirm_45009, or an earlier
    /// unknown outcome to explain).
    first_read: bool,
}

/// The in-flight entry of an appid: who waits for the outcome.
pub(super) type InFlight = watch::Sender<Option<ClearResult>>;

/// Ends the appid's in-flight state however the job ends (even if cancelled), and
/// tells whoever waits what it came to.
struct InFlightGuard {
    engine: Engine,
    appid: String,
    result: Option<ClearResult>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let tx = {
            let mut st = self.engine.lock();
            st.in_flight.remove(&self.appid)
        };
        if let Some(tx) = tx {
            let result = self
                .result
                .take()
                .unwrap_or_else(|| failed("the clear task ended without an outcome".to_string()));
            let _ = tx.send(Some(result));
        }
    }
}

/// Waits for the outcome of the clear in flight for one appid (see
/// [`Engine::clear_in_flight`]).
pub struct InFlightWait {
    rx: watch::Receiver<Option<ClearResult>>,
}

impl InFlightWait {
    pub(super) fn new(rx: watch::Receiver<Option<ClearResult>>) -> InFlightWait {
        InFlightWait { rx }
    }

    /// The clear's result once it has one.
    pub async fn outcome(mut self) -> ClearResult {
        match self.rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().expect("waited for Some"),
            Err(_) => failed("the clear task ended without an outcome".to_string()),
        }
    }
}

impl Job {
    /// Marks account `idx`'s appid in flight and captures what the decision needs.
    pub(super) fn start(st: &mut State, idx: usize, trigger: Trigger, plan: Plan) -> Job {
        let client = st.client.clone();
        let acct = &st.accounts[idx];
        let (tx, _) = watch::channel(None);
        st.in_flight.insert(acct.cfg.appid.clone(), tx);
        let confirm = matches!(trigger, Trigger::Blocked { .. }) && acct.cfg.policy.confirm_45009;
        Job {
            name: acct.cfg.name.clone(),
            appid: acct.cfg.appid.clone(),
            secret: acct.cfg.secret.clone(),
            via: acct.cfg.clear_via,
            fingerprint: acct.cfg.fingerprint(),
            asked_api: matches!(trigger, Trigger::Manual { .. }) && matches!(plan, Plan::Api(_)),
            first_read: trigger.api().is_some() && (confirm || acct.unconfirmed),
            trigger,
            plan,
            policy: acct.cfg.policy.clone(),
            client,
            token: acct.token.clone(),
        }
    }

    /// Runs the decision to its end and applies the outcome to the account.
    pub(super) async fn run(mut self, engine: Engine) -> ClearResult {
        let mut guard = InFlightGuard {
            engine: engine.clone(),
            appid: self.appid.clone(),
            result: None,
        };
        let end = self.decide_and_clear(&engine).await;
        let result = match &end {
            End::Cleared(reason) => ClearResult {
                outcome: ClearOutcome::Cleared,
                reason: reason.clone(),
            },
            End::Refused(reason) | End::ApiUnusable(reason) => ClearResult {
                outcome: ClearOutcome::Refused,
                reason: reason.clone(),
            },
            End::Failed { reason, .. } | End::Error(reason) => failed(reason.clone()),
        };
        engine.settle_decision(&self.appid, &end);
        // Wakes proxied calls holding a 45009 for this clear.
        engine
            .inner
            .proxy
            .clear_ended(&self.appid, result.outcome == ClearOutcome::Cleared);
        let (left, api_left) = engine.budgets_left(&self.appid);
        let (trigger, reason) = (self.trigger.kind(), &self.trigger);
        let via = self.plan.kind().as_str();
        match result.outcome {
            ClearOutcome::Cleared => {
                info!(event = "cleared", account = %self.name, trigger, kind = via, api = self.plan.api().unwrap_or("-"), reason = %reason, clears_left = left, api_clears_left = api_left, "{}", result.reason)
            }
            ClearOutcome::Refused => {
                info!(event = "clear_refused", account = %self.name, trigger, kind = via, reason = %result.reason, clears_left = left, api_clears_left = api_left, "clear refused")
            }
            ClearOutcome::Failed => {
                warn!(event = "clear_failed", account = %self.name, trigger, kind = via, reason = %result.reason, clears_left = left, api_clears_left = api_left, "clear failed")
            }
        }
        self.alert(&engine, &result, left);
        guard.result = Some(result.clone());
        drop(guard);
        result
    }

    /// Tells people what the clear came to, and what it leaves of the budget.
    fn alert(&self, engine: &Engine, result: &ClearResult, left: u32) {
        let now = engine.clock().now();
        let alerts = engine.alerts();
        let reserve = self.policy.reserve;
        match result.outcome {
            ClearOutcome::Cleared => alerts.send(
                AlertEvent::Cleared,
                &self.name,
                &format!("{}; {left} clears left this month", result.reason),
                now,
            ),
            ClearOutcome::Failed => {
                alerts.send(AlertEvent::ClearFailed, &self.name, &result.reason, now)
            }
            ClearOutcome::Refused => {}
        }
        if left == 0 {
            alerts.send(
                AlertEvent::Exhausted,
                &self.name,
                "no clears left this month: a blocked interface stays blocked until 00:00 UTC+8",
                now,
            );
        } else if left <= reserve && result.outcome != ClearOutcome::Refused {
            alerts.send(
                AlertEvent::BudgetLow,
                &self.name,
                &format!(
                    "{left} clears left this month, all reserved for people: automatic clears stop"
                ),
                now,
            );
        }
    }

    /// The decision: first read when it can change it, then one clear; a per-interface
    /// clear WeChat will not do goes on to the whole account when the policy allows.
    async fn decide_and_clear(&mut self, engine: &Engine) -> End {
        if self.first_read {
            let path = self.trigger.api().unwrap_or_default().to_string();
            if let Some(q) = self.read_quota(engine, &path).await {
                engine.first_read(&self.appid, &self.name, &path, q);
            }
            match engine.redecide(&self.appid, &self.trigger, false) {
                Some(Decision::Clear(_, plan)) => self.plan = plan,
                Some(Decision::Hold(_, hold)) => return End::Refused(hold.to_string()),
                Some(Decision::NotDue) => {
                    return End::Refused("no longer due after reading WeChat's counter".into())
                }
                None => return End::Refused("the account is gone from the config".into()),
            }
        }
        loop {
            let end = self.clear_once(engine).await;
            let End::ApiUnusable(why) = &end else {
                return end;
            };
            if self.asked_api || self.plan == Plan::Account {
                return end;
            }
            info!(account = %self.name, api = self.plan.api().unwrap_or("-"), reason = %why, "per-interface clear not possible; deciding on the whole account");
            match engine.redecide(&self.appid, &self.trigger, true) {
                Some(Decision::Clear(_, Plan::Account)) => self.plan = Plan::Account,
                Some(Decision::Hold(_, hold)) => return End::Refused(hold.to_string()),
                _ => return end,
            }
        }
    }

    /// getApiQuota for `path`, when a token can be had (else `None`: "cannot be read").
    async fn read_quota(&self, engine: &Engine, path: &str) -> Option<ApiQuota> {
        let now = engine.clock().now();
        let token = self
            .token
            .get(&self.client, &self.appid, &self.secret, now)
            .await
            .ok()?;
        match self.client.get_api_quota(&token, path).await {
            Ok(q) => Some(q),
            Err(e) => {
                info!(account = %self.name, api = path, error = %e, "could not read WeChat's counter before clearing");
                None
            }
        }
    }

    /// One clear by `self.plan`: ledger row first (every gate checked where it is
    /// written), then the request; re-sent only when the answer proves it was not
    /// applied.
    async fn clear_once(&self, engine: &Engine) -> End {
        let api_path = self.plan.api().map(str::to_string);
        let mut method = match (&self.plan, self.via) {
            (Plan::Api(_), _) => Method::Token,
            (_, ClearVia::AppSecret) => Method::AppSecret,
            _ => Method::Token,
        };
        let forced = self.trigger.is_forced();
        let (monthly, reserve) = match self.plan {
            Plan::Account => (self.policy.monthly_clears, self.policy.reserve),
            Plan::Api(_) => (self.policy.monthly_api_clears, self.policy.api_reserve),
        };
        let mut resends = 0u32;
        let mut renewed = false;
        loop {
            let now = engine.clock().now();
            let token = if method == Method::Token {
                match self
                    .token
                    .get(&self.client, &self.appid, &self.secret, now)
                    .await
                {
                    Ok(t) => Some(t),
                    Err(e) => {
                        warn!(account = %self.name, error = %e, "no access token from stable_token");
                        if e.action() == Action::Misconfigured {
                            return self.enter_error(engine, &e, "getting a token");
                        }
                        if api_path.is_some() {
                            return End::ApiUnusable(format!("no access token: {e}"));
                        }
                        if self.via == ClearVia::Auto {
                            info!(account = %self.name, "no token to be had: falling back to clear_quota/v2 (AppSecret)");
                            method = Method::AppSecret;
                            continue;
                        }
                        return End::Failed {
                            reason: format!("no access token: {e}"),
                            unknown: false,
                        };
                    }
                }
            } else {
                None
            };

            // Write-ahead: the attempt is durable (and counted) before the request leaves.
            let new = NewAttempt {
                appid: self.appid.clone(),
                account: self.name.clone(),
                at: now,
                trigger: self.trigger.kind().to_string(),
                reason: self.trigger.to_string(),
                method: method.as_str().to_string(),
                kind: self.plan.kind(),
                api: api_path.clone(),
                budget: if forced {
                    monthly
                } else {
                    monthly.saturating_sub(reserve)
                },
                day_cap: self.policy.max_clears_per_day,
                min_interval: if forced {
                    Duration::ZERO
                } else {
                    self.policy.min_interval
                },
            };
            let id = match engine
                .store_call({
                    let new = new.clone();
                    move |s| s.begin_attempt(&new)
                })
                .await
            {
                Ok(id) => id,
                Err(StoreError::BudgetExhausted { spent, budget }) => {
                    return End::Refused(format!(
                        "{spent} {} already counted this month; this clear may use at most {budget}",
                        if api_path.is_some() { "per-interface clears" } else { "clears" }
                    ));
                }
                Err(StoreError::GateClosed(why)) => return End::Refused(why),
                Err(e) => {
                    return End::Failed {
                        reason: format!("not sent: could not record the attempt: {e}"),
                        unknown: false,
                    }
                }
            };
            engine.record_attempt(&self.appid, attempt_row(id, &new));

            let answer = match (&self.plan, method, &token) {
                (Plan::Api(p), _, Some(t)) => self.client.clear_api_quota(t, p).await,
                (_, Method::Token, Some(t)) => self.client.clear_quota(t, &self.appid).await,
                _ => self.client.clear_quota_v2(&self.appid, &self.secret).await,
            };
            let settled_at = engine.clock().now();
            let settlement = match &answer {
                Ok(()) => Settlement {
                    outcome: AttemptOutcome::Ok,
                    errcode: Some(0),
                    detail: None,
                    at: settled_at,
                },
                Err(e) => Settlement {
                    outcome: if e.may_have_taken_effect() {
                        AttemptOutcome::Unknown
                    } else {
                        AttemptOutcome::Failed
                    },
                    errcode: e.errcode(),
                    detail: Some(e.to_string()),
                    at: settled_at,
                },
            };
            if let Err(e) = engine
                .store_call({
                    let s = settlement.clone();
                    move |store| store.settle_attempt(id, &s)
                })
                .await
            {
                // The row stays in flight, which counts as spent: safe, only pessimistic.
                error!(account = %self.name, error = %e, "could not settle a clear attempt; it stays counted as spent");
            }
            engine.record_settlement(&self.appid, id, &settlement);

            let e = match answer {
                Ok(()) => {
                    engine.after_clear(&self.appid, api_path.as_deref(), settled_at);
                    let what = match &api_path {
                        Some(p) => format!("{p} cleared via clearApiQuota"),
                        None => format!("cleared via {}", method.as_str()),
                    };
                    return End::Cleared(format!("{what} ({})", self.trigger));
                }
                Err(e) => e,
            };
            if settlement.outcome == AttemptOutcome::Unknown {
                // One decision spends at most one clear: never re-sent blindly.
                warn!(account = %self.name, error = %e, "clear outcome unknown; counted as spent, not re-sent");
                return End::Failed {
                    reason: format!("{e} (outcome unknown; counted as spent)"),
                    unknown: true,
                };
            }
            let not_applied = matches!(e, WechatError::Connect(_)) || e.errcode() == Some(-1);
            match e.action() {
                _ if not_applied && resends < MAX_RESENDS => {
                    resends += 1;
                    let pause = RESEND_PAUSE
                        .saturating_mul(1 << (resends - 1))
                        .mul_f64(0.75 + fastrand::f64() * 0.5);
                    info!(account = %self.name, error = %e, resend = resends, "the clear was not applied; sending it again");
                    engine.clock().sleep(pause).await;
                }
                Action::RenewToken if method == Method::Token && !renewed => {
                    renewed = true;
                    self.token.invalidate().await;
                }
                Action::MonthExhausted => {
                    let what = if api_path.is_some() {
                        "no per-interface clears left this month"
                    } else {
                        "no clears left this month; no further attempts until next month"
                    };
                    warn!(event = "exhausted", account = %self.name, kind = self.plan.kind().as_str(), "WeChat answered 48006: {what}");
                    return if api_path.is_some() {
                        End::ApiUnusable(format!("{e}: {what}"))
                    } else {
                        End::Refused(format!("{e}: {what}"))
                    };
                }
                Action::Misconfigured => return self.enter_error(engine, &e, "clearing"),
                _ if api_path.is_some() && is_api_refusal(e.errcode()) => {
                    warn!(event = "api_clear_refused", account = %self.name, api = api_path.as_deref().unwrap_or("-"), errcode = e.errcode(), "WeChat refused a per-interface clear of this path; it is cleared the whole-account way from now on");
                    return End::ApiUnusable(e.to_string());
                }
                _ => {
                    return End::Failed {
                        reason: e.to_string(),
                        unknown: false,
                    }
                }
            }
        }
    }

    /// A config-level error: the account stops clearing automatically until its config
    /// changes (recorded with the config's fingerprint, so it survives restarts).
    fn enter_error(&self, engine: &Engine, e: &WechatError, doing: &str) -> End {
        let message = format!(
            "{e} while {doing}; fix the account's config (appid, secret, IP whitelist) and reload"
        );
        let now = engine.clock().now();
        if let Err(se) = engine.store().set_account_error(
            &self.appid,
            &self.fingerprint,
            e.errcode(),
            &message,
            now,
        ) {
            error!(account = %self.name, error = %se, "could not record the account's error state");
        }
        {
            let mut st = engine.lock();
            if let Some(&i) = st.by_appid.get(&self.appid) {
                st.accounts[i].error = Some(AccountError {
                    errcode: e.errcode(),
                    message: message.clone(),
                    at: now,
                });
            }
        }
        error!(event = "account_error", account = %self.name, errcode = e.errcode(), reason = %message, "account in error: automatic clears stopped");
        engine
            .alerts()
            .send(AlertEvent::AccountError, &self.name, &message, now);
        End::Error(message)
    }
}

fn failed(reason: String) -> ClearResult {
    ClearResult {
        outcome: ClearOutcome::Failed,
        reason,
    }
}

fn attempt_row(id: i64, a: &NewAttempt) -> Attempt {
    Attempt {
        id,
        appid: a.appid.clone(),
        account: a.account.clone(),
        started_at: a.at,
        finished_at: None,
        trigger: a.trigger.clone(),
        reason: a.reason.clone(),
        method: a.method.clone(),
        outcome: AttemptOutcome::InFlight,
        errcode: None,
        detail: None,
        kind: a.kind,
        api: a.api.clone(),
    }
}

impl Engine {
    /// Runs a store call on a blocking thread (SQLite and its fsync never block an
    /// async worker).
    pub(super) async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let engine = self.clone();
        match tokio::task::spawn_blocking(move || f(engine.store())).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::GateClosed(format!(
                "the state database call did not finish: {e}"
            ))),
        }
    }

    fn record_attempt(&self, appid: &str, a: Attempt) {
        let mut st = self.lock();
        if let Some(&i) = st.by_appid.get(appid) {
            st.accounts[i].attempts.push(a);
        }
    }

    fn record_settlement(&self, appid: &str, id: i64, s: &Settlement) {
        let mut st = self.lock();
        if let Some(&i) = st.by_appid.get(appid) {
            let family = match st.accounts[i].attempts.iter().find(|a| a.id == id) {
                Some(a) if a.kind == crate::store::ClearKind::Api => {
                    &self.metrics().api_clear_attempts
                }
                _ => &self.metrics().clear_attempts,
            };
            family
                .get_or_create(&crate::metrics::AccountOutcome {
                    account: st.accounts[i].cfg.name.clone(),
                    outcome: s.outcome.as_str().to_string(),
                })
                .inc();
            if let Some(a) = st.accounts[i].attempts.iter_mut().find(|a| a.id == id) {
                a.outcome = s.outcome;
                a.errcode = s.errcode;
                a.detail = s.detail.clone();
                a.finished_at = Some(s.at);
            }
        }
    }

    /// What a decision's end does to the account: a success or a gate resets the
    /// back-off; a failure extends it (1 min doubling to 1 h); an unknown outcome is
    /// left for the next decision's first read to explain.
    fn settle_decision(&self, appid: &str, end: &End) {
        let now = self.clock().now();
        let mut st = self.lock();
        let Some(&i) = st.by_appid.get(appid) else {
            return;
        };
        let acct = &mut st.accounts[i];
        match end {
            End::Cleared(_) => {
                acct.failures = 0;
                acct.backoff_until = None;
                acct.unconfirmed = false;
            }
            End::Failed { unknown, .. } => {
                acct.failures = acct.failures.saturating_add(1);
                let wait = policy::backoff(acct.failures);
                acct.backoff_until =
                    Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                acct.unconfirmed |= *unknown;
                info!(event = "backoff", account = %acct.cfg.name, failures = acct.failures, wait_s = wait.as_secs(), "failed clear: no automatic attempt for a while");
            }
            End::Refused(_) | End::ApiUnusable(_) | End::Error(_) => {}
        }
        acct.prune_attempts(now);
    }

    /// Applies a getApiQuota read made at the start of a decision. When an earlier
    /// clear's outcome was unknown and WeChat now shows room below the threshold, that
    /// clear took effect: the counters start again (no new clear is spent).
    fn first_read(&self, appid: &str, name: &str, path: &str, q: ApiQuota) {
        let now = self.clock().now();
        let mut st = self.lock();
        let Some(&i) = st.by_appid.get(appid) else {
            return;
        };
        let acct = &mut st.accounts[i];
        acct.polled.insert(
            path.to_string(),
            super::account::Polled {
                at: now,
                day: crate::time::day_of(now),
                used: q.used,
                daily_limit: q.daily_limit,
                remain: q.remain,
            },
        );
        if acct.unconfirmed {
            acct.unconfirmed = false;
            let below = q.daily_limit > 0
                && (q.used as f64) < acct.cfg.policy.threshold * q.daily_limit as f64
                && q.remain > 0;
            if below {
                info!(event = "clear_confirmed", account = name, api = path, used = q.used, "WeChat's counter shows the earlier clear of unknown outcome took effect; counters start again");
                acct.reset_counters(None);
            }
        }
    }

    /// The decision again, for a job already in flight (its own in-flight flag does not
    /// hold it). `api_unusable`: plan the whole account (per-interface clear refused or
    /// impossible now). `None` when the account is gone.
    fn redecide(&self, appid: &str, trigger: &Trigger, api_unusable: bool) -> Option<Decision> {
        let now = self.clock().now();
        let st = self.lock();
        let &i = st.by_appid.get(appid)?;
        let acct = &st.accounts[i];
        let statuses = acct.quotas();
        let quotas: Vec<_> = statuses.iter().map(|q| q.view()).collect();
        let view = super::account::view(acct, &quotas, st.config.daemon.dry_run, false, now);
        let decision = match trigger {
            Trigger::Manual { force, reason } => {
                policy::decide_manual(&view, *force, reason.clone(), None, now)
            }
            _ => match policy::due(&view) {
                policy::Due::Yes { trigger, fixable } => {
                    let plan = if api_unusable {
                        Plan::Account
                    } else {
                        policy::plan(&view, &fixable)
                    };
                    match policy::gate(&view, &plan, false, now) {
                        None => Decision::Clear(trigger, plan),
                        Some(h) => Decision::Hold(trigger, h),
                    }
                }
                policy::Due::Unfixable(t, h) => Decision::Hold(t, h),
                policy::Due::No => Decision::NotDue,
            },
        };
        if !matches!(decision, Decision::Clear(..)) {
            super::log_decision(&self.inner.decisions, &acct.cfg.name, &decision, &view, now);
        }
        Some(decision)
    }

    /// A clear took effect: the account's counters (or the one interface's) start again
    /// at zero, then a flush writes the zeros (after any flush of older values, so a
    /// racing flush cannot write pre-clear counts back), and a check that WeChat's did
    /// too is scheduled.
    fn after_clear(&self, appid: &str, api: Option<&str>, at: crate::time::Timestamp) {
        let mut st = self.lock();
        let Some(&i) = st.by_appid.get(appid) else {
            return;
        };
        st.roll_all(at);
        let before: std::collections::HashMap<String, u64> = st.accounts[i]
            .quotas()
            .into_iter()
            .map(|q| (q.paths[0].clone(), q.wechat.unwrap_or(q.used)))
            .collect();
        st.accounts[i].reset_counters(api);
        drop(st);
        let engine = self.clone();
        let appid = appid.to_string();
        let only = api.map(str::to_string);
        self.track(tokio::spawn(async move {
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(err) = e.flush() {
                    warn!(error = %err, "could not write the cleared counters; the next flush will");
                }
            })
            .await;
            engine.check_after_clear(appid, before, only).await
        }));
    }
}
