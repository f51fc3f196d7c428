//! Reading WeChat's own counters (getApiQuota): which paths, paced how, and what each
//! answer does to the account. Also the check after a clear that WeChat really reset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::account::Polled;
use super::Engine;
use crate::config::Secret;
use crate::time::day_of;
use crate::wechat::{Action, ApiQuota, TokenCache, WechatError};

/// How long after a successful clear the watched paths are read again.
pub const CHECK_AFTER_CLEAR: Duration = Duration::from_secs(2);

/// Between two reads of the check after a clear: spaced, not a burst.
const CHECK_GAP: Duration = Duration::from_millis(100);

/// One account's share of a polling round.
pub struct PollJob {
    pub appid: String,
    pub name: String,
    secret: Secret,
    token: Arc<TokenCache>,
    pub paths: Vec<String>,
}

/// What one answer means for the rest of the account's round.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    /// Back off: skip the account's remaining paths this round.
    SkipAccount,
}

impl Engine {
    /// This round's work: every account not in error, with its paths. An account that
    /// is skipped is logged once, not every round.
    pub fn poll_plan(&self) -> Vec<PollJob> {
        let apis = self.config().poll.apis.clone();
        let mut st = self.lock();
        let mut jobs = Vec::new();
        for acct in st.accounts.iter_mut() {
            if acct.error.is_some() {
                if acct.poll_skip.as_deref() != Some("error") {
                    info!(account = %acct.cfg.name, "not polling WeChat's counters: the account is in error");
                    acct.poll_skip = Some("error".into());
                }
                continue;
            }
            if acct.poll_skip.as_deref() == Some("error") {
                acct.poll_skip = None;
            }
            let paths = acct.poll_paths(&apis);
            if paths.is_empty() {
                continue;
            }
            jobs.push(PollJob {
                appid: acct.cfg.appid.clone(),
                name: acct.cfg.name.clone(),
                secret: acct.cfg.secret.clone(),
                token: acct.token.clone(),
                paths,
            });
        }
        jobs
    }

    /// One round: every planned request, spread evenly over `interval` so neither one
    /// account's paths nor all accounts fire in a burst. N accounts × M paths cost
    /// N×M requests per round and no more.
    pub async fn poll_round(&self, interval: Duration) {
        let jobs = self.poll_plan();
        let total: usize = jobs.iter().map(|j| j.paths.len()).sum();
        if total == 0 {
            return;
        }
        let gap = interval / total as u32;
        for job in jobs {
            let n = job.paths.len();
            let done = self.poll_account(&job, gap).await;
            // Keep the pace for the requests a skipped account did not make.
            if done < n {
                self.clock().sleep(gap * (n - done) as u32).await;
            }
        }
    }

    /// Polls `job`'s paths `gap` apart; returns how many requests were made.
    async fn poll_account(&self, job: &PollJob, gap: Duration) -> usize {
        let client = self.lock().client.clone();
        let now = self.clock().now();
        let token = match job.token.get(&client, &job.appid, &job.secret, now).await {
            Ok(t) => {
                self.set_poll_skip(&job.appid, None);
                t
            }
            Err(e) => {
                self.set_poll_skip(&job.appid, Some(format!("no access token: {e}")));
                return 0;
            }
        };
        let mut made = 0;
        for path in &job.paths {
            if made > 0 {
                self.clock().sleep(gap).await;
            }
            let answer = client.get_api_quota(&token, path).await;
            made += 1;
            if self.record_poll(job, path, answer).await == Next::SkipAccount {
                break;
            }
        }
        made
    }

    /// Logs why an account is skipped, once per change of reason.
    fn set_poll_skip(&self, appid: &str, why: Option<String>) {
        let mut st = self.lock();
        let Some(&i) = st.by_appid.get(appid) else {
            return;
        };
        let acct = &mut st.accounts[i];
        if acct.poll_skip != why {
            if let Some(w) = &why {
                warn!(account = %acct.cfg.name, reason = %w, "not polling WeChat's counters this round");
            }
            acct.poll_skip = why;
        }
    }

