//! Running one clear: token or AppSecret, write-ahead ledger rows, retries with backoff
//! and jitter, settlement, and what each outcome does to the account (SPEC §5, §6).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::account::AccountError;
use super::{Engine, State};
use crate::config::{AlertEvent, ClearVia, Secret};
use crate::policy::Trigger;
use crate::store::{Attempt, AttemptOutcome, NewAttempt, Settlement, StoreError};
use crate::time::day_of;
use crate::wechat::{Action, TokenCache, WechatClient, WechatError};

/// Transient failures (-1, 5xx, timeouts, unreadable answers) retried per clear.
const MAX_RETRIES: u32 = 3;
/// First backoff; doubles each retry, ±25 % jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(8);

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

/// Everything one clear needs, copied out of the state so the lock is not held
/// across requests.
pub(super) struct Job {
    name: String,
    appid: String,
    secret: Secret,
    via: ClearVia,
    fingerprint: String,
    /// Spent attempts this month may not go past this (monthly, less the reserve
    /// unless forced).
    budget: u32,
    trigger: Trigger,
    client: WechatClient,
    token: Arc<TokenCache>,
}

/// Clears the account's in-flight flag however the job ends (even if cancelled).
struct InFlightGuard {
    engine: Engine,
    appid: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut st = self.engine.lock();
        if let Some(&i) = st.by_appid.get(&self.appid) {
            st.accounts[i].in_flight = false;
        }
    }
}

impl Job {
    /// Marks account `idx` in flight and captures what the clear needs.
    pub(super) fn start(st: &mut State, idx: usize, trigger: Trigger) -> Job {
        let client = st.client.clone();
        let acct = &mut st.accounts[idx];
        acct.in_flight = true;
        let p = &acct.cfg.policy;
        let budget = if trigger.is_forced() {
            p.monthly_clears
        } else {
            p.monthly_clears.saturating_sub(p.reserve)
        };
        Job {
            name: acct.cfg.name.clone(),
            appid: acct.cfg.appid.clone(),
            secret: acct.cfg.secret.clone(),
            via: acct.cfg.clear_via,
            fingerprint: acct.cfg.fingerprint(),
            budget,
            trigger,
            client,
            token: acct.token.clone(),
        }
    }

    /// Runs the clear to its end and applies the outcome to the account.
    pub(super) async fn run(self, engine: Engine) -> ClearResult {
        let _guard = InFlightGuard {
            engine: engine.clone(),
            appid: self.appid.clone(),
        };
        let result = self.attempt_until_done(&engine).await;
        // Wakes proxied calls holding a 45009 for this clear.
        engine
            .inner
            .proxy
            .clear_ended(&self.appid, result.outcome == ClearOutcome::Cleared);
        self.alert(&engine, &result);
        match result.outcome {
            ClearOutcome::Cleared => {
                info!(event = "cleared", account = %self.name, trigger = self.trigger.kind(), reason = %self.trigger, "{}", result.reason)
            }
            ClearOutcome::Refused => {
                info!(event = "clear_refused", account = %self.name, trigger = self.trigger.kind(), reason = %result.reason, "clear refused")
            }
            ClearOutcome::Failed => {
                warn!(event = "clear_failed", account = %self.name, trigger = self.trigger.kind(), reason = %result.reason, "clear failed")
            }
        }
        result
    }

