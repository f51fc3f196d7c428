//! The replay driver: the daemon's own engine (policy, gates, ledger, WeChat client) on
//! a virtual clock, minute by minute, against the simulator as WeChat. The simulator
//! runs in-process on 127.0.0.1:0 (loopback only, no external network) so the engine's
//! requests take the same path as in production; the state is a temporary SQLite file
//! removed at the end (no `state_dir` is touched).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;

use super::model::{self, AccountDemand, DayStats};
use super::oracle::{self, Budgets};
use super::traffic::{minute_of, minute_start, Minute, Traffic};
use super::{AccountRun, MadeClear, Replay, Source};
use crate::config::{Account, Config, Secret};
use crate::engine::{Engine, Report, Reported, Target};
use crate::sim::Simulator;
use crate::store::{AttemptOutcome, ClearKind, Store};
use crate::time::{day_of, Clock};

/// The AppSecret the replay's simulator and engine share: never the configured one,
/// which replay neither needs nor reads.
const REPLAY_SECRET: &str = "replay-secret-not-a-real-one";

/// A temporary directory removed when dropped; on tmpfs when the machine has one, so
/// the store's durable writes (one per minute of traffic) cost no disk syncs.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "wxquotad-replay-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create a temporary directory {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One account as the driver plays it.
struct Player {
    cfg: Account,
    /// Calls per minute per API path.
    by_path: BTreeMap<Minute, BTreeMap<String, u64>>,
    days: BTreeMap<NaiveDate, DayStats>,
}

