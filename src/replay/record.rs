//! `[daemon] traffic_log`: the calls the daemon is told about, written as a traffic
//! file of SPEC §9 (JSON Lines, one line per account, interface and minute), for
//! `wxquotad replay`. Fed from the engine's report intake, the one path reports and
//! the proxy share. A reported call counts 1; a reported 45009 counts 1 too (a call
//! the application wanted and WeChat refused), so the file holds demand, not only
//! what was served. Size-capped: past `max_bytes` the file is renamed to `FILE.1`
//! (replacing the one before) and a new one starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::traffic::{minute_of, minute_start, Minute};
use crate::time::{show, Timestamp};

/// The recorder. Lines of a minute are written once the minute is over (a report or
/// tick in a later minute, or [`Recorder::flush`] at shutdown), sorted by account and
/// interface, so the file stays sorted by time.
pub struct Recorder {
    path: PathBuf,
    max_bytes: u64,
    /// The minute being gathered and its calls by (account, api).
    minute: Option<Minute>,
    calls: BTreeMap<(String, String), u64>,
    /// The last failure, so it is logged once, not on every minute.
    failing: Option<String>,
}

impl Recorder {
    pub fn new(path: PathBuf, max_bytes: u64) -> Recorder {
        Recorder {
            path,
            max_bytes,
            minute: None,
            calls: BTreeMap::new(),
            failing: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `calls` wanted by `account` on `api` at `now`; writes the minute before
    /// when `now` is in a later one. A clock stepped back adds to the current minute
    /// (the file must stay sorted).
    pub fn add(&mut self, now: Timestamp, account: &str, api: &str, calls: u64) {
        self.roll(now);
        let c = self
            .calls
            .entry((account.to_string(), api.to_string()))
            .or_default();
        *c = c.saturating_add(calls);
    }

    /// Writes the gathered minute if `now` is past it.
    pub fn roll(&mut self, now: Timestamp) {
        let m = minute_of(now);
        match self.minute {
            Some(cur) if m > cur => {
                self.write();
                self.minute = Some(m);
            }
            Some(_) => {}
            None => self.minute = Some(m),
        }
    }

    /// Writes what is gathered (shutdown). A later add in the same minute writes a
    /// second line for it, which replay adds up.
    pub fn flush(&mut self) {
        self.write();
    }

    fn write(&mut self) {
        let Some(minute) = self.minute else { return };
        if self.calls.is_empty() {
            return;
        }
        let t = show(minute_start(minute));
        let mut text = String::new();
        for ((account, api), calls) in std::mem::take(&mut self.calls) {
            let line = serde_json::json!({"t": t, "account": account, "api": api, "calls": calls});
            text.push_str(&line.to_string());
            text.push('\n');
        }
        match self.append(text.as_bytes()) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!(file = %self.path.display(), "traffic log writable again");
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.failing.as_deref() != Some(&e) {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot write the traffic log; its lines are dropped");
                }
                self.failing = Some(e);
            }
        }
    }

    fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if len > 0 && len + bytes.len() as u64 > self.max_bytes {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, PathBuf::from(old))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::traffic;
    use super::*;
    use crate::time::parse;

    fn at(hms: &str) -> Timestamp {
        parse(&format!("2026-11-18T{hms}+08:00")).unwrap()
    }

    #[test]
    fn minutes_are_written_when_they_end_and_read_back_as_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.jsonl");
        let mut r = Recorder::new(path.clone(), 1 << 20);
        r.add(at("09:00:05"), "shop", "/cgi-bin/user/get", 10);
        r.add(at("09:00:50"), "shop", "/cgi-bin/user/get", 5);
        r.add(at("09:00:51"), "blog", "/cgi-bin/menu/get", 1);
        assert!(!path.exists(), "nothing before the minute ends");
        r.add(at("09:02:00"), "shop", "/cgi-bin/user/get", 7);
        // A clock stepped back lands in the current minute.
        r.add(at("09:01:30"), "shop", "/cgi-bin/user/get", 1);
        r.flush();
        let t = traffic::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let rows: Vec<(String, &str, &str, u64)> = t
            .demand
            .iter()
            .map(|d| {
                (
                    show(minute_start(d.minute)),
                    d.account.as_str(),
                    d.api.as_str(),
                    d.calls,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "2026-11-18T09:00:00+08:00".into(),
                    "blog",
                    "/cgi-bin/menu/get",
                    1
                ),
                (
                    "2026-11-18T09:00:00+08:00".into(),
                    "shop",
                    "/cgi-bin/user/get",
                    15
                ),
                (
                    "2026-11-18T09:02:00+08:00".into(),
                    "shop",
                    "/cgi-bin/user/get",
                    8
                ),
            ]
        );
    }

    #[test]
    fn past_the_cap_the_file_moves_aside_and_a_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.jsonl");
        // One line is about 100 bytes: a cap of 250 holds two.
        let mut r = Recorder::new(path.clone(), 250);
        for m in 0..5 {
            r.add(at(&format!("09:0{m}:00")), "shop", "/cgi-bin/user/get", 1);
        }
        r.flush();
        let now = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("traffic.jsonl.1")).unwrap();
        assert!(now.len() <= 250 && old.len() <= 250, "{now}\n{old}");
        assert_eq!(
            now.lines().count() + old.lines().count(),
            3,
            "older lines are dropped with the older file"
        );
        assert!(now.contains("09:04:00"));
        // Each file is a valid traffic file on its own.
        traffic::parse(&now).unwrap();
        traffic::parse(&old).unwrap();
    }

    #[test]
    fn an_unwritable_file_drops_lines_and_never_panics() {
        let mut r = Recorder::new(PathBuf::from("/nonexistent/dir/traffic.jsonl"), 1 << 20);
        r.add(at("09:00:00"), "shop", "/cgi-bin/user/get", 1);
        r.add(at("09:01:00"), "shop", "/cgi-bin/user/get", 1);
        r.flush();
        assert!(r.failing.is_some());
    }
}