    /// Tells people what the clear came to, and what it leaves of the budget.
    fn alert(&self, engine: &Engine, result: &ClearResult) {
        let now = engine.clock().now();
        let alerts = engine.alerts();
        let (left, reserve) = engine.clears_left(&self.appid).unwrap_or((0, 0));
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

    async fn attempt_until_done(&self, engine: &Engine) -> ClearResult {
        let mut method = match self.via {
            ClearVia::AppSecret => Method::AppSecret,
            ClearVia::Token | ClearVia::Auto => Method::Token,
        };
        let mut retries = 0u32;
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
                        match (self.via, e.action()) {
                            (_, Action::Misconfigured) => {
                                return self.enter_error(engine, &e, "getting a token");
                            }
                            (ClearVia::Auto, _) => {
                                info!(account = %self.name, "no token to be had: falling back to clear_quota/v2 (AppSecret)");
                                method = Method::AppSecret;
                                continue;
                            }
                            (_, Action::Retry) if retries < MAX_RETRIES => {
                                retries += 1;
                                tokio::time::sleep(backoff(retries)).await;
                                continue;
                            }
                            _ => return failed(format!("no access token: {e}")),
                        }
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
                budget: self.budget,
            };
            let id = match engine.store().begin_attempt(&new) {
                Ok(id) => id,
                Err(StoreError::BudgetExhausted { spent, budget }) => {
                    return ClearResult {
                        outcome: ClearOutcome::Refused,
                        reason: format!(
                            "{spent} clears already counted this month; this clear may use at most {budget}"
                        ),
                    };
                }
                Err(e) => return failed(format!("not sent: could not record the attempt: {e}")),
            };
            engine.record_attempt(&self.appid, attempt_row(id, &new));

            let answer = match (method, &token) {
                (Method::Token, Some(t)) => self.client.clear_quota(t, &self.appid).await,
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
            if let Err(e) = engine.store().settle_attempt(id, &settlement) {
                // The row stays in flight, which counts as spent: safe, only pessimistic.
                error!(account = %self.name, error = %e, "could not settle a clear attempt; it stays counted as spent");
            }
            engine.record_settlement(&self.appid, id, &settlement);

            let e = match answer {
                Ok(()) => {
                    engine.after_clear(&self.appid, settled_at);
                    return ClearResult {
                        outcome: ClearOutcome::Cleared,
                        reason: format!("cleared via {} ({})", method.as_str(), self.trigger),
                    };
                }
                Err(e) => e,
            };
            if settlement.outcome == AttemptOutcome::Unknown {
                warn!(account = %self.name, error = %e, "clear outcome unknown; counted as spent");
            }
            match e.action() {
                Action::Retry if retries < MAX_RETRIES => {
                    retries += 1;
                    let wait = backoff(retries);
                    info!(account = %self.name, error = %e, retry = retries, wait_ms = wait.as_millis() as u64, "clear failed transiently; retrying");
                    tokio::time::sleep(wait).await;
                }
                Action::RenewToken if method == Method::Token && !renewed => {
                    renewed = true;
                    self.token.invalidate().await;
                }
                Action::MonthExhausted => {
                    warn!(event = "exhausted", account = %self.name, "WeChat answered 48006: no clears left this month; no further attempts until next month");
                    return failed(format!("{e}: no clears left this month"));
                }
                Action::Misconfigured => return self.enter_error(engine, &e, "clearing"),
                _ => return failed(e.to_string()),
            }
        }
    }

    /// A config-level error: the account stops clearing automatically until its config
    /// changes (recorded with the config's fingerprint, so it survives restarts).
    fn enter_error(&self, engine: &Engine, e: &WechatError, doing: &str) -> ClearResult {
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
        failed(message)
    }
}

fn failed(reason: String) -> ClearResult {
    ClearResult {
        outcome: ClearOutcome::Failed,
        reason,
    }
}

/// Backoff before retry `n` (1-based): base × 2^(n-1), capped, ±25 % jitter.
fn backoff(n: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1 << (n - 1).min(10));
    let d = exp.min(BACKOFF_CAP);
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
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
    }
}

impl Engine {
    fn record_attempt(&self, appid: &str, a: Attempt) {
        let mut st = self.lock();
        if let Some(&i) = st.by_appid.get(appid) {
            st.accounts[i].attempts.push(a);
        }
    }

    fn record_settlement(&self, appid: &str, id: i64, s: &Settlement) {
        let mut st = self.lock();
        if let Some(&i) = st.by_appid.get(appid) {
            self.metrics()
                .clear_attempts
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

    /// A clear took effect: the account's counters start again at zero, and a check
    /// that WeChat's did too is scheduled.
    fn after_clear(&self, appid: &str, at: crate::time::Timestamp) {
        {
            let mut st = self.lock();
            if let Some(&i) = st.by_appid.get(appid) {
                st.roll_all(at);
                let before: std::collections::HashMap<String, u64> = st.accounts[i]
                    .quotas()
                    .into_iter()
                    .map(|q| (q.paths[0].clone(), q.wechat.unwrap_or(q.used)))
                    .collect();
                st.accounts[i].reset_counters();
                st.accounts[i].not_reset.clear();
                let engine = self.clone();
                let appid = appid.to_string();
                tokio::spawn(async move { engine.check_after_clear(appid, before).await });
            }
        }
        if let Err(e) = self.store().reset_usage(appid, day_of(at)) {
            warn!(error = %e, "could not reset stored counters; the next flush will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let b1 = backoff(1);
            assert!(b1 >= Duration::from_millis(375) && b1 <= Duration::from_millis(625));
            assert!(backoff(10) <= BACKOFF_CAP.mul_f64(1.25));
        }
    }
}
