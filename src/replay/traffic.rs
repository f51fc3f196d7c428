//! The traffic file of `wxquotad replay` (SPEC §9): JSON Lines, sorted by time, one
//! object per account, interface and minute of demand. Parsing is strict and every
//! error names the file's line.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::time::{self, Timestamp};

/// Most calls one line may carry (the report API's own cap).
pub const MAX_CALLS: u64 = 1_000_000_000;

/// One line as written: `{"t", "account", "api", "calls"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    t: String,
    account: String,
    api: String,
    calls: u64,
}

/// A minute since the Unix epoch (UTC); minutes are the model's unit of time.
pub type Minute = i64;

/// The start of minute `m`.
pub fn minute_start(m: Minute) -> Timestamp {
    chrono::DateTime::from_timestamp(m * 60, 0).expect("minute in range")
}

/// The minute `t` falls in.
pub fn minute_of(t: Timestamp) -> Minute {
    t.timestamp().div_euclid(60)
}

/// One line of demand: calls wanted by `account` on `api` in `minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub minute: Minute,
    pub account: String,
    /// Normalised API path.
    pub api: String,
    pub calls: u64,
}

/// A parsed traffic file: demand in time order, and its span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub demand: Vec<Demand>,
}

impl Traffic {
    /// First and last minute with a line, if any.
    pub fn span(&self) -> Option<(Minute, Minute)> {
        Some((self.demand.first()?.minute, self.demand.last()?.minute))
    }

    /// The accounts named, in order of first appearance.
    pub fn accounts(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for d in &self.demand {
            if !seen.contains(&d.account.as_str()) {
                seen.push(d.account.as_str());
            }
        }
        seen
    }

    /// Calls per minute per API path for one account (lines for the same minute and
    /// path are added up).
    pub fn of_account(&self, account: &str) -> BTreeMap<Minute, BTreeMap<String, u64>> {
        let mut out: BTreeMap<Minute, BTreeMap<String, u64>> = BTreeMap::new();
        for d in self.demand.iter().filter(|d| d.account == account) {
            let calls = out
                .entry(d.minute)
                .or_default()
                .entry(d.api.clone())
                .or_default();
            *calls = calls.saturating_add(d.calls);
        }
        out
    }
}

/// What is wrong with a traffic file, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TrafficError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole traffic file. Blank lines are skipped; anything else must be one
/// object with exactly `t` (RFC 3339, on a whole minute, never earlier than the line
/// before), `account` (non-empty), `api` (an API path, normalised as reports are) and
/// `calls` (0 to [`MAX_CALLS`]).
pub fn parse(text: &str) -> Result<Traffic, TrafficError> {
    let mut demand: Vec<Demand> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| TrafficError { line, message };
        if raw.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(raw).map_err(|e| err(format!("{e}")))?;
        let t = time::parse(&l.t).ok_or_else(|| {
            err(format!(
                "\"t\": {:?} is not an RFC 3339 time such as 2026-11-03T09:15:00+08:00",
                l.t
            ))
        })?;
        if t.timestamp() % 60 != 0 || t.timestamp_subsec_nanos() != 0 {
            return Err(err(format!(
                "\"t\": {:?} is not on a whole minute (one line per minute of demand)",
                l.t
            )));
        }
        let minute = minute_of(t);
        if let Some(prev) = demand.last() {
            if minute < prev.minute {
                return Err(err(format!(
                    "\"t\": {} is earlier than the line before ({}); the file must be sorted by time",
                    l.t,
                    time::show(minute_start(prev.minute))
                )));
            }
        }
        if l.account.trim().is_empty() {
            return Err(err("\"account\" is empty".into()));
        }
        let api = crate::apipath::normalize(&l.api).map_err(|e| err(format!("\"api\": {e}")))?;
        if l.calls > MAX_CALLS {
            return Err(err(format!(
                "\"calls\": {} is more than {MAX_CALLS}",
                l.calls
            )));
        }
        demand.push(Demand {
            minute,
            account: l.account,
            api,
            calls: l.calls,
        });
    }
    Ok(Traffic { demand })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_normalises_paths() {
        let t = parse(concat!(
            r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/cgi-bin/user/get", "calls": 120}"#,
            "\n\n",
            r#"{"t": "2026-11-03T01:16:00Z", "account": "shop", "api": "cgi-bin/user/get?access_token=x", "calls": 0}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(t.demand.len(), 2);
        assert_eq!(t.demand[1].minute - t.demand[0].minute, 1);
        assert_eq!(t.demand[1].api, "/cgi-bin/user/get");
        assert_eq!(
            time::show(minute_start(t.demand[0].minute)),
            "2026-11-03T09:15:00+08:00"
        );
        assert_eq!(t.accounts(), vec!["shop"]);
    }

    #[test]
    fn every_error_names_its_line() {
        let ok = r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/cgi-bin/user/get", "calls": 1}"#;
        let cases = [
            ("{not json", "line 2: "),
            (
                r#"{"t": "yesterday", "account": "shop", "api": "/a", "calls": 1}"#,
                "not an RFC 3339",
            ),
            (
                r#"{"t": "2026-11-03T09:15:30+08:00", "account": "shop", "api": "/a", "calls": 1}"#,
                "whole minute",
            ),
            (
                r#"{"t": "2026-11-03T09:14:00+08:00", "account": "shop", "api": "/a", "calls": 1}"#,
                "sorted by time",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "", "api": "/a", "calls": 1}"#,
                "\"account\" is empty",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/a b", "calls": 1}"#,
                "\"api\"",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/a", "calls": -1}"#,
                "line 2: ",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/a", "calls": 2000000000}"#,
                "more than",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/a", "calls": 1, "x": 1}"#,
                "unknown field",
            ),
            (
                r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/a"}"#,
                "missing field",
            ),
        ];
        for (bad, want) in cases {
            let text = format!("{ok}\n{bad}\n{ok}\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
            let shown = e.to_string();
            assert!(shown.starts_with("line 2: "), "{shown}");
            assert!(shown.contains(want), "{bad}: {shown}");
        }
    }

    #[test]
    fn demand_of_one_minute_and_path_adds_up() {
        let line = r#"{"t": "2026-11-03T09:15:00+08:00", "account": "shop", "api": "/cgi-bin/user/get", "calls": 5}"#;
        let t = parse(&format!("{line}\n{line}\n")).unwrap();
        let by = t.of_account("shop");
        assert_eq!(by.len(), 1);
        assert_eq!(by.values().next().unwrap()["/cgi-bin/user/get"], 10);
    }
}
