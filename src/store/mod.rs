//! The state file: one SQLite database in `state_dir` holding per-day usage counters,
//! the clear ledger (every attempt: when, why, how, outcome) and accounts in `error`.
//! WAL with `synchronous=FULL`, so a committed attempt survives a crash or power loss.
//! Everything is keyed by appid: the monthly budget belongs to the WeChat account,
//! whatever name the config gives it.

mod identity;
mod ledger;
mod lock;
mod platform;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

pub use ledger::{Attempt, AttemptOutcome, ClearKind, NewAttempt, Settlement};
pub use lock::{lock_path, StateLock, LOCK_FILE};
pub use platform::{ListedAuthorizer, StoredAuthorizer, StoredTicket};
pub use usage::UsageRow;

use crate::time::Timestamp;

/// The database file's name inside `state_dir`.
pub const FILE_NAME: &str = "wxquotad.db";

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {file}: {source}")]
    Sqlite {
        file: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {file} has schema version {found}, newer than this build knows ({SCHEMA_VERSION}); upgrade wxquotad")]
    TooNew { file: PathBuf, found: i64 },
    /// The state file was deleted or replaced while running: nothing is recorded.
    #[error("{0}")]
    Lost(String),
    /// The attempt would take this month's spent clears past the budget it was given.
    #[error("monthly clear budget of {budget} is spent ({spent} counted this month)")]
    BudgetExhausted { spent: u32, budget: u32 },
    /// Another gate, checked where the row is written (daily cap, min_interval, a clock
    /// behind the last attempt): no row was written.
    #[error("{0}")]
    GateClosed(String),
    /// Another process holds `state_dir`.
    #[error(
        "state directory {dir} is in use by another wxquotad ({holder}); one daemon per state_dir"
    )]
    Locked { dir: PathBuf, holder: String },
}

/// The open state file. One connection behind a std mutex: every statement is short,
/// SQLite serialises writers anyway, and callers reach it from blocking sections.
pub struct Store {
    file: PathBuf,
    conn: Mutex<Connection>,
    identity: identity::Identity,
    /// Held as long as the store is open: one owner per state_dir.
    _lock: StateLock,
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Attempts left in flight by a crash, now settled as unknown (spent).
    pub in_flight_settled: usize,
}

impl Store {
    /// Takes the state_dir lock (failing at once, naming the holder, when another
    /// process has it), then opens (creating if needed) the database in `state_dir`,
    /// migrates it, and settles attempts a previous run left in flight as unknown:
    /// they count as spent.
    pub fn open(state_dir: &Path, now: Timestamp) -> Result<(Store, Recovery), StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        let lock = StateLock::take(state_dir)?;
        let file = state_dir.join(FILE_NAME);
        let conn = Connection::open(&file).map_err(|source| StoreError::Sqlite {
            file: file.clone(),
            source,
        })?;
        let store = Store {
            identity: identity::Identity::record(&file),
            file,
            conn: Mutex::new(conn),
            _lock: lock,
        };
        store.with(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            Ok(())
        })?;
        store.migrate()?;
        let in_flight_settled = store.settle_in_flight_as_unknown(now)?;
        Ok((store, Recovery { in_flight_settled }))
    }

    /// `Err(why)` once the state file was deleted or replaced while running (latched
    /// until a restart); then no clear attempt can be recorded.
    pub fn check_identity(&self) -> Result<(), String> {
        self.identity.check()
    }

    /// The database file's path.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let version: i64 = self.with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                file: self.file.clone(),
                found: version,
            });
        }
        if version < 1 {
            self.with(|c| c.execute_batch(SCHEMA_V1))?;
        }
        if version < 2 {
            self.with(|c| c.execute_batch(SCHEMA_V2))?;
        }
        self.platform_schema()?;
        Ok(())
    }

    /// Runs `f` on the connection, naming the file in any error.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|source| StoreError::Sqlite {
            file: self.file.clone(),
            source,
        })
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }
}

/// Version 1. `clears.spent` is 1 for an attempt in flight, succeeded, or of unknown
/// outcome; the trigger refuses an insert that would take the month's spent attempts
/// for one appid past the budget the insert carries, so the invariant holds even if a
/// caller's own check were wrong.
const SCHEMA_V1: &str = "
BEGIN;
CREATE TABLE usage (
    appid   TEXT NOT NULL,
    day     TEXT NOT NULL,              -- WeChat day, YYYY-MM-DD in UTC+8
    api     TEXT NOT NULL,              -- normalised API path
    calls   INTEGER NOT NULL CHECK (calls >= 0),
    blocked INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    PRIMARY KEY (appid, day, api)
) WITHOUT ROWID;

