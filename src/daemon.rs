//! Start-up, the background jobs (tick and flush), signals (SIGHUP
//! reload, SIGTERM/SIGINT graceful stop) and shutdown.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Config, LoadOptions};
use crate::engine::Engine;
use crate::sim::Simulator;
use crate::store::Store;
use crate::time::Clock;

/// How often counters are flushed and time-based gates re-checked. SPEC promises a
/// crash loses at most the last few seconds of counts.
pub const TICK: Duration = Duration::from_secs(2);

/// Why the daemon could not run: a message and the process exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// What `run`'s command line says over the file (`--listen`, `--dry-run`): applied at
/// start and again at every reload, so a SIGHUP never silently undoes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub listen: Option<std::net::SocketAddr>,
    pub dry_run: bool,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.daemon.listen = listen;
        }
        if self.dry_run {
            config.daemon.dry_run = true;
        }
    }
}

/// `run --simulate`: the in-process simulator and the accounts already registered in it.
struct Simulation {
    sim: Simulator,
    base_url: String,
    state_dir: PathBuf,
    registered: Mutex<HashSet<String>>,
}

impl Simulation {
    /// Points `config` at the simulator and a state directory of its own (simulated
    /// clears must never enter a real ledger), registering new accounts in the simulator.
    fn adapt(&self, config: &mut Config) {
        config.wechat.base_url = self.base_url.clone();
        // Never fail over from the simulator to a real WeChat host.
        config.wechat.fallback_urls.clear();
        config.daemon.state_dir = self.state_dir.clone();
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        for a in &config.accounts {
            if registered.insert(a.appid.clone()) {
                self.sim
                    .add_account(&a.appid, a.secret.expose(), a.limits.clone());
            }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. `config` is already loaded and valid.
/// `overrides` are already applied to `config`; reloads apply them again.
pub async fn run(
    mut config: Config,
    path: PathBuf,
    simulate: bool,
    overrides: Overrides,
) -> Result<(), Failure> {
    // Whatever this process creates (the state directory, the database and its
    // -wal/-shm files) is private to its user, also outside systemd's UMask=0077.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    // Handlers first: a signal that arrives during start-up must not kill the process
    // (SIGHUP's default action would).
    let signals =
        Signals::install().map_err(|e| fail(1, format!("cannot install signal handlers: {e}")))?;
    let clock = Clock::from_env().map_err(|m| fail(78, m))?;
    let simulation = if simulate {
        let sim = Simulator::new(clock.clone());
        let (addr, _task) = sim
            .clone()
            .start()
            .await
            .map_err(|e| fail(1, format!("could not start the simulator: {e}")))?;
        let state_dir =
            std::env::temp_dir().join(format!("wxquotad-simulate-{}", std::process::id()));
        let s = Simulation {
            sim,
            base_url: format!("http://{addr}"),
            state_dir,
            registered: Mutex::new(HashSet::new()),
        };
        s.adapt(&mut config);
        info!(simulator = %s.base_url, state_dir = %s.state_dir.display(), "simulate: WeChat is the built-in simulator; state is kept apart from the real state_dir");
        Some(Arc::new(s))
    } else {
        None
    };

    let (store, recovery) =
        Store::open(&config.daemon.state_dir, clock.now()).map_err(|e| fail(1, e.to_string()))?;
    if recovery.in_flight_settled > 0 {
        warn!(
            attempts = recovery.in_flight_settled,
            "clear attempts were in flight when the daemon last stopped; counted as spent"
        );
    }
    info!(file = %store.file().display(), "state opened");
    let listen = config.daemon.listen;
    let accounts = config.accounts.len();
    let proxy_settings = config.proxy.clone();
    let engine = Engine::new(config, store, clock).map_err(|e| fail(1, e.to_string()))?;
    // The counting proxy (SPEC §7), ready before systemd is told the daemon is.
    let proxy = match proxy_settings {
        Some(settings) => Some(
            crate::proxy::start(engine.clone(), settings)
                .await
                .map_err(|e| fail(1, e))?,
        ),
        None => None,
    };

    let listener = TcpListener::bind(listen).await.map_err(|e| {
        fail(
            1,
            format!("cannot listen on {listen} ([daemon] listen): {e}"),
        )
    })?;
    let addr = listener.local_addr().map_err(|e| fail(1, e.to_string()))?;
    info!(event = "listening", addr = %addr, accounts, "wxquotad ready");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("listening on {addr}, {accounts} accounts")),
    ]);

