//! What the counting proxy asks of the engine beyond reports (SPEC §7): to report a
//! 45009 and wait for the clear it triggered (concurrent callers share one clear), and
//! the accounts' stable tokens for the central token server.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{Engine, Report, ReportError, Reported, Target};
use crate::config::Secret;
use crate::time::{day_of, Timestamp};
use crate::wechat::{IssuedToken, WechatError};

/// WeChat's limits on `force_refresh` of the stable token (WECHAT.md).
const FORCE_PER_DAY: u32 = 20;
const FORCE_GAP_SECS: i64 = 30;

/// The clears of one account that ended, as waiters see them.
#[derive(Debug, Clone, Copy, Default)]
struct Ended {
    /// How many clears of the account have ended since the daemon started.
    count: u64,
    /// Whether the latest one cleared.
    cleared: bool,
    /// When the latest clear that worked ended.
    last_cleared_at: Option<tokio::time::Instant>,
}

/// Per account (by appid): a watch of the clears that ended, and forced token refreshes.
#[derive(Default)]
pub(super) struct ProxyState {
    /// A std mutex: held only to look up or insert, never across an await.
    ended: Mutex<HashMap<String, watch::Sender<Ended>>>,
    /// (WeChat day, forced refreshes that day, the last one) by appid.
    forced: Mutex<HashMap<String, (chrono::NaiveDate, u32, Timestamp)>>,
}

impl ProxyState {
    fn subscribe(&self, appid: &str) -> watch::Receiver<Ended> {
        let mut map = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(appid.to_string())
            .or_insert_with(|| watch::channel(Ended::default()).0)
            .subscribe()
    }

    /// A clear of `appid` ended (the hook in the clear path).
    pub(super) fn clear_ended(&self, appid: &str, cleared: bool) {
        let map = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(appid) {
            tx.send_modify(|e| {
                e.count += 1;
                e.cleared = cleared;
                if cleared {
                    e.last_cleared_at = Some(tokio::time::Instant::now());
                }
            });
        }
    }
}

/// A wait for the end of the clear a 45009 triggered (or one already in flight).
pub struct ClearWait {
    rx: watch::Receiver<Ended>,
    seen: u64,
}

impl ClearWait {
    /// Resolves when the clear ends: `true` when it cleared.
    pub async fn cleared(mut self) -> bool {
        let seen = self.seen;
        match self.rx.wait_for(|e| e.count > seen).await {
            Ok(e) => e.cleared,
            Err(_) => false,
        }
    }
}

impl Engine {
    /// Reports a 45009 for `api` exactly like `POST /v1/report` does, so the engine
    /// decides at once; returns a wait for the clear that is then in flight for the
    /// account (the one this started, or one already running), or `None` when no clear
    /// is coming.
    pub fn report_blocked(&self, appid: &str, api: &str) -> Result<Option<ClearWait>, ReportError> {
        let rx = self.inner.proxy.subscribe(appid);
        let seen = rx.borrow().count;
        self.report(&[Report {
            target: Target::Appid(appid.to_string()),
            api: api.to_string(),
            what: Reported::Errcode(45009),
        }])?;
        let in_flight = {
            let st = self.lock();
            st.in_flight.contains_key(appid)
        };
        let ended_since = rx.borrow().count > seen;
        Ok((in_flight || ended_since).then_some(ClearWait { rx, seen }))
    }

    /// When the account's latest clear that worked ended (this process's clock).
    pub fn last_cleared_at(&self, appid: &str) -> Option<tokio::time::Instant> {
        self.inner.proxy.subscribe(appid).borrow().last_cleared_at
    }

    /// Whether `given` is the AppSecret of the configured account with `appid`
    /// (compared in constant time); `None` when no account has that appid.
    pub fn secret_matches(&self, appid: &str, given: &str) -> Option<bool> {
        use subtle::ConstantTimeEq;
        let config = self.config();
        let account = config.accounts.iter().find(|a| a.appid == appid)?;
        Some(bool::from(
            account.secret.expose().as_bytes().ct_eq(given.as_bytes()),
        ))
    }

    /// The account's stable token from the engine's cache (the one clears and polls
    /// use), fetched from WeChat when there is none. With `force`, a new one, but only
    /// within WeChat's limits (30 s apart, 20 a day); past them, the cached one.
    /// `None` when no account has that appid.
    pub async fn proxy_token(
        &self,
        appid: &str,
        force: bool,
    ) -> Option<Result<IssuedToken, WechatError>> {
        let now = self.clock().now();
        let (client, cache, secret) = {
            let st = self.lock();
            let acct = &st.accounts[*st.by_appid.get(appid)?];
            (
                st.client.clone(),
                acct.token.clone(),
                acct.cfg.secret.clone(),
            )
        };
        let force = force && self.may_force(appid, now);
        Some(cache.issue(&client, appid, &secret, now, force).await)
    }

    /// After WeChat refused `bad` (40001, 42001): a token other than `bad`, or `None`
    /// when WeChat hands out the same one again (or none).
    pub async fn renew_token(&self, appid: &str, bad: &Secret) -> Option<Secret> {
        let cache = {
            let st = self.lock();
            st.accounts[*st.by_appid.get(appid)?].token.clone()
        };
        cache.invalidate_if(bad).await;
        match self.proxy_token(appid, false).await? {
            Ok(t) if &t.token != bad => Some(t.token),
            _ => None,
        }
    }

    /// Counts one forced refresh if WeChat's limits allow it now.
    fn may_force(&self, appid: &str, now: Timestamp) -> bool {
        let mut forced = self
            .inner
            .proxy
            .forced
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let today = day_of(now);
        let entry =
            forced
                .entry(appid.to_string())
                .or_insert((today, 0, now - chrono::Duration::days(1)));
        if entry.0 != today {
            *entry = (today, 0, entry.2);
        }
        if entry.1 >= FORCE_PER_DAY || (now - entry.2).num_seconds() < FORCE_GAP_SECS {
            return false;
        }
        entry.1 += 1;
        entry.2 = now;
        true
    }
}