    /// Applies one getApiQuota answer, then decides for the account (WeChat's count
    /// may make it due).
    async fn record_poll(
        &self,
        job: &PollJob,
        path: &str,
        answer: Result<ApiQuota, WechatError>,
    ) -> Next {
        let now = self.clock().now();
        match answer {
            Ok(q) => {
                let mut st = self.lock();
                let Some(&i) = st.by_appid.get(&job.appid) else {
                    return Next::SkipAccount;
                };
                let acct = &mut st.accounts[i];
                acct.polls_today += 1;
                acct.polled.insert(
                    path.to_string(),
                    Polled {
                        at: now,
                        day: day_of(now),
                        used: q.used,
                        daily_limit: q.daily_limit,
                        remain: q.remain,
                    },
                );
                self.decide_and_start(&mut st, i, now);
                Next::Continue
            }
            Err(e) => {
                let disabled = {
                    let mut st = self.lock();
                    let Some(&i) = st.by_appid.get(&job.appid) else {
                        return Next::SkipAccount;
                    };
                    let acct = &mut st.accounts[i];
                    acct.polls_today += 1;
                    match e.errcode() {
                        Some(code @ (76021 | 76022)) => {
                            let why = if code == 76021 {
                                "WeChat does not know this path"
                            } else {
                                "no permission to read this path's quota"
                            };
                            warn!(account = %acct.cfg.name, api = path, errcode = code, "{why} (getApiQuota {code}): no longer polling it");
                            acct.poll_disabled.insert(path.to_string(), code);
                            true
                        }
                        _ => false,
                    }
                };
                if disabled {
                    return Next::Continue;
                }
                if e.action() == Action::RenewToken {
                    job.token.invalidate().await;
                }
                self.set_poll_skip(&job.appid, Some(format!("getApiQuota failed: {e}")));
                Next::SkipAccount
            }
        }
    }

    /// After a successful clear: read the watched paths (`only`'s for a per-interface
    /// clear) once more and say whether WeChat's count really went back to zero.
    /// `before` holds each path's count just before the clear. A path counts as not
    /// reset when WeChat still shows at least half of it, and more than 1 % of its
    /// limit; it then never triggers again that day.
    pub(super) async fn check_after_clear(
        &self,
        appid: String,
        before: HashMap<String, u64>,
        only: Option<String>,
    ) {
        let interval = self.config().poll.interval;
        if interval.is_zero() {
            return;
        }
        self.clock().sleep(CHECK_AFTER_CLEAR).await;
        let job = {
            let apis = self.config().poll.apis.clone();
            let st = self.lock();
            let Some(&i) = st.by_appid.get(&appid) else {
                return;
            };
            let acct = &st.accounts[i];
            PollJob {
                appid: appid.clone(),
                name: acct.cfg.name.clone(),
                secret: acct.cfg.secret.clone(),
                token: acct.token.clone(),
                paths: match &only {
                    Some(p) => vec![p.clone()],
                    None => acct.poll_paths(&apis),
                },
            }
        };
        let client = self.lock().client.clone();
        let now = self.clock().now();
        let Ok(token) = job.token.get(&client, &appid, &job.secret, now).await else {
            warn!(account = %job.name, "could not check the clear: no access token");
            return;
        };
        let mut not_reset = Vec::new();
        let mut checked = 0;
        for (i, path) in job.paths.iter().enumerate() {
            if i > 0 {
                self.clock().sleep(CHECK_GAP).await;
            }
            let answer = client.get_api_quota(&token, path).await;
            let Ok(q) = answer else { continue };
            checked += 1;
            let was = before.get(path).copied().unwrap_or(0);
            if was > 0 && q.used * 2 >= was && q.used * 100 > q.daily_limit {
                warn!(event = "not_reset", account = %job.name, api = %path, before = was, after = q.used, "WeChat did not reset this interface's count at the clear");
                not_reset.push(path.clone());
                // Marked before the count is applied: WeChat's count must not make the
                // path due for another clear that cannot help.
                let mut st = self.lock();
                if let Some(&i) = st.by_appid.get(&appid) {
                    let acct = &mut st.accounts[i];
                    if !acct.not_reset.contains(path) {
                        acct.not_reset.push(path.clone());
                    }
                }
            }
            let _ = self.record_poll(&job, path, Ok(q)).await;
        }
        if not_reset.is_empty() {
            info!(event = "clear_checked", account = %job.name, paths = checked, "WeChat's counts went back to zero");
        }
    }
}
