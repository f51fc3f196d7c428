//! The one place that wires the parts: reports and ticks update account state, the
//! policy decides, the WeChat client clears, the store records. Cheap-to-clone handle.

mod account;
mod clear;
pub mod decisions;
mod poll;
mod proxy;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{debug, info, warn};

pub use clear::{ClearOutcome, ClearResult, InFlightWait};
pub use decisions::{DecisionEvent, DecisionLog};
pub use proxy::ClearWait;
pub use status::StatusDoc;

use crate::config::{Account, Config};
use crate::policy::{self, AccountView, Decision};
use crate::store::{Store, StoreError, UsageRow};
use crate::time::{start_of_month, Clock, Timestamp};
use crate::wechat::WechatClient;
use account::{AccountError, AccountRuntime, PathCount, MAX_PATHS_PER_ACCOUNT};

/// Days of stored counters kept before the daily prune drops them: a month and a few
/// days, so last month's traffic can still be read (and replayed) from the state file.
const USAGE_KEPT_DAYS: u64 = 35;

/// How often a held decision may be logged again when nothing about it changed.
const HOLD_LOG_EVERY: Duration = Duration::from_secs(600);

/// One usage report, already checked for shape (the API layer's job).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub target: Target,
    /// Normalised API path.
    pub api: String,
    pub what: Reported,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Account(String),
    Appid(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reported {
    /// Calls made (1 to 1,000,000,000).
    Calls(u64),
    /// A WeChat errcode seen; only 45009 can trigger a clear.
    Errcode(i64),
}

/// Why a batch of reports was refused (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("item {index}: no account {what}")]
    UnknownAccount { index: usize, what: String },
    #[error("item {index}: account {account:?} already counts {MAX_PATHS_PER_ACCOUNT} distinct API paths today")]
    TooManyPaths { index: usize, account: String },
}

/// The daemon's core. Clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    /// The same `Arc` as `State::config`, readable without the state lock.
    config: std::sync::RwLock<Arc<Config>>,
    metrics: crate::metrics::Metrics,
    alerts: crate::alerts::Alerter,
    store: Store,
    /// Every clear task spawned, so shutdown can wait for them.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A std mutex: every critical section is short and never awaits.
    state: Mutex<State>,
    /// Held for a whole flush (see [`Engine::flush`]).
    flushing: Mutex<()>,
    /// `[daemon] traffic_log`: every reported call, by minute, for `wxquotad replay`.
    /// Taken after the state lock, never before it.
    traffic: Mutex<Option<crate::replay::record::Recorder>>,
    /// The latest decision events (`GET /v1/decisions`).
    decisions: DecisionLog,
    /// What the counting proxy waits on (clears ending) and its forced token refreshes.
    proxy: proxy::ProxyState,
    /// Third-party platforms' token caches and discovery state (SPEC §8).
    platforms: crate::platform::Platforms,
}

struct State {
    config: Arc<Config>,
    client: WechatClient,
    accounts: Vec<AccountRuntime>,
    by_name: HashMap<String, usize>,
    by_appid: HashMap<String, usize>,
    /// Rows of days that ended before they were flushed.
    pending: Vec<UsageRow>,
    /// The day every account was last rolled to.
    rolled_to: Option<chrono::NaiveDate>,
    /// Clears under way, by appid: in-flight state belongs to the WeChat account, not
    /// to a config generation, so removing and re-adding an account by two reloads
    /// while its clear is in flight cannot start a second one.
    in_flight: HashMap<String, clear::InFlight>,
    /// The day old usage rows were last pruned.
    pruned_on: Option<chrono::NaiveDate>,
}