CREATE TABLE clears (
    id          INTEGER PRIMARY KEY,
    appid       TEXT NOT NULL,
    account     TEXT NOT NULL,          -- the config name at the time
    month       TEXT NOT NULL,          -- YYYY-MM in UTC+8
    day         TEXT NOT NULL,          -- YYYY-MM-DD in UTC+8
    started_at  TEXT NOT NULL,          -- RFC 3339 UTC
    finished_at TEXT,
    trigger     TEXT NOT NULL,          -- threshold | 45009 | manual | forced
    reason      TEXT NOT NULL,
    method      TEXT NOT NULL,          -- token | appsecret
    budget      INTEGER NOT NULL,       -- spent attempts allowed this month for this insert
    outcome     TEXT NOT NULL CHECK (outcome IN ('in_flight', 'ok', 'failed', 'unknown')),
    errcode     INTEGER,
    detail      TEXT,
    spent       INTEGER NOT NULL CHECK (spent IN (0, 1))
);
CREATE INDEX clears_by_month ON clears (appid, month);

CREATE TRIGGER clears_within_budget BEFORE INSERT ON clears
WHEN NEW.spent = 1 AND (SELECT count(*) FROM clears
                        WHERE appid = NEW.appid AND month = NEW.month AND spent = 1) >= NEW.budget
BEGIN
    SELECT RAISE(ABORT, 'monthly clear budget exceeded');
END;

CREATE TABLE account_errors (
    appid       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,          -- Account::fingerprint() when the error was seen
    errcode     INTEGER,
    message     TEXT NOT NULL,
    at          TEXT NOT NULL
);

PRAGMA user_version = 1;
COMMIT;
";

/// Version 2: per-interface clears (clearApiQuota) have their own rows and budget.
/// `kind` is 'account' (clear_quota, 10 a month) or 'api' (clearApiQuota, 50 a month,
/// `api` naming the path); the budget trigger counts each kind on its own.
const SCHEMA_V2: &str = "
BEGIN;
ALTER TABLE clears ADD COLUMN kind TEXT NOT NULL DEFAULT 'account' CHECK (kind IN ('account', 'api'));
ALTER TABLE clears ADD COLUMN api TEXT;
DROP TRIGGER clears_within_budget;
CREATE TRIGGER clears_within_budget BEFORE INSERT ON clears
WHEN NEW.spent = 1 AND (SELECT count(*) FROM clears
                        WHERE appid = NEW.appid AND month = NEW.month AND kind = NEW.kind
                          AND spent = 1) >= NEW.budget
BEGIN
    SELECT RAISE(ABORT, 'monthly clear budget exceeded');
END;
PRAGMA user_version = 2;
COMMIT;
";

/// Timestamps are stored as RFC 3339 UTC with milliseconds, which sort as text.
fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Timestamp {
    crate::time::parse(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_twice_and_keeps_schema() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now();
        let (s, _) = Store::open(dir.path(), now).unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok");
        let second = Store::open(dir.path(), now);
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "one owner per state_dir"
        );
        drop(s);
        let (s, r) = Store::open(dir.path(), now).unwrap();
        assert_eq!(r.in_flight_settled, 0);
        let mode: String = s
            .with(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_deleted_or_replaced_file_stops_attempts() {
        let now = chrono::Utc::now();
        let attempt = NewAttempt {
            appid: "wx448f04719cd48f69".into(),
            account: "shop".into(),
            at: now,
            trigger: "manual".into(),
            reason: "test".into(),
            method: "token".into(),
            kind: ClearKind::Account,
            api: None,
            budget: 10,
            day_cap: 100,
            min_interval: std::time::Duration::ZERO,
        };
        for replace in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (s, _) = Store::open(dir.path(), now).unwrap();
            assert!(s.check_identity().is_ok());
            s.begin_attempt(&attempt).unwrap();
            let file = dir.path().join(FILE_NAME);
            std::fs::remove_file(&file).unwrap();
            if replace {
                std::fs::write(&file, b"").unwrap();
            }
            let why = s.check_identity().unwrap_err();
            assert!(
                why.contains(if replace {
                    "was replaced"
                } else {
                    "was deleted"
                }),
                "{why}"
            );
            assert!(matches!(
                s.begin_attempt(&attempt),
                Err(StoreError::Lost(_))
            ));
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now();
        let (s, _) = Store::open(dir.path(), now).unwrap();
        s.with(|c| c.execute_batch("PRAGMA user_version = 99"))
            .unwrap();
        drop(s);
        assert!(matches!(
            Store::open(dir.path(), now),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