/// Replays `traffic` with `config` (as loaded; its secrets are not used) seen through
/// `source`. Accounts of the file that the config does not name are left out (their
/// names are returned); the config's accounts absent from the file too.
pub async fn run(
    config: &Config,
    traffic: &Traffic,
    source: Source,
) -> Result<(Replay, Vec<String>), String> {
    let (from, to) = traffic
        .span()
        .ok_or_else(|| "the traffic file has no lines".to_string())?;
    let named = traffic.accounts();
    let unknown: Vec<String> = named
        .iter()
        .filter(|n| !config.accounts.iter().any(|a| a.name == **n))
        .map(|n| n.to_string())
        .collect();
    let mut players: Vec<Player> = config
        .accounts
        .iter()
        .filter(|a| named.contains(&a.name.as_str()))
        .map(|a| Player {
            cfg: Account {
                secret: Secret::new(REPLAY_SECRET),
                ..a.clone()
            },
            by_path: traffic.of_account(&a.name),
            days: BTreeMap::new(),
        })
        .collect();
    if players.is_empty() {
        return Err(format!(
            "no account of the config appears in the traffic file (it names {})",
            named.join(", ")
        ));
    }

    let clock = Clock::virtual_at(minute_start(from));
    let sim = Simulator::new(clock.clone());
    for p in &players {
        sim.add_account(&p.cfg.appid, REPLAY_SECRET, p.cfg.limits.clone());
    }
    let (addr, sim_task) = sim
        .clone()
        .start()
        .await
        .map_err(|e| format!("cannot start the simulator on 127.0.0.1: {e}"))?;
    let _stop_sim = AbortOnDrop(sim_task);

    let dir = TempDir::new()?;
    let mut cfg = config.clone();
    cfg.accounts = players.iter().map(|p| p.cfg.clone()).collect();
    cfg.daemon.state_dir = dir.0.clone();
    // Decisions are what is replayed: a dry run would show none, alerts would leave
    // the machine.
    cfg.daemon.dry_run = false;
    // Replay records nothing (it would write its own traffic into the daemon's log).
    cfg.daemon.traffic_log = None;
    cfg.alerts.clear();
    cfg.wechat.base_url = format!("http://{addr}");
    cfg.wechat.fallback_urls.clear();
    if source != Source::Poll {
        // The engine sees reports only (SPEC §9).
        cfg.poll.interval = Duration::ZERO;
    }
    let poll_every: i64 = (cfg.poll.interval.as_secs() / 60).max(1) as i64;
    let (store, _) = Store::open(&dir.0, clock.now())
        .map_err(|e| format!("cannot open the replay's temporary state: {e}"))?;
    let engine = Engine::new(cfg, store, clock.clone())
        .map_err(|e| format!("cannot start the engine: {e}"))?;

    for m in from..=to {
        clock.set(minute_start(m));
        let day = day_of(minute_start(m));
        let mut batch: Vec<Report> = Vec::new();
        // (player, path, calls rejected) of this minute.
        let mut rejected: Vec<(usize, String, u64)> = Vec::new();
        let mut charged_before: Vec<u32> = Vec::new();
        for (i, p) in players.iter_mut().enumerate() {
            charged_before
                .push(sim.clears_charged(&p.cfg.appid) + sim.api_clears_charged(&p.cfg.appid));
            let stats = p.days.entry(day).or_default();
            let Some(row) = p.by_path.get(&m) else {
                continue;
            };
            for (path, &calls) in row {
                let served = serve_at(&sim, &p.cfg, path, calls);
                stats.wanted += calls;
                stats.served += served;
                if served > 0 {
                    batch.push(report(&p.cfg.name, path, Reported::Calls(served)));
                }
                if served < calls {
                    batch.push(report(&p.cfg.name, path, Reported::Errcode(45009)));
                    rejected.push((i, path.clone(), calls - served));
                }
            }
        }
        if source != Source::Poll && !batch.is_empty() {
            engine
                .report(&batch)
                .map_err(|e| format!("the engine refused a report: {e}"))?;
            engine.idle().await;
        }
        if source == Source::Proxy && !rejected.is_empty() {
            // Calls rejected in a minute in which a clear was made are retried after it.
            let mut retry_batch = Vec::new();
            for r in rejected.iter_mut() {
                let p = &mut players[r.0];
                let charged =
                    sim.clears_charged(&p.cfg.appid) + sim.api_clears_charged(&p.cfg.appid);
                if charged == charged_before[r.0] {
                    continue;
                }
                let served = serve_at(&sim, &p.cfg, &r.1, r.2);
                p.days.entry(day).or_default().served += served;
                if served > 0 {
                    retry_batch.push(report(&p.cfg.name, &r.1, Reported::Calls(served)));
                }
                r.2 -= served;
                if r.2 > 0 {
                    retry_batch.push(report(&p.cfg.name, &r.1, Reported::Errcode(45009)));
                }
            }
            if !retry_batch.is_empty() {
                engine
                    .report(&retry_batch)
                    .map_err(|e| format!("the engine refused a report: {e}"))?;
                engine.idle().await;
            }
        }
        if source == Source::Poll && (m - from) % poll_every == 0 {
            engine.poll_round(Duration::from_secs(60)).await;
            engine.idle().await;
        }
        // Rejections that stand, per player.
        let mut lost: BTreeMap<usize, u64> = BTreeMap::new();
        for (i, _, n) in &rejected {
            *lost.entry(*i).or_default() += n;
        }
        for (i, n) in lost {
            if n > 0 {
                let d = players[i].days.entry(day).or_default();
                d.rejected += n;
                d.blocked_minutes += 1;
            }
        }
        // The daemon's periodic decision (gates that opened with time). Called in
        // place: the store is a temporary file (on tmpfs where there is one) and
        // nothing else waits on this thread.
        engine.tick();
        engine.idle().await;
    }

    let attempts = engine
        .store()
        .attempts_since(minute_start(from) - chrono::Duration::days(1))
        .map_err(|e| format!("cannot read the replay's ledger: {e}"))?;
    let budgets_of = |a: &Account| Budgets::of(&a.policy);
    let mut accounts = Vec::new();
    for p in players {
        let clears: Vec<MadeClear> = attempts
            .iter()
            .filter(|a| a.appid == p.cfg.appid)
            .filter(|a| matches!(a.outcome, AttemptOutcome::Ok | AttemptOutcome::Unknown))
            .map(|a| MadeClear {
                minute: minute_of(a.started_at),
                api: match a.kind {
                    ClearKind::Api => a.api.clone(),
                    ClearKind::Account => None,
                },
                trigger: a.trigger.clone(),
            })
            .collect();
        let mut days = p.days;
        for c in &clears {
            days.entry(day_of(minute_start(c.minute)))
                .or_default()
                .clears += 1;
        }
        let demand = AccountDemand::new(&p.cfg.limits, &p.by_path);
        let none = model::evaluate(&demand, &[], false);
        let budgets = budgets_of(&p.cfg);
        let retry = source == Source::Proxy;
        let best = oracle::best(&demand, budgets, retry);
        let naive = model::evaluate(
            &demand,
            &model::naive(&demand, budgets.account, budgets.api, budgets.per_day),
            retry,
        );
        accounts.push(AccountRun {
            name: p.cfg.name.clone(),
            quotas: demand.quotas.clone(),
            days,
            clears,
            none,
            oracle: best,
            naive,
        });
    }
    Ok((
        Replay {
            from,
            to,
            source,
            accounts,
        },
        unknown,
    ))
}

/// Serves `calls` of `path` in the simulator's counters (its rules: the quota the path
/// belongs to, its limit); returns the calls served.
fn serve_at(sim: &Simulator, acct: &Account, path: &str, calls: u64) -> u64 {
    let limit = acct.limits.entry_for(path).and_then(|e| e.limit);
    let mut used = sim.usage(&acct.appid, path);
    let served = model::serve(&mut used, limit, calls);
    if served > 0 {
        sim.set_usage(&acct.appid, path, used);
    }
    served
}