impl Engine {
    /// Builds the engine from a validated config and an open store, loading today's
    /// counters, this and last month's ledger, and accounts left in `error`.
    pub fn new(config: Config, store: Store, clock: Clock) -> Result<Engine, StoreError> {
        let now = clock.now();
        let metrics = crate::metrics::Metrics::default();
        let client = observed_client(&config, &metrics);
        let mut state = State {
            config: Arc::new(config.clone()),
            client,
            accounts: Vec::new(),
            by_name: HashMap::new(),
            by_appid: HashMap::new(),
            pending: Vec::new(),
            rolled_to: None,
            in_flight: HashMap::new(),
            pruned_on: None,
        };
        let mut old = HashMap::new();
        let fresh = load_accounts(&store, &config.accounts, &mut old, now)?;
        state.set_accounts(fresh);
        Ok(Engine {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(state.config.clone()),
                clock,
                metrics,
                alerts: crate::alerts::Alerter::new(config.alerts.clone()),
                store,
                tasks: Mutex::new(Vec::new()),
                state: Mutex::new(state),
                flushing: Mutex::new(()),
                traffic: Mutex::new(recorder(&config)),
                decisions: DecisionLog::default(),
                proxy: proxy::ProxyState::default(),
                platforms: crate::platform::Platforms::default(),
            }),
        })
    }

    /// Third-party platforms: tokens, discovery (SPEC §8).
    pub fn platforms(&self) -> &crate::platform::Platforms {
        &self.inner.platforms
    }

    /// The latest decision events, newest first.
    pub fn decisions(&self, limit: usize) -> Vec<DecisionEvent> {
        self.inner.decisions.latest(limit)
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    pub fn alerts(&self) -> &crate::alerts::Alerter {
        &self.inner.alerts
    }

    /// Account and per-interface clears left this month for `appid` (0, 0 when the
    /// account is gone).
    pub(crate) fn budgets_left(&self, appid: &str) -> (u32, u32) {
        let now = self.inner.clock.now();
        let st = self.lock();
        let Some(&i) = st.by_appid.get(appid) else {
            return (0, 0);
        };
        let acct = &st.accounts[i];
        let view = account::view(acct, &[], false, false, now);
        (view.clears_left(), view.api_clears_left())
    }

    /// The clear in flight for `appid`, if one is: its outcome can be awaited
    /// (e.g. by the proxy holding a 45009 answer).
    pub fn clear_in_flight(&self, appid: &str) -> Option<InFlightWait> {
        let st = self.lock();
        st.in_flight
            .get(appid)
            .map(|tx| InFlightWait::new(tx.subscribe()))
    }

    /// Waits until no clear task (nor its follow-up check) is running. For tests and
    /// tools driving the engine directly.
    pub async fn idle(&self) {
        loop {
            let tasks: Vec<_> =
                std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The config in force. Its own lock, so the API's token check and readers do not
    /// contend with reports for the state.
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch of reports all or nothing, then decides for every account it
    /// touched (clears start in the background). Returns the number applied.
    pub fn report(&self, items: &[Report]) -> Result<usize, ReportError> {
        let now = self.inner.clock.now();
        let mut st = self.lock();
        st.roll_all(now);
        // Resolve and check everything before changing anything.
        let mut targets = Vec::with_capacity(items.len());
        // Distinct new paths per account: a batch naming one new path 5,000 times adds
        // one path, not 5,000 (issue 9 item 11).
        let mut new_paths: HashMap<usize, std::collections::HashSet<&str>> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let idx = match &item.target {
                Target::Account(n) => st.by_name.get(n),
                Target::Appid(a) => st.by_appid.get(a),
            };
            let Some(&idx) = idx else {
                let what = match &item.target {
                    Target::Account(n) => format!("named {n:?}"),
                    Target::Appid(a) => format!("with appid {a:?}"),
                };
                return Err(ReportError::UnknownAccount { index, what });
            };
            let acct = &st.accounts[idx];
            if !acct.usage.contains_key(&item.api) {
                let new = new_paths.entry(idx).or_default();
                new.insert(item.api.as_str());
                if acct.usage.len() + new.len() > MAX_PATHS_PER_ACCOUNT {
                    return Err(ReportError::TooManyPaths {
                        index,
                        account: acct.cfg.name.clone(),
                    });
                }
            }
            targets.push(idx);
        }
        let mut touched: Vec<usize> = Vec::new();
        for (item, &idx) in items.iter().zip(&targets) {
            let acct = &mut st.accounts[idx];
            match item.what {
                Reported::Calls(n) => {
                    let c = path_count(&mut acct.usage, &item.api);
                    c.calls = c.calls.saturating_add(n);
                    c.note_recent(now, n);
                    c.dirty = true;
                }
                Reported::Errcode(45009) => {
                    let c = path_count(&mut acct.usage, &item.api);
                    if !c.blocked {
                        info!(event = "blocked", account = %acct.cfg.name, api = %item.api, "reported 45009 (daily limit reached)");
                        c.blocked_at = Some(now);
                    }
                    c.blocked = true;
                    c.dirty = true;
                }
                Reported::Errcode(45029) => {
                    // A lifetime quota (e.g. QR codes): no clear resets it, ever.
                    let c = path_count(&mut acct.usage, &item.api);
                    if !c.lifetime {
                        info!(account = %acct.cfg.name, api = %item.api, "reported 45029 (lifetime quota): it never triggers a clear");
                    }
                    c.lifetime = true;
                }
                Reported::Errcode(code) => {
                    // 45011 is the per-minute limit: a clear does not help. Others are noted only.
                    debug!(account = %acct.cfg.name, api = %item.api, errcode = code, "errcode reported; no effect on clears");
                    continue;
                }
            }
            if touched.last() != Some(&idx) {
                touched.push(idx);
            }
        }
        if let Some(rec) = self.traffic().as_mut() {
            for (item, &idx) in items.iter().zip(&targets) {
                // A 45009 is a call the application wanted and WeChat refused.
                let calls = match item.what {
                    Reported::Calls(n) => n,
                    Reported::Errcode(45009) => 1,
                    Reported::Errcode(_) => continue,
                };
                rec.add(now, &st.accounts[idx].cfg.name, &item.api, calls);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for idx in touched {
            self.decide_and_start(&mut st, idx, now);
        }
        self.inner.metrics.report_items.inc_by(items.len() as u64);
        Ok(items.len())
    }

    /// Periodic work (every few seconds, and from the rollover jobs): roll days, decide
    /// for every account (time-based gates may have opened), flush counters, and once a
    /// day drop stored counters of past days (they only matter on their own day).
    /// Touches SQLite: call it from a blocking thread.
    pub fn tick(&self) {
        let now = self.inner.clock.now();
        // Notices (and logs, once) a state file deleted or replaced while running;
        // clears then stop at begin_attempt and /healthz says why.
        let _ = self.store().check_identity();
        let prune = {
            let mut st = self.lock();
            st.roll_all(now);
            for idx in 0..st.accounts.len() {
                self.decide_and_start(&mut st, idx, now);
            }
            let today = crate::time::day_of(now);
            let due = st.pruned_on.is_none_or(|d| d < today);
            if due {
                st.pruned_on = Some(today);
            }
            due.then_some(today)
        };
        if let Err(e) = self.flush() {
            warn!(error = %e, "could not flush counters; will retry");
        }
        if let Some(today) = prune {
            let keep_from = today - chrono::Days::new(USAGE_KEPT_DAYS);
            match self.inner.store.prune_usage(keep_from) {
                Ok(0) => {}
                Ok(n) => info!(rows = n, "dropped stored counters of past days"),
                Err(e) => warn!(error = %e, "could not drop old counters; will retry tomorrow"),
            }
        }
        if let Some(rec) = self.traffic().as_mut() {
            rec.roll(now);
        }
    }

    fn traffic(&self) -> MutexGuard<'_, Option<crate::replay::record::Recorder>> {
        self.inner.traffic.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes changed counters to the store. Returns how many rows were written.
    pub fn flush(&self) -> Result<usize, StoreError> {
        // One flush at a time: two racing flushes could write older values last.
        let _one = self
            .inner
            .flushing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let rows = {
            let mut st = self.lock();
            let mut rows = std::mem::take(&mut st.pending);
            for acct in st.accounts.iter_mut() {
                rows.extend(acct.take_dirty());
            }
            rows
        };
        match self.inner.store.save_usage(&rows) {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                // Keep them for the next flush, before anything queued since: rows are
                // written in order, so newer values for the same key still win.
                let mut st = self.lock();
                let newer = std::mem::replace(&mut st.pending, rows);
                st.pending.extend(newer);
                Err(e)
            }
        }
    }

    /// The whole status document.
    pub fn status(&self) -> StatusDoc {
        let now = self.inner.clock.now();
        let mut st = self.lock();
        st.roll_all(now);
        let accounts = st
            .accounts
            .iter()
            .map(|a| status::account_status(a, st.in_flight.contains_key(&a.cfg.appid), now))
            .collect();
        status::doc(accounts, st.config.daemon.dry_run, now)
    }

    /// One account's status, by name.
    pub fn account_status(&self, name: &str) -> Option<status::AccountStatus> {
        let now = self.inner.clock.now();
        let mut st = self.lock();
        st.roll_all(now);
        let idx = *st.by_name.get(name)?;
        let acct = &st.accounts[idx];
        Some(status::account_status(
            acct,
            st.in_flight.contains_key(&acct.cfg.appid),
            now,
        ))
    }

    /// A clear of the whole account someone asked for (API or CLI); waits for its
    /// outcome. `None` when there is no such account.
    pub async fn clear_now(
        &self,
        name: &str,
        force: bool,
        reason: Option<String>,
    ) -> Option<ClearResult> {
        self.clear_now_of(name, force, reason, None).await
    }

    /// A clear someone asked for: the whole account, or only `api` by a per-interface
    /// clear (clearApiQuota); waits for its outcome. `None` when there is no such account.
    pub async fn clear_now_of(
        &self,
        name: &str,
        force: bool,
        reason: Option<String>,
        api: Option<&str>,
    ) -> Option<ClearResult> {
        let now = self.inner.clock.now();
        let job = {
            let mut st = self.lock();
            st.roll_all(now);
            let idx = *st.by_name.get(name)?;
            let dry_run = st.config.daemon.dry_run;
            let acct = &st.accounts[idx];
            let in_flight = st.in_flight.contains_key(&acct.cfg.appid);
            let statuses = acct.quotas();
            let quotas: Vec<_> = statuses.iter().map(|q| q.view()).collect();
            let view = account::view(acct, &quotas, dry_run, in_flight, now);
            let decision = policy::decide_manual(&view, force, reason, api, now);
            log_decision(&self.inner.decisions, &acct.cfg.name, &decision, &view, now);
            match decision {
                Decision::Clear(trigger, plan) => clear::Job::start(&mut st, idx, trigger, plan),
                Decision::Hold(_, hold) => {
                    return Some(ClearResult {
                        outcome: ClearOutcome::Refused,
                        reason: hold.to_string(),
                    })
                }
                Decision::NotDue => unreachable!("manual decisions are always due"),
            }
        };
        // Its own task: a caller that hangs up must not cancel a clear mid-request
        // (the attempt would stay in flight until the next start).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let engine = self.clone();
        self.track(tokio::spawn(async move {
            let _ = tx.send(job.run(engine).await);
        }));
        Some(rx.await.unwrap_or_else(|_| ClearResult {
            outcome: ClearOutcome::Failed,
            reason: "the clear task ended without an outcome".into(),
        }))
    }

    /// Keeps a clear task's handle so shutdown can wait for it.
    fn track(&self, handle: tokio::task::JoinHandle<()>) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Decides for account `idx` and, when it should clear, marks its appid in flight
    /// and starts the clear in the background.
    fn decide_and_start(&self, st: &mut State, idx: usize, now: Timestamp) {
        let dry_run = st.config.daemon.dry_run;
        let in_flight = st.in_flight.contains_key(&st.accounts[idx].cfg.appid);
        let acct = &st.accounts[idx];
        let statuses = acct.quotas();
        let quotas: Vec<_> = statuses.iter().map(|q| q.view_at(acct, now)).collect();
        let view = account::view(acct, &quotas, dry_run, in_flight, now);
        let decision = policy::decide(&view, now);
        match decision {
            Decision::NotDue => {}
            Decision::Hold(ref trigger, ref hold) => {
                // A held account is re-decided on every report and tick: log the hold
                // when it changes, and otherwise at most every HOLD_LOG_EVERY.
                let key = format!(
                    "{} {} {}",
                    trigger.kind(),
                    trigger.api().unwrap_or("-"),
                    hold.kind()
                );
                let quiet = matches!(&acct.last_hold, Some((k, at)) if *k == key
                    && (now - *at).to_std().unwrap_or_default() < HOLD_LOG_EVERY);
                if !quiet {
                    log_decision(&self.inner.decisions, &acct.cfg.name, &decision, &view, now);
                    drop(statuses);
                    st.accounts[idx].last_hold = Some((key, now));
                }
            }
            Decision::Clear(trigger, plan) => {
                log_decision(
                    &self.inner.decisions,
                    &acct.cfg.name,
                    &Decision::Clear(trigger.clone(), plan.clone()),
                    &view,
                    now,
                );
                drop(statuses);
                st.accounts[idx].last_hold = None;
                let job = clear::Job::start(st, idx, trigger, plan);
                let engine = self.clone();
                self.track(tokio::spawn(async move {
                    job.run(engine).await;
                }));
            }
        }
    }

    /// Replaces the config (SIGHUP). Accounts that stay (same appid) keep their
    /// counters, ledger, token and in-flight clear; removed ones are flushed first.
    /// An account in `error` leaves it when its appid, secret or clear_via changed.
    pub fn apply_config(&self, config: Config) -> Result<(), StoreError> {
        let now = self.inner.clock.now();
        let mut st = self.lock();
        st.roll_all(now);
        let mut old: HashMap<String, AccountRuntime> = HashMap::new();
        for mut a in std::mem::take(&mut st.accounts) {
            let rows = a.take_dirty();
            st.pending.extend(rows);
            // A config change resets the back-off (SPEC §5).
            if let Some(new) = config.accounts.iter().find(|n| n.appid == a.cfg.appid) {
                if new.policy != a.cfg.policy || new.fingerprint() != a.cfg.fingerprint() {
                    a.failures = 0;
                    a.backoff_until = None;
                }
            }
            old.insert(a.cfg.appid.clone(), a);
        }
        let accounts = load_accounts(&self.inner.store, &config.accounts, &mut old, now)?;
        if config.wechat.base_url != st.config.wechat.base_url
            || config.wechat.timeout != st.config.wechat.timeout
        {
            st.client = observed_client(&config, &self.inner.metrics);
        }
        self.inner.alerts.update(config.alerts.clone());
        if config.daemon.traffic_log != st.config.daemon.traffic_log
            || config.daemon.traffic_log_max != st.config.daemon.traffic_log_max
        {
            let mut rec = self.traffic();
            if let Some(old) = rec.as_mut() {
                old.flush();
            }
            *rec = recorder(&config);
        }
        st.config = Arc::new(config);
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = st.config.clone();
        st.set_accounts(accounts);
        Ok(())
    }

    /// Waits (at most `limit`) for clears in flight to settle, then flushes.
    pub async fn shutdown(&self, limit: Duration) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let wait = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            warn!("clears still in flight at shutdown; they stay counted as spent");
        }
        if let Some(rec) = self.traffic().as_mut() {
            rec.flush();
        }
        match self.flush() {
            Ok(n) => info!(rows = n, "counters flushed"),
            Err(e) => warn!(error = %e, "could not flush counters at shutdown"),
        }
    }
}

