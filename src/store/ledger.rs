//! The clear ledger. Write-ahead: an attempt is committed (as spent) before its request
//! leaves, and settled after. Unknown outcomes stay spent.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{parse_ts, ts, Store, StoreError};
use crate::time::{day_of, month_of, Timestamp};

/// Which budget an attempt spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClearKind {
    /// clear_quota (or its v2): the whole account, 10 a month.
    Account,
    /// clearApiQuota: one interface, 50 a month.
    Api,
}

impl ClearKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClearKind::Account => "account",
            ClearKind::Api => "api",
        }
    }

    fn parse(s: &str) -> ClearKind {
        if s == "api" {
            ClearKind::Api
        } else {
            ClearKind::Account
        }
    }
}

/// An attempt about to be sent, with the gates its row must pass where it is written.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub appid: String,
    pub account: String,
    pub at: Timestamp,
    /// "threshold", "45009", "manual" or "forced".
    pub trigger: String,
    pub reason: String,
    /// "token" or "appsecret".
    pub method: String,
    pub kind: ClearKind,
    /// The interface a per-interface clear resets.
    pub api: Option<String>,
    /// Spent attempts of this kind this month may not exceed this after the insert
    /// (its monthly budget, less the reserve for automatic clears).
    pub budget: u32,
    /// Spent attempts of both kinds today may not exceed this after the insert.
    pub day_cap: u32,
    /// Least time since the last spent attempt of either kind (zero when forced).
    pub min_interval: std::time::Duration,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Sent, answer not yet known (or never known: a crash).
    InFlight,
    /// WeChat answered errcode 0.
    Ok,
    /// WeChat answered an errcode, or the request never left: not spent.
    Failed,
    /// Timeout, lost or unreadable answer, crash: may have taken effect, so spent.
    Unknown,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::InFlight => "in_flight",
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> AttemptOutcome {
        match s {
            "ok" => AttemptOutcome::Ok,
            "failed" => AttemptOutcome::Failed,
            "unknown" => AttemptOutcome::Unknown,
            _ => AttemptOutcome::InFlight,
        }
    }

    /// Whether an attempt that ended this way counts against the monthly budget.
    pub fn spent(self) -> bool {
        self != AttemptOutcome::Failed
    }
}

/// How to settle an attempt.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub outcome: AttemptOutcome,
    pub errcode: Option<i64>,
    /// Short text for people (never a secret).
    pub detail: Option<String>,
    pub at: Timestamp,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: i64,
    pub appid: String,
    pub account: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub trigger: String,
    pub reason: String,
    pub method: String,
    pub outcome: AttemptOutcome,
    pub errcode: Option<i64>,
    pub detail: Option<String>,
    pub kind: ClearKind,
    /// The interface of a per-interface clear.
    pub api: Option<String>,
}

impl Attempt {
    pub fn spent(&self) -> bool {
        self.outcome.spent()
    }
}

const ATTEMPT_COLUMNS: &str = "id, appid, account, started_at, finished_at, trigger, reason, method, outcome, errcode, detail, kind, api";

fn attempt_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get(0)?,
        appid: r.get(1)?,
        account: r.get(2)?,
        started_at: parse_ts(&r.get::<_, String>(3)?),
        finished_at: r.get::<_, Option<String>>(4)?.map(|s| parse_ts(&s)),
        trigger: r.get(5)?,
        reason: r.get(6)?,
        method: r.get(7)?,
        outcome: AttemptOutcome::parse(&r.get::<_, String>(8)?),
        errcode: r.get(9)?,
        detail: r.get(10)?,
        kind: ClearKind::parse(&r.get::<_, String>(11)?),
        api: r.get(12)?,
    })
}

