//! An in-process harness: the engine on a manual clock against the simulator on
//! 127.0.0.1:0, with `tick()` and reports driven directly, so a test can step past
//! min_interval, a back-off or a midnight without waiting.

use std::time::Duration;

use wxquotad::config::{Config, LimitTable, PresetName};
use wxquotad::engine::{Engine, Report, Reported, Target};
use wxquotad::sim::{Endpoint, Fault, FaultKind, Simulator};
use wxquotad::store::{Attempt, Store};
use wxquotad::time::{parse, Clock, Timestamp};

use super::{APPID, SECRET};

/// A Wednesday noon in Beijing: far from a midnight and a month's end.
pub const NOON: &str = "2026-11-18T12:00:00+08:00";
pub const USER_GET: &str = "/cgi-bin/user/get";
pub const MENU_GET: &str = "/cgi-bin/menu/get";

/// A policy that lets clears follow each other quickly.
pub const EAGER: &str =
    "reserve = 0\nmin_interval = \"0s\"\nmax_clears_per_day = 100\nquiet_before_reset = \"0s\"";

pub struct Harness {
    pub clock: Clock,
    pub sim: Simulator,
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub config: Config,
    _sim_task: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// An engine for one account "shop" (preset normal), `policy` as the [policy]
    /// body, `poll` as the [poll] interval, then `tweak` on the loaded config.
    pub async fn new(policy: &str, poll: &str, tweak: impl FnOnce(&mut Config)) -> Harness {
        let clock = Clock::manual(parse(NOON).unwrap());
        let sim = Simulator::new(clock.clone());
        sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
        let (addr, sim_task) = sim.clone().start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("shop.secret");
        std::fs::write(&secret, SECRET).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{state}\"\n\n\
                 [wechat]\nbase_url = \"http://{addr}\"\ntimeout = \"1s\"\n\n\
                 [policy]\n{policy}\n\n[poll]\ninterval = \"{poll}\"\n\n\
                 [[accounts]]\nname = \"shop\"\nappid = \"{APPID}\"\npreset = \"normal\"\nsecret_file = \"{secret}\"\n",
                state = dir.path().join("state").display(),
                secret = secret.display(),
            ),
        )
        .unwrap();
        let (mut config, _) = wxquotad::config::load(&path).expect("the test config loads");
        tweak(&mut config);
        let (store, _) = Store::open(&config.daemon.state_dir, clock.now()).unwrap();
        let engine = Engine::new(config.clone(), store, clock.clone()).unwrap();
        Harness {
            clock,
            sim,
            engine,
            dir,
            config,
            _sim_task: sim_task,
        }
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// One tick (on a blocking thread, as the daemon runs it), then every clear it
    /// started, to its end.
    pub async fn tick(&self) {
        let e = self.engine.clone();
        tokio::task::spawn_blocking(move || e.tick()).await.unwrap();
        self.engine.idle().await;
    }

    /// Reports `what` for `api` of "shop", then waits for any clear it started.
    pub async fn report(&self, api: &str, what: Reported) {
        self.engine
            .report(&[Report {
                target: Target::Account("shop".into()),
                api: api.into(),
                what,
            }])
            .unwrap();
        self.engine.idle().await;
    }

    pub async fn blocked(&self, api: &str) {
        self.report(api, Reported::Errcode(45009)).await;
    }

    pub fn fault(&self, endpoint: Endpoint, kind: FaultKind, times: u32) {
        self.sim.inject(Fault {
            endpoint,
            kind,
            times,
        });
    }

    /// Requests to `endpoint` so far.
    pub fn requests_to(&self, endpoint: &str) -> Vec<Timestamp> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.at)
            .collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .map(|r| r.endpoint)
            .collect()
    }

    pub fn ledger(&self) -> Vec<Attempt> {
        self.engine
            .store()
            .attempts_since(parse("2000-01-01T00:00:00Z").unwrap())
            .unwrap()
    }

    pub fn shop(&self) -> wxquotad::engine::status::AccountStatus {
        self.engine.account_status("shop").unwrap()
    }
}

/// Runs a test body within a generous limit rather than hang CI.
pub async fn limited(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(super::TEST_LIMIT, f)
        .await
        .expect("test finished within its time limit");
}

pub fn no_api_clears(c: &mut Config) {
    c.accounts[0].policy.api_clears = false;
}