impl State {
    fn set_accounts(&mut self, accounts: Vec<AccountRuntime>) {
        self.by_name = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.cfg.name.clone(), i))
            .collect();
        self.by_appid = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.cfg.appid.clone(), i))
            .collect();
        self.accounts = accounts;
        self.rolled_to = None;
    }

    /// Starts a new WeChat day where one began; logs each account's day summary.
    fn roll_all(&mut self, now: Timestamp) {
        let today = crate::time::day_of(now);
        // Every account is on today once this ran today: skip the scan on the hot path.
        if self.rolled_to == Some(today) {
            return;
        }
        self.rolled_to = Some(today);
        for acct in self.accounts.iter_mut().filter(|a| a.day != today) {
            let calls: u64 = acct.usage.values().map(|c| c.calls).sum();
            let polls = acct.polls_today;
            let (top_ratio, top_api) = acct
                .quotas()
                .into_iter()
                .filter_map(|q| q.ratio().map(|r| (r, q.paths[0].clone())))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, "-".to_string()));
            if let Some(ended) = acct.roll(now, &mut self.pending) {
                let clears = acct
                    .attempts
                    .iter()
                    .filter(|a| a.spent() && crate::time::day_of(a.started_at) == ended)
                    .count();
                info!(
                    event = "day_summary",
                    account = %acct.cfg.name,
                    day = %ended,
                    calls,
                    top_api = %top_api,
                    top_ratio,
                    clears,
                    polls,
                    "day ended (00:00 UTC+8); counters start again"
                );
                acct.prune_attempts(now);
            }
        }
    }
}

