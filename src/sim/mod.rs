//! The WeChat simulator: a fake of the WeChat APIs wxquotad uses, following WECHAT.md
//! (per-day counts and 45009, 10 clears a month then 48006, stable and classic tokens,
//! clear_quota/v2, getApiQuota), with injectable faults and a record of every request.
//!
//! Used by `wxquotad sim`, by `run --simulate` in-process, and by tests on
//! `127.0.0.1:0`. Layout:
//! - [`state`]: the rules, pure, with `now` passed in;
//! - [`faults`]: the fault queue;
//! - `calls`: executed calls with their bodies, and media files (for the proxy);
//! - `server`: the axum routes (WeChat's paths and the `/sim/` control API).

mod calls;
pub mod faults;
pub mod platform;
mod server;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use calls::Execution;
pub use faults::{Endpoint, Fault, FaultKind};
pub use state::{RecordedRequest, MONTHLY_API_CLEARS, MONTHLY_CLEARS};

use crate::config::LimitTable;
use crate::time::Clock;
use state::SimState;

/// A handle on one simulated WeChat. Cheap to clone; clones share the state.
///
/// The state sits behind a std (not tokio) mutex: every critical section is short,
/// synchronous rule evaluation and never held across an `.await`, so an async mutex
/// would only add cost.
///
/// The set-up methods panic on an appid that was never added (a test mistake).
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
    calls: Arc<Mutex<calls::Calls>>,
    /// Simulated third-party platforms (`platform`).
    platforms: Arc<Mutex<platform::SimPlatforms>>,
    clock: Clock,
}

impl Simulator {
    /// An empty simulator whose days, months and token lifetimes follow `clock`.
    pub fn new(clock: Clock) -> Simulator {
        Simulator {
            state: Arc::new(Mutex::new(SimState::default())),
            calls: Arc::new(Mutex::new(calls::Calls::default())),
            platforms: Arc::new(Mutex::new(platform::SimPlatforms::default())),
            clock,
        }
    }

    /// The clock the simulator reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic elsewhere must not wedge the simulator: the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an account with its AppSecret and daily limits (e.g.
    /// `LimitTable::from_preset(PresetName::Normal)`). Adding a known appid again
    /// replaces its secret and limits and keeps its counts.
    pub fn add_account(&self, appid: &str, secret: &str, limits: LimitTable) {
        self.lock().add_account(appid, secret, limits);
    }

    /// Sets today's WeChat-side count of `path`'s quota.
    pub fn set_usage(&self, appid: &str, path: &str, used: u64) {
        let now = self.clock.now();
        let result = self.lock().set_usage(appid, path, used, now);
        result.unwrap_or_else(|e| panic!("sim set_usage: {e}"));
    }

    /// Today's WeChat-side count of `path`'s quota (0 for an unknown account).
    pub fn usage(&self, appid: &str, path: &str) -> u64 {
        self.lock().usage(appid, path, self.clock.now())
    }

    /// Marks `path`'s quota as one a clear does not reset (WECHAT.md: reports say the
    /// token API was not reset by a clear).
    pub fn set_not_reset(&self, appid: &str, path: &str) {
        let result = self.lock().set_not_reset(appid, path);
        result.unwrap_or_else(|e| panic!("sim set_not_reset: {e}"));
    }

    /// Queues a fault; queued faults are consumed in order by matching requests.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Clears that took effect this month (UTC+8), by either endpoint.
    pub fn clears_charged(&self, appid: &str) -> u32 {
        self.lock().clears_charged(appid, self.clock.now())
    }

    /// Sets this month's clear count, e.g. to stand for clears made by hand on the web
    /// platform, which share the budget.
    pub fn set_clears_charged(&self, appid: &str, charged: u32) {
        let now = self.clock.now();
        let result = self.lock().set_clears_charged(appid, charged, now);
        result.unwrap_or_else(|e| panic!("sim set_clears_charged: {e}"));
    }

    /// Per-interface clears (clearApiQuota) that took effect this month (UTC+8).
    pub fn api_clears_charged(&self, appid: &str) -> u32 {
        self.lock().api_clears_charged(appid, self.clock.now())
    }

    /// Makes clearApiQuota refuse `path` with `errcode` (WECHAT.md: one version of the
    /// doc limits it to `/channels/ec/` paths).
    pub fn set_api_clear_refused(&self, appid: &str, path: &str, errcode: i64) {
        let result = self.lock().set_api_clear_refused(appid, path, errcode);
        result.unwrap_or_else(|e| panic!("sim set_api_clear_refused: {e}"));
    }

    /// Sets the account's monthly clear budget (default [`MONTHLY_CLEARS`], 10).
    pub fn set_clear_limit(&self, appid: &str, limit: u32) {
        let result = self.lock().set_clear_limit(appid, limit);
        result.unwrap_or_else(|e| panic!("sim set_clear_limit: {e}"));
    }

    /// Every access token issued so far, for tests that prove no token leaks.
    pub fn tokens_issued(&self) -> Vec<String> {
        self.lock().token_values()
    }

    /// The calls executed (answered with errcode 0) other than the token, clear and
    /// quota APIs, with their bodies, oldest first (the latest 10,000).
    pub fn executions(&self) -> Vec<Execution> {
        self.calls().executions()
    }

    fn calls(&self) -> MutexGuard<'_, calls::Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every WeChat request received so far, oldest first (control requests excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Serves WeChat's paths and the `/sim/` control API on `listener` until
    /// `shutdown` completes; held-open (`ChargeThenDrop`) requests end then too.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = server::router(self, stop_rx);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await
    }

    /// Binds `127.0.0.1:0` and serves in the background until the task is aborted or
    /// the runtime ends. Returns the address and the serving task.
    pub async fn start(self) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = self.serve(listener, std::future::pending()).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok((addr, task))
    }

    /// Takes the fault, if any, for a request to `path`.
    fn take_fault(&self, path: &str) -> Option<FaultKind> {
        faults::take(&mut self.lock().faults, Endpoint::of(path))
    }

    /// Records one request and logs it (endpoint, appid, errcode; never a credential).
    fn record(&self, endpoint: &str, appid: Option<String>, errcode: Option<i64>) {
        tracing::debug!(
            target: "wxquotad::sim",
            endpoint,
            appid = appid.as_deref().unwrap_or("-"),
            errcode = errcode.map_or_else(|| "-".to_string(), |c| c.to_string()),
            "sim request"
        );
        let at = self.clock.now();
        self.lock().requests.push(RecordedRequest {
            endpoint: endpoint.to_string(),
            appid,
            errcode,
            at,
        });
    }
}
