//! Per-day usage counters: what reports said, flushed from memory every few seconds.

use chrono::NaiveDate;
use rusqlite::params;

use super::{Store, StoreError};

/// One API's count for one account on one WeChat day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub appid: String,
    pub day: NaiveDate,
    pub api: String,
    pub calls: u64,
    pub blocked: bool,
}

impl Store {
    /// Writes the rows (their full current values, not increments) in one transaction.
    pub fn save_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO usage (appid, day, api, calls, blocked) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (appid, day, api) DO UPDATE SET calls = ?4, blocked = ?5",
                )?;
                for r in rows {
                    stmt.execute(params![
                        r.appid,
                        r.day.to_string(),
                        r.api,
                        r.calls as i64,
                        r.blocked
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Every counter of WeChat day `day`.
    pub fn load_usage(&self, day: NaiveDate) -> Result<Vec<UsageRow>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT appid, api, calls, blocked FROM usage WHERE day = ?1")?;
            let rows = stmt.query_map([day.to_string()], |r| {
                Ok(UsageRow {
                    appid: r.get(0)?,
                    day,
                    api: r.get(1)?,
                    calls: r.get::<_, i64>(2)? as u64,
                    blocked: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Sets every counter of `appid` on `day` back to zero (after a clear took effect).
    pub fn reset_usage(&self, appid: &str, day: NaiveDate) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE usage SET calls = 0, blocked = 0 WHERE appid = ?1 AND day = ?2",
                params![appid, day.to_string()],
            )
            .map(|_| ())
        })
    }

    /// Deletes counters older than `before` (they only matter on their own day).
    pub fn prune_usage(&self, before: NaiveDate) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM usage WHERE day < ?1", [before.to_string()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let row = |api: &str, calls| UsageRow {
            appid: "wx448f04719cd48f69".into(),
            day,
            api: api.into(),
            calls,
            blocked: false,
        };
        s.save_usage(&[row("/a", 5), row("/b", 7)]).unwrap();
        s.save_usage(&[row("/a", 9)]).unwrap();
        let mut got = s.load_usage(day).unwrap();
        got.sort_by(|a, b| a.api.cmp(&b.api));
        assert_eq!(got, vec![row("/a", 9), row("/b", 7)]);
        assert!(s.load_usage(day.succ_opt().unwrap()).unwrap().is_empty());
        s.reset_usage("wx448f04719cd48f69", day).unwrap();
        assert!(s.load_usage(day).unwrap().iter().all(|r| r.calls == 0));
        assert_eq!(s.prune_usage(day.succ_opt().unwrap()).unwrap(), 2);
    }
}