/// The traffic log's recorder, when `[daemon] traffic_log` is set.
fn recorder(config: &Config) -> Option<crate::replay::record::Recorder> {
    let d = &config.daemon;
    d.traffic_log
        .clone()
        .map(|p| crate::replay::record::Recorder::new(p, d.traffic_log_max))
}

/// A WeChat client for `config` whose every request is counted in `metrics`.
fn observed_client(config: &Config, metrics: &crate::metrics::Metrics) -> WechatClient {
    let metrics = metrics.clone();
    WechatClient::new(&config.wechat.base_url, config.wechat.timeout).with_observer(Arc::new(
        move |endpoint, result| metrics.count_wechat(endpoint, result),
    ))
}

/// The count for `api`, created at zero if new. Looks up before inserting so the hot
/// path (a path already counted today) copies no string.
fn path_count<'a>(usage: &'a mut HashMap<String, PathCount>, api: &str) -> &'a mut PathCount {
    if !usage.contains_key(api) {
        usage.insert(api.to_string(), PathCount::default());
    }
    usage.get_mut(api).expect("inserted above")
}

/// Runtimes for `accounts`: taken from `old` (by appid) when there, else loaded from
/// the store (today's counters, recent attempts, a recorded error).
fn load_accounts(
    store: &Store,
    accounts: &[Account],
    old: &mut HashMap<String, AccountRuntime>,
    now: Timestamp,
) -> Result<Vec<AccountRuntime>, StoreError> {
    let today = crate::time::day_of(now);
    let needs_load = accounts.iter().any(|a| !old.contains_key(&a.appid));
    let (usage, attempts) = if needs_load {
        let since = start_of_month(start_of_month(now) - chrono::Duration::days(1));
        (store.load_usage(today)?, store.attempts_since(since)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut out = Vec::with_capacity(accounts.len());
    for cfg in accounts {
        let rt = match old.remove(&cfg.appid) {
            Some(mut rt) => {
                if rt.cfg.secret != cfg.secret {
                    rt.token = Arc::new(crate::wechat::TokenCache::default());
                }
                rt.cfg = cfg.clone();
                rt
            }
            None => {
                let mut rt = AccountRuntime::new(cfg.clone(), now);
                for r in usage.iter().filter(|r| r.appid == cfg.appid) {
                    rt.usage.insert(
                        r.api.clone(),
                        PathCount {
                            calls: r.calls,
                            blocked: r.blocked,
                            // Blocked before this start: any later read explains it.
                            blocked_at: r.blocked.then_some(now),
                            lifetime: false,
                            dirty: false,
                            recent: Vec::new(),
                            first_call_at: None,
                        },
                    );
                }
                rt.attempts = attempts
                    .iter()
                    .filter(|a| a.appid == cfg.appid)
                    .cloned()
                    .collect();
                rt
            }
        };
        out.push(rt);
    }
    // Errors hold until the config that caused them changes.
    for rt in out.iter_mut() {
        match store.account_error(&rt.cfg.appid)? {
            Some((fp, errcode, message, at)) if fp == rt.cfg.fingerprint() => {
                rt.error = Some(AccountError {
                    errcode,
                    message,
                    at,
                });
            }
            Some(_) => {
                info!(account = %rt.cfg.name, "config changed; account leaves error state");
                store.clear_account_error(&rt.cfg.appid)?;
                rt.error = None;
            }
            None => rt.error = None,
        }
    }
    Ok(out)
}

/// The one structured event per decision (SPEC §5): logged, and kept for
/// `GET /v1/decisions` with the same fields, with the budgets left as the decision saw
/// them.
fn log_decision(
    decisions: &DecisionLog,
    account: &str,
    decision: &Decision,
    view: &AccountView<'_>,
    now: Timestamp,
) {
    let left = (view.clears_left(), view.api_clears_left());
    let Some(e) = DecisionEvent::new(account, decision, left, now) else {
        return;
    };
    info!(
        event = e.event,
        account = %e.account,
        api = %e.api,
        trigger = e.trigger,
        outcome = e.outcome,
        kind = e.kind,
        gate = e.gate,
        reason = %e.reason,
        clears_left = e.clears_left,
        api_clears_left = e.api_clears_left,
        "{}",
        e.message
    );
    decisions.push(e);
}