    let (stop_tx, stop_rx) = watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        let app = crate::api::router(engine.clone());
        let cap = crate::api::server::connection_cap();
        info!(
            connections = cap,
            "connection cap (below the open-file limit)"
        );
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            crate::api::server::serve(listener, app, cap, shutdown).await
        })
    };
    let last_tick = Arc::new(AtomicI64::new(now_secs()));
    let ticker = spawn_ticker(engine.clone(), last_tick.clone(), stop_rx.clone());
    spawn_watchdog(last_tick, stop_rx.clone());
    let poller = spawn_poller(engine.clone(), stop_rx.clone());
    // Third-party platforms: discovery when due (SPEC §8).
    let platforms =
        crate::platform::tokens::spawn(engine.clone(), Duration::from_secs(1), stop_rx.clone());
    let sim_pushes = match &simulation {
        Some(s) => crate::sim::platform::simulate_platforms(&s.sim, &engine.config(), addr),
        None => Vec::new(),
    };

    signals
        .wait(&engine, &path, simulation.clone(), overrides)
        .await;

    info!("stopping: no new requests; finishing clears in flight");
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .is_err()
    {
        warn!("API server did not stop within 10s");
    }
    if let Some(p) = proxy {
        // Calls in flight finish (and are counted) before the final flush.
        p.stop().await;
    }
    let _ = ticker.await;
    poller.abort();
    platforms.abort();
    sim_pushes.iter().for_each(|t| t.abort());
    engine
        .shutdown(settle_limit(engine.config().wechat.timeout))
        .await;
    if let Some(s) = simulation {
        let _ = std::fs::remove_dir_all(&s.state_dir);
    }
    info!("stopped");
    Ok(())
}

/// Every [`TICK`]: roll days, re-decide, flush; records when it last completed.
fn spawn_ticker(
    engine: Engine,
    last_tick: Arc<AtomicI64>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let e = engine.clone();
                    // The tick touches SQLite; keep it off the async workers.
                    if tokio::task::spawn_blocking(move || e.tick()).await.is_ok() {
                        last_tick.store(now_secs(), Ordering::Relaxed);
                    }
                }
                _ = stop.changed() => break,
            }
        }
    })
}

/// Polls WeChat's counters every `[poll] interval` (re-read each round, so a reload
/// can change or disable it); "0s" disables polling.
fn spawn_poller(engine: Engine, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let interval = engine.config().poll.interval;
            let round = async {
                if interval.is_zero() {
                    tokio::time::sleep(TICK).await;
                } else {
                    let started = tokio::time::Instant::now();
                    engine.poll_round(interval).await;
                    tokio::time::sleep_until(started + interval).await;
                }
            };
            tokio::select! {
                _ = round => {}
                _ = stop.changed() => break,
            }
        }
    })
}

/// Seconds on the monotonic-ish process clock (only differences matter).
fn now_secs() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs() as i64
}

/// Sends systemd a notification when run under `Type=notify` (no-op otherwise).
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "could not notify systemd");
    }
}

/// Under a systemd watchdog (`WatchdogSec=`), pings at half the interval, but only
/// while the engine's tick keeps completing: a wedged engine (deadlock, stuck store)
/// stops the pings and systemd restarts the service.
fn spawn_watchdog(last_tick: Arc<AtomicI64>, mut stop: watch::Receiver<bool>) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    // A tick older than this means the engine is not alive.
    let stale = (TICK * 3).as_secs().max(usec / 1_000_000) as i64;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let age = now_secs() - last_tick.load(Ordering::Relaxed);
                    if age <= stale {
                        notify(&[sd_notify::NotifyState::Watchdog]);
                    } else {
                        warn!(seconds_since_tick = age, "engine tick is stuck; withholding watchdog ping");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
}

