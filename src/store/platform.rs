//! Third-party platform state (SPEC §8): the latest `component_verify_ticket`, the
//! authorizers with their refresh tokens, and when each platform last discovered them.
//! Tickets and refresh tokens are secrets: they leave this module only as [`Secret`]s.
//! Every change is one transaction, so a crash leaves either all of it or none.
//! Pushes carry WeChat's `CreateTime`: a change older than the one already applied to
//! the same row (a replayed or late push) is ignored.

use rusqlite::{params, OptionalExtension};

use super::{parse_ts, ts, Store, StoreError};
use crate::config::Secret;
use crate::time::Timestamp;

/// Created if missing at every open (the tables are additive, so no schema version).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS platform_tickets (
    component_appid TEXT PRIMARY KEY,
    ticket          TEXT NOT NULL,
    create_time     INTEGER NOT NULL,   -- the push's CreateTime (Unix seconds)
    received_at     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS platform_authorizers (
    component_appid TEXT NOT NULL,
    appid           TEXT NOT NULL,
    refresh_token   TEXT NOT NULL,
    auth_time       INTEGER,            -- from api_get_authorizer_list, Unix seconds
    event_time      INTEGER NOT NULL,   -- CreateTime of the latest push applied (0: none)
    added_at        TEXT NOT NULL,
    removed_at      TEXT,               -- set by unauthorized / 61023; the row stays
    PRIMARY KEY (component_appid, appid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS platform_discoveries (
    component_appid TEXT PRIMARY KEY,
    at              TEXT NOT NULL,
    total           INTEGER NOT NULL
);
";

/// The stored ticket of a platform.
#[derive(Debug, Clone)]
pub struct StoredTicket {
    pub ticket: Secret,
    /// The push's `CreateTime` (Unix seconds); for a ticket posted by hand, when it was.
    pub create_time: i64,
    pub received_at: Timestamp,
}

/// An authorizer as discovered or pushed.
#[derive(Debug, Clone)]
pub struct StoredAuthorizer {
    pub appid: String,
    pub refresh_token: Secret,
    pub auth_time: Option<i64>,
}

/// One entry of `api_get_authorizer_list`.
#[derive(Debug, Clone)]
pub struct ListedAuthorizer {
    pub appid: String,
    pub refresh_token: Secret,
    pub auth_time: Option<i64>,
}

impl Store {
    /// Creates the platform tables if missing, and makes the file private (0600): it now
    /// holds tickets and refresh tokens.
    pub(super) fn platform_schema(&self) -> Result<(), StoreError> {
        self.with(|c| c.execute_batch(SCHEMA))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&self.file, private).map_err(|source| StoreError::Dir {
                dir: self.file.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Keeps `ticket` unless a ticket from a later push is already stored. Returns
    /// whether it was kept.
    pub fn save_ticket(
        &self,
        component_appid: &str,
        ticket: &str,
        create_time: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO platform_tickets (component_appid, ticket, create_time, received_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (component_appid) DO UPDATE
                 SET ticket = ?2, create_time = ?3, received_at = ?4
                 WHERE excluded.create_time >= platform_tickets.create_time",
                params![component_appid, ticket, create_time, ts(now)],
            )?;
            Ok(n == 1)
        })
    }

    pub fn ticket(&self, component_appid: &str) -> Result<Option<StoredTicket>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT ticket, create_time, received_at FROM platform_tickets
                 WHERE component_appid = ?1",
                [component_appid],
                |r| {
                    Ok(StoredTicket {
                        ticket: Secret::new(r.get::<_, String>(0)?),
                        create_time: r.get(1)?,
                        received_at: parse_ts(&r.get::<_, String>(2)?),
                    })
                },
            )
            .optional()
        })
    }

    /// An `authorized` / `updateauthorized` push: adds (or re-adds) the authorizer with
    /// its refresh token, unless a later push about it was already applied.
    pub fn authorizer_pushed(
        &self,
        component_appid: &str,
        appid: &str,
        refresh_token: &str,
        event_time: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO platform_authorizers
                     (component_appid, appid, refresh_token, auth_time, event_time, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT (component_appid, appid) DO UPDATE
                 SET refresh_token = ?3, event_time = ?4, removed_at = NULL
                 WHERE ?4 >= platform_authorizers.event_time",
                params![component_appid, appid, refresh_token, event_time, ts(now)],
            )?;
            Ok(n == 1)
        })
    }

    /// An `unauthorized` push (`event_time` its CreateTime) or 61023 from
    /// `api_authorizer_token` (`event_time` now): the authorizer leaves status; its row
    /// stays, with the ledger, as history. Returns whether an active authorizer left.
    pub fn authorizer_removed(
        &self,
        component_appid: &str,
        appid: &str,
        event_time: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE platform_authorizers SET removed_at = ?4, event_time = ?3
                 WHERE component_appid = ?1 AND appid = ?2 AND removed_at IS NULL
                   AND ?3 >= event_time",
                params![component_appid, appid, event_time, ts(now)],
            )?;
            Ok(n == 1)
        })
    }

    /// A new refresh token from `api_authorizer_token` (WeChat may rotate it).
    pub fn save_refresh_token(
        &self,
        component_appid: &str,
        appid: &str,
        refresh_token: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE platform_authorizers SET refresh_token = ?3
                 WHERE component_appid = ?1 AND appid = ?2",
                params![component_appid, appid, refresh_token],
            )
            .map(|_| ())
        })
    }

    /// A whole discovery (every page of `api_get_authorizer_list`) in one transaction:
    /// listed authorizers are added or updated (a removed one that is listed again is
    /// back), and the time and total are recorded. An authorizer removed by a push that
    /// came after `started` (its `event_time`) stays removed.
    pub fn save_discovery(
        &self,
        component_appid: &str,
        listed: &[ListedAuthorizer],
        started: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let started_secs = started.timestamp();
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO platform_authorizers
                         (component_appid, appid, refresh_token, auth_time, event_time, added_at)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5)
                     ON CONFLICT (component_appid, appid) DO UPDATE
                     SET refresh_token = ?3, auth_time = ?4,
                         removed_at = CASE WHEN platform_authorizers.event_time > ?6
                                           THEN platform_authorizers.removed_at ELSE NULL END",
                )?;
                for a in listed {
                    stmt.execute(params![
                        component_appid,
                        a.appid,
                        a.refresh_token.expose(),
                        a.auth_time,
                        ts(now),
                        started_secs
                    ])?;
                }
            }
            tx.execute(
                "INSERT INTO platform_discoveries (component_appid, at, total) VALUES (?1, ?2, ?3)
                 ON CONFLICT (component_appid) DO UPDATE SET at = ?2, total = ?3",
                params![component_appid, ts(now), listed.len() as i64],
            )?;
            tx.commit()
        })
    }

    /// When the platform last completed a discovery, and how many it listed.
    pub fn last_discovery(
        &self,
        component_appid: &str,
    ) -> Result<Option<(Timestamp, u64)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT at, total FROM platform_discoveries WHERE component_appid = ?1",
                [component_appid],
                |r| {
                    Ok((
                        parse_ts(&r.get::<_, String>(0)?),
                        r.get::<_, i64>(1)? as u64,
                    ))
                },
            )
            .optional()
        })
    }

    /// The refresh token of a current (not removed) authorizer.
    pub fn refresh_token(
        &self,
        component_appid: &str,
        appid: &str,
    ) -> Result<Option<Secret>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT refresh_token FROM platform_authorizers
                 WHERE component_appid = ?1 AND appid = ?2 AND removed_at IS NULL",
                [component_appid, appid],
                |r| Ok(Secret::new(r.get::<_, String>(0)?)),
            )
            .optional()
        })
    }

    /// How many current (not removed) authorizers the platform has.
    pub fn authorizer_count(&self, component_appid: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM platform_authorizers
                 WHERE component_appid = ?1 AND removed_at IS NULL",
                [component_appid],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    /// The platform's current (not removed) authorizers, by appid.
    pub fn authorizers(&self, component_appid: &str) -> Result<Vec<StoredAuthorizer>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT appid, refresh_token, auth_time FROM platform_authorizers
                 WHERE component_appid = ?1 AND removed_at IS NULL ORDER BY appid",
            )?;
            let rows = stmt.query_map([component_appid], |r| {
                Ok(StoredAuthorizer {
                    appid: r.get(0)?,
                    refresh_token: Secret::new(r.get::<_, String>(1)?),
                    auth_time: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "wx7c8d9e0f1a2b3c4d";

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path(), chrono::Utc::now()).unwrap();
        (dir, s)
    }

    #[test]
    fn the_latest_ticket_wins_and_a_replayed_older_one_changes_nothing() {
        let (dir, s) = open();
        let now = chrono::Utc::now();
        assert!(s.ticket(C).unwrap().is_none());
        assert!(s.save_ticket(C, "ticket-1", 100, now).unwrap());
        assert!(s.save_ticket(C, "ticket-2", 200, now).unwrap());
        assert!(!s.save_ticket(C, "ticket-1", 100, now).unwrap());
        assert_eq!(s.ticket(C).unwrap().unwrap().ticket.expose(), "ticket-2");
        drop(s);
        // Survives a reopen; the file is private.
        let (s, _) = Store::open(dir.path(), now).unwrap();
        let t = s.ticket(C).unwrap().unwrap();
        assert_eq!((t.ticket.expose(), t.create_time), ("ticket-2", 200));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.file()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn pushes_apply_in_create_time_order() {
        let (_dir, s) = open();
        let now = chrono::Utc::now();
        let a = "wx1a2b3c4d5e6f7a8b";
        assert!(s.authorizer_pushed(C, a, "rt-1", 100, now).unwrap());
        assert!(s.authorizer_removed(C, a, 200, now).unwrap());
        assert!(s.authorizers(C).unwrap().is_empty());
        // A replay of the older authorized push does not bring it back.
        assert!(!s.authorizer_pushed(C, a, "rt-1", 100, now).unwrap());
        assert!(s.authorizers(C).unwrap().is_empty());
        // Authorized again, later.
        assert!(s.authorizer_pushed(C, a, "rt-2", 300, now).unwrap());
        let list = s.authorizers(C).unwrap();
        assert_eq!((list.len(), list[0].refresh_token.expose()), (1, "rt-2"));
        // A replayed unauthorized (200) does not remove it again.
        assert!(!s.authorizer_removed(C, a, 200, now).unwrap());
        assert_eq!(s.authorizers(C).unwrap().len(), 1);
    }

    #[test]
    fn a_discovery_is_stored_whole_and_respects_later_removals() {
        let (_dir, s) = open();
        let started = chrono::Utc::now();
        let listed: Vec<ListedAuthorizer> = (0..1200)
            .map(|i| ListedAuthorizer {
                appid: format!("wx{i:016x}"),
                refresh_token: Secret::new(format!("rt-{i}")),
                auth_time: Some(1_700_000_000),
            })
            .collect();
        // Removed by a push after the discovery started: stays removed.
        let gone = &listed[5].appid;
        s.authorizer_pushed(C, gone, "rt", 1, started).unwrap();
        s.authorizer_removed(C, gone, started.timestamp() + 10, started)
            .unwrap();
        s.save_discovery(C, &listed, started, started).unwrap();
        assert_eq!(s.authorizers(C).unwrap().len(), 1199);
        assert_eq!(s.last_discovery(C).unwrap().unwrap().1, 1200);
        s.save_refresh_token(C, &listed[0].appid, "rt-new").unwrap();
        assert_eq!(
            s.authorizers(C).unwrap()[0].refresh_token.expose(),
            "rt-new"
        );
    }
}