impl Store {
    /// Records an attempt as in flight (spent) and returns its id — durably, before the
    /// request leaves — if the row passes every gate here, where it is written: the
    /// month's spent attempts of its kind below `budget`, today's of both kinds below
    /// `day_cap`, `min_interval` since the last spent one, and no attempt of the appid
    /// started later than this one (a clock stepped back never books into the past).
    /// Fails with [`StoreError::BudgetExhausted`] or [`StoreError::GateClosed`] and
    /// writes nothing otherwise. The checks and the insert are one `BEGIN IMMEDIATE`
    /// transaction, so two callers cannot both pass.
    pub fn begin_attempt(&self, a: &NewAttempt) -> Result<i64, StoreError> {
        // Never record (and so never send) a clear into a file that is no longer the
        // state file: its budget would be lost with it.
        self.check_identity().map_err(StoreError::Lost)?;
        let month = month_of(a.at);
        let day = day_of(a.at).to_string();
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let latest: Option<String> = tx.query_row(
                "SELECT max(started_at) FROM clears WHERE appid = ?1",
                [&a.appid],
                |r| r.get(0),
            )?;
            if let Some(latest) = latest.as_deref().map(parse_ts) {
                if latest > a.at {
                    return Ok(Err(StoreError::GateClosed(format!(
                        "clock_behind: an attempt started at {}, later than now ({}); no attempt is recorded before the clock catches up",
                        crate::time::show(latest),
                        crate::time::show(a.at)
                    ))));
                }
            }
            let spent: u32 = tx.query_row(
                "SELECT count(*) FROM clears WHERE appid = ?1 AND month = ?2 AND kind = ?3 AND spent = 1",
                params![a.appid, month, a.kind.as_str()],
                |r| r.get(0),
            )?;
            if spent >= a.budget {
                return Ok(Err(StoreError::BudgetExhausted {
                    spent,
                    budget: a.budget,
                }));
            }
            let today: u32 = tx.query_row(
                "SELECT count(*) FROM clears WHERE appid = ?1 AND day = ?2 AND spent = 1",
                params![a.appid, day],
                |r| r.get(0),
            )?;
            if today >= a.day_cap {
                return Ok(Err(StoreError::GateClosed(format!(
                    "daily_cap: {today} clears today already (max_clears_per_day {})",
                    a.day_cap
                ))));
            }
            if !a.min_interval.is_zero() {
                let last: Option<String> = tx.query_row(
                    "SELECT max(started_at) FROM clears WHERE appid = ?1 AND spent = 1",
                    [&a.appid],
                    |r| r.get(0),
                )?;
                if let Some(last) = last.as_deref().map(parse_ts) {
                    let since = (a.at - last).to_std().unwrap_or_default();
                    if since < a.min_interval {
                        return Ok(Err(StoreError::GateClosed(format!(
                            "min_interval: the last clear started {}s ago, {}s needed",
                            since.as_secs(),
                            a.min_interval.as_secs()
                        ))));
                    }
                }
            }
            tx.execute(
                "INSERT INTO clears (appid, account, month, day, started_at, trigger, reason,
                                     method, budget, outcome, spent, kind, api)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'in_flight', 1, ?10, ?11)",
                params![
                    a.appid,
                    a.account,
                    month,
                    day,
                    ts(a.at),
                    a.trigger,
                    a.reason,
                    a.method,
                    a.budget,
                    a.kind.as_str(),
                    a.api
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok(id))
        })?
    }

    /// Records how attempt `id` ended.
    pub fn settle_attempt(&self, id: i64, s: &Settlement) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE clears SET outcome = ?2, spent = ?3, errcode = ?4, detail = ?5, finished_at = ?6
                 WHERE id = ?1",
                params![
                    id,
                    s.outcome.as_str(),
                    s.outcome.spent(),
                    s.errcode,
                    s.detail,
                    ts(s.at)
                ],
            )
            .map(|_| ())
        })
    }

    /// Start-up: attempts still in flight belong to a run that died; whether they took
    /// effect is unknown, so they stay spent.
    pub(super) fn settle_in_flight_as_unknown(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE clears SET outcome = 'unknown', spent = 1, finished_at = ?1,
                        detail = 'in flight when the daemon stopped'
                 WHERE outcome = 'in_flight'",
                [ts(now)],
            )
        })
    }

    /// Every attempt started at or after `since`, oldest first.
    pub fn attempts_since(&self, since: Timestamp) -> Result<Vec<Attempt>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM clears WHERE started_at >= ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([ts(since)], attempt_from_row)?;
            rows.collect()
        })
    }

    /// The last `limit` attempts for `appid`, newest first.
    pub fn history(&self, appid: &str, limit: usize) -> Result<Vec<Attempt>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM clears WHERE appid = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![appid, limit as i64], attempt_from_row)?;
            rows.collect()
        })
    }

    /// Spent attempts for `appid` in the WeChat month of `at`.
    pub fn spent_in_month(&self, appid: &str, at: Timestamp) -> Result<u32, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM clears WHERE appid = ?1 AND month = ?2 AND spent = 1",
                params![appid, month_of(at)],
                |r| r.get(0),
            )
        })
    }

    /// Marks `appid` as in `error` for config `fingerprint`.
    pub fn set_account_error(
        &self,
        appid: &str,
        fingerprint: &str,
        errcode: Option<i64>,
        message: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO account_errors (appid, fingerprint, errcode, message, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (appid) DO UPDATE SET fingerprint = ?2, errcode = ?3, message = ?4, at = ?5",
                params![appid, fingerprint, errcode, message, ts(at)],
            )
            .map(|_| ())
        })
    }

    pub fn clear_account_error(&self, appid: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM account_errors WHERE appid = ?1", [appid])
                .map(|_| ())
        })
    }

    /// The recorded error of `appid`: (fingerprint, errcode, message, at).
    #[allow(clippy::type_complexity)]
    pub fn account_error(
        &self,
        appid: &str,
    ) -> Result<Option<(String, Option<i64>, String, Timestamp)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT fingerprint, errcode, message, at FROM account_errors WHERE appid = ?1",
                [appid],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        parse_ts(&r.get::<_, String>(3)?),
                    ))
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse;

    fn attempt(at: &str, budget: u32) -> NewAttempt {
        NewAttempt {
            appid: "wx448f04719cd48f69".into(),
            account: "shop".into(),
            at: parse(at).unwrap(),
            trigger: "45009".into(),
            reason: "45009 /cgi-bin/user/get".into(),
            method: "token".into(),
            kind: ClearKind::Account,
            api: None,
            budget,
            day_cap: 100,
            min_interval: std::time::Duration::ZERO,
        }
    }

    fn settle(outcome: AttemptOutcome) -> Settlement {
        Settlement {
            outcome,
            errcode: None,
            detail: None,
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn budget_is_enforced_and_failed_attempts_are_not_spent() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        let at = "2026-11-22T10:00:00+08:00";
        let a = s.begin_attempt(&attempt(at, 2)).unwrap();
        s.settle_attempt(a, &settle(AttemptOutcome::Failed))
            .unwrap();
        let b = s.begin_attempt(&attempt(at, 2)).unwrap();
        s.settle_attempt(b, &settle(AttemptOutcome::Ok)).unwrap();
        let c = s.begin_attempt(&attempt(at, 2)).unwrap();
        s.settle_attempt(c, &settle(AttemptOutcome::Unknown))
            .unwrap();
        assert!(matches!(
            s.begin_attempt(&attempt(at, 2)),
            Err(StoreError::BudgetExhausted {
                spent: 2,
                budget: 2
            })
        ));
        // A larger budget (a forced clear) may still pass; the next month starts afresh.
        assert!(s.begin_attempt(&attempt(at, 3)).is_ok());
        assert!(s
            .begin_attempt(&attempt("2026-12-01T00:00:00+08:00", 2))
            .is_ok());
        assert_eq!(
            s.spent_in_month("wx448f04719cd48f69", parse(at).unwrap())
                .unwrap(),
            3
        );
    }

    #[test]
    fn every_row_passes_the_day_interval_clock_and_kind_gates_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        let gated = |at: &str| NewAttempt {
            day_cap: 2,
            min_interval: std::time::Duration::from_secs(600),
            ..attempt(at, 10)
        };
        s.begin_attempt(&gated("2026-11-22T10:00:00+08:00"))
            .unwrap();
        let closed = |r: Result<i64, StoreError>, gate: &str| match r {
            Err(StoreError::GateClosed(m)) => assert!(m.starts_with(gate), "{m}"),
            other => panic!("expected {gate}, got {other:?}"),
        };
        closed(
            s.begin_attempt(&gated("2026-11-22T10:05:00+08:00")),
            "min_interval",
        );
        s.begin_attempt(&gated("2026-11-22T10:10:00+08:00"))
            .unwrap();
        closed(
            s.begin_attempt(&gated("2026-11-22T10:30:00+08:00")),
            "daily_cap",
        );
        // A clock stepped back never books an attempt into the past (here: last month).
        closed(
            s.begin_attempt(&gated("2026-10-31T23:00:00+08:00")),
            "clock_behind",
        );
        // Per-interface clears have their own monthly budget.
        let api = |at: &str, budget| NewAttempt {
            kind: ClearKind::Api,
            api: Some("/cgi-bin/user/get".into()),
            ..attempt(at, budget)
        };
        s.begin_attempt(&api("2026-11-23T10:00:00+08:00", 1))
            .unwrap();
        assert!(matches!(
            s.begin_attempt(&api("2026-11-23T11:00:00+08:00", 1)),
            Err(StoreError::BudgetExhausted {
                spent: 1,
                budget: 1
            })
        ));
        s.begin_attempt(&attempt("2026-11-23T11:00:00+08:00", 3))
            .unwrap();
        let all = s
            .attempts_since(parse("2026-11-01T00:00:00+08:00").unwrap())
            .unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[2].kind, ClearKind::Api);
        assert_eq!(all[2].api.as_deref(), Some("/cgi-bin/user/get"));
    }

    #[test]
    fn the_trigger_guards_the_budget_even_past_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        let insert = |budget: u32| {
            s.with(|c| {
                c.execute(
                    "INSERT INTO clears (appid, account, month, day, started_at, trigger, reason,
                                         method, budget, outcome, spent)
                     VALUES ('wx1', 'a', '2026-11', '2026-11-22', 'x', 't', 'r', 'token', ?1, 'ok', 1)",
                    [budget],
                )
            })
        };
        insert(1).unwrap();
        let err = insert(1).unwrap_err().to_string();
        assert!(err.contains("monthly clear budget exceeded"), "{err}");
    }

    #[test]
    fn in_flight_attempts_are_spent_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        s.begin_attempt(&attempt("2026-11-22T10:00:00+08:00", 10))
            .unwrap();
        drop(s);
        let (s, r) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        assert_eq!(r.in_flight_settled, 1);
        let all = s
            .attempts_since(parse("2026-11-01T00:00:00+08:00").unwrap())
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].outcome, AttemptOutcome::Unknown);
        assert!(all[0].spent());
    }

    #[test]
    fn account_errors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        assert!(s.account_error("wx1").unwrap().is_none());
        s.set_account_error(
            "wx1",
            "fp",
            Some(40164),
            "ip not whitelisted",
            chrono::Utc::now(),
        )
        .unwrap();
        let (fp, code, _, _) = s.account_error("wx1").unwrap().unwrap();
        assert_eq!((fp.as_str(), code), ("fp", Some(40164)));
        s.clear_account_error("wx1").unwrap();
        assert!(s.account_error("wx1").unwrap().is_none());
    }
}