/// The signals the daemon handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; reloads on SIGHUP. A reload runs on a thread of
    /// its own, so nothing it does (a file that cannot be read, a slow disk) can keep
    /// this loop from seeing SIGTERM; a SIGHUP during a reload runs one more after it.
    async fn wait(
        mut self,
        engine: &Engine,
        path: &Path,
        simulation: Option<Arc<Simulation>>,
        overrides: Overrides,
    ) {
        let mut running: Option<tokio::sync::oneshot::Receiver<()>> = None;
        let mut again = false;
        loop {
            tokio::select! {
                _ = self.term.recv() => { info!(signal = "SIGTERM", "shutdown requested"); return; }
                _ = self.int.recv() => { info!(signal = "SIGINT", "shutdown requested"); return; }
                _ = self.hup.recv() => {
                    if running.is_some() {
                        warn!("SIGHUP during a reload: reloading again when it ends");
                        again = true;
                    } else {
                        running = Some(spawn_reload(engine, path, simulation.clone(), overrides));
                    }
                }
                _ = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                    running = None;
                    if std::mem::take(&mut again) {
                        running = Some(spawn_reload(engine, path, simulation.clone(), overrides));
                    }
                }
            }
        }
    }
}

/// Starts a reload on its own thread (not `spawn_blocking`: the runtime waits for those
/// when it shuts down, and a stuck reload must never hold up the exit). The receiver
/// completes when the reload ends.
fn spawn_reload(
    engine: &Engine,
    path: &Path,
    simulation: Option<Arc<Simulation>>,
    overrides: Overrides,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, rx) = tokio::sync::oneshot::channel();
    let (engine, path) = (engine.clone(), path.to_path_buf());
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            // Applying a config may start clears, which are tasks of the runtime.
            let _in_runtime = runtime.enter();
            reload(&engine, &path, simulation.as_deref(), overrides);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        error!(error = %e, "cannot start a thread for the reload; the old config stays in force");
    }
    rx
}

/// How long shutdown waits for clears in flight to settle: four WeChat timeouts and
/// 5 s, but never past systemd's `TimeoutStopSec=90s`. Checked arithmetic: shutdown
/// must not panic, whatever the config says.
fn settle_limit(wechat_timeout: Duration) -> Duration {
    const MOST: Duration = Duration::from_secs(80);
    wechat_timeout
        .checked_mul(4)
        .and_then(|d| d.checked_add(Duration::from_secs(5)))
        .map_or(MOST, |d| d.min(MOST))
}

/// SIGHUP: re-read the config; a bad one is logged and the old stays in force.
fn reload(engine: &Engine, path: &Path, simulation: Option<&Simulation>, overrides: Overrides) {
    info!(file = %path.display(), "SIGHUP: reloading config");
    // systemd 252 has no notify-reload; RELOADING=1 with the time, then READY=1.
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(t) => notify(&[sd_notify::NotifyState::Reloading, t]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
    reload_config(engine, path, simulation, overrides);
    notify(&[sd_notify::NotifyState::Ready]);
}

fn reload_config(
    engine: &Engine,
    path: &Path,
    simulation: Option<&Simulation>,
    overrides: Overrides,
) {
    let opts = LoadOptions {
        simulate: simulation.is_some(),
    };
    match config::load_with(path, opts) {
        Ok((mut new, warnings)) => {
            for w in warnings {
                warn!(file = %path.display(), "{w}");
            }
            overrides.apply(&mut new);
            if let Some(s) = simulation {
                s.adapt(&mut new);
            }
            let old = engine.config();
            if new.daemon.listen != old.daemon.listen
                || new.daemon.state_dir != old.daemon.state_dir
                || new.proxy != old.proxy
            {
                warn!("listen, state_dir and [proxy] changes take effect at the next restart");
            }
            let accounts = new.accounts.len();
            match engine.apply_config(new) {
                Ok(()) => info!(event = "reloaded", accounts, "config reloaded"),
                Err(e) => error!(error = %e, "reload failed; the old config stays in force"),
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                error!(event = "reload_rejected", "{e}");
            }
            error!(
                errors = errors.0.len(),
                "config has errors; the old config stays in force"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settle_limit_never_overflows() {
        assert_eq!(settle_limit(Duration::from_secs(1)), Duration::from_secs(9));
        assert_eq!(
            settle_limit(Duration::from_secs(600)),
            Duration::from_secs(80)
        );
        // "60000000000000d" (issue 9) used to panic here at SIGTERM.
        assert_eq!(
            settle_limit(Duration::from_secs(60_000_000_000_000 * 86_400)),
            Duration::from_secs(80)
        );
        assert_eq!(settle_limit(Duration::MAX), Duration::from_secs(80));
    }
}