fn report(account: &str, api: &str, what: Reported) -> Report {
    Report {
        target: Target::Account(account.to_string()),
        api: api.to_string(),
        what,
    }
}

/// Stops the in-process simulator when the replay ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::super::output;
    use super::super::traffic;
    use super::*;

    /// A config with one account "shop" (preset normal: user/get 500 a day), `policy`
    /// as its [policy] body and `poll` as its [poll] interval.
    fn config(policy: &str, poll: &str) -> (Config, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[daemon]\nstate_dir = \"/nonexistent\"\n[policy]\n{policy}\n[poll]\ninterval = \"{poll}\"\n\
                 [[accounts]]\nname = \"shop\"\nappid = \"wx448f04719cd48f69\"\npreset = \"normal\"\nsecret_env = \"WXQUOTAD_TEST_UNSET\"\n"
            ),
        )
        .unwrap();
        let (c, _) =
            crate::config::load_with(&path, crate::config::LoadOptions { simulate: true }).unwrap();
        (c, dir)
    }

    fn lines(rows: &[(&str, &str, u64)]) -> Traffic {
        let text: String = rows
            .iter()
            .map(|(hm, api, calls)| {
                format!(
                    "{{\"t\": \"2026-11-18T{hm}:00+08:00\", \"account\": \"shop\", \"api\": \"{api}\", \"calls\": {calls}}}\n"
                )
            })
            .collect();
        traffic::parse(&text).unwrap()
    }

    async fn replay(c: &Config, t: &Traffic, source: Source) -> serde_json::Value {
        let (r, unknown) = tokio::time::timeout(Duration::from_secs(120), run(c, t, source))
            .await
            .expect("the replay finished within its time limit")
            .unwrap();
        assert!(unknown.is_empty());
        serde_json::to_value(output::doc(&r)).unwrap()
    }

    const USER_GET: &str = "/cgi-bin/user/get";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hand_checked_trace_through_each_source() {
        // user/get: 500 a day. 300 at 09:00 fits; at 09:01 200 fit and 100 are rejected
        // (45009), so the daemon clears that one interface in 09:01; 09:02 fits again.
        let t = lines(&[
            ("09:00", USER_GET, 300),
            ("09:01", USER_GET, 300),
            ("09:02", USER_GET, 300),
        ]);
        let (c, _dir) = config("", "5m");
        let doc = replay(&c, &t, Source::Reports).await;
        assert_eq!(doc["from"], "2026-11-18T09:00:00+08:00");
        assert_eq!(doc["to"], "2026-11-18T09:02:00+08:00");
        assert_eq!(doc["source"], "reports");
        let a = &doc["accounts"][0];
        assert_eq!(a["name"], "shop");
        assert_eq!(
            (a["wanted"].as_u64(), a["served"].as_u64()),
            (Some(900), Some(800))
        );
        assert_eq!(
            (a["rejected"].as_u64(), a["blocked_minutes"].as_u64()),
            (Some(100), Some(1))
        );
        assert_eq!(
            a["clears"],
            serde_json::json!([{"at": "2026-11-18T09:01:00+08:00", "kind": "api", "api": USER_GET, "trigger": "45009"}])
        );
        assert_eq!(a["none"]["rejected"], 400);
        // Knowing the file, clears after 09:00 and after 09:01 lose nothing.
        assert_eq!(a["oracle"]["rejected"], 0);
        assert_eq!(a["oracle"]["clears"].as_array().unwrap().len(), 2);
        assert_eq!(a["oracle"]["exact"], true);

        // proxy: the 100 rejected in 09:01 are retried after the clear and served.
        let doc = replay(&c, &t, Source::Proxy).await;
        let a = &doc["accounts"][0];
        assert_eq!(
            (a["served"].as_u64(), a["rejected"].as_u64()),
            (Some(900), Some(0))
        );
        assert_eq!(a["clears"].as_array().unwrap().len(), 1);

        // poll every minute: 09:01's read shows no room, so the clear comes in 09:01 too,
        // and nothing is retried.
        let (c1, _dir1) = config("", "1m");
        let doc = replay(&c1, &t, Source::Poll).await;
        let a = &doc["accounts"][0];
        assert_eq!(a["rejected"], 100);
        assert_eq!(a["clears"][0]["at"], "2026-11-18T09:01:00+08:00");
        // poll every 5 minutes: only 09:00 is read (300 of 500): no clear at all.
        let doc = replay(&c, &t, Source::Poll).await;
        let a = &doc["accounts"][0];
        assert_eq!(a["rejected"], 400);
        assert_eq!(a["clears"], serde_json::json!([]));
    }
}
