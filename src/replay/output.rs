//! What `wxquotad replay` prints: the `--json` document of SPEC §9, or a table per
//! account and day.

use std::fmt::Write;

use serde::Serialize;

use super::model::{total, ClearKind, DayStats};
use super::{AccountRun, Replay};
use crate::time::show;

use super::traffic::minute_start;

#[derive(Debug, Serialize)]
pub struct ReplayDoc {
    pub from: String,
    pub to: String,
    pub source: &'static str,
    pub accounts: Vec<AccountDoc>,
}

#[derive(Debug, Serialize)]
pub struct AccountDoc {
    pub name: String,
    pub wanted: u64,
    pub served: u64,
    pub rejected: u64,
    pub blocked_minutes: u64,
    pub clears: Vec<ClearDoc>,
    pub none: NoneDoc,
    /// The naive rule's result (an extension of §9, the baseline policies are
    /// measured against): clear at the first 45009 whenever a budget allows.
    pub naive: NoneDoc,
    pub oracle: OracleDoc,
}

#[derive(Debug, Serialize)]
pub struct ClearDoc {
    pub at: String,
    /// "account" or "api".
    pub kind: &'static str,
    /// The interface of a per-interface clear; `null` for an account clear.
    pub api: Option<String>,
    /// "45009" or "threshold" (what the daemon's decision said).
    pub trigger: String,
}

#[derive(Debug, Serialize)]
pub struct NoneDoc {
    pub rejected: u64,
}

#[derive(Debug, Serialize)]
pub struct OracleDoc {
    pub rejected: u64,
    pub clears: Vec<OracleClearDoc>,
    /// Whether `rejected` is the proven optimum (traffic on one limited interface) or
    /// the score of the best schedule found (an upper bound). An extension of §9.
    pub exact: bool,
}

#[derive(Debug, Serialize)]
pub struct OracleClearDoc {
    pub at: String,
    pub kind: &'static str,
    pub api: Option<String>,
}

/// The `--json` document.
pub fn doc(r: &Replay) -> ReplayDoc {
    ReplayDoc {
        from: show(minute_start(r.from)),
        to: show(minute_start(r.to)),
        source: r.source.as_str(),
        accounts: r.accounts.iter().map(account_doc).collect(),
    }
}

fn account_doc(a: &AccountRun) -> AccountDoc {
    let t = total(a.days.values());
    AccountDoc {
        name: a.name.clone(),
        wanted: t.wanted,
        served: t.served,
        rejected: t.rejected,
        blocked_minutes: t.blocked_minutes,
        clears: a
            .clears
            .iter()
            .map(|c| ClearDoc {
                at: show(minute_start(c.minute)),
                kind: if c.api.is_some() { "api" } else { "account" },
                api: c.api.clone(),
                trigger: c.trigger.clone(),
            })
            .collect(),
        none: NoneDoc {
            rejected: total(a.none.values()).rejected,
        },
        naive: NoneDoc {
            rejected: total(a.naive.values()).rejected,
        },
        oracle: OracleDoc {
            rejected: total(a.oracle.days.values()).rejected,
            clears: a
                .oracle
                .schedule
                .iter()
                .map(|c| {
                    let (kind, api) = match c.kind {
                        ClearKind::Account => ("account", None),
                        ClearKind::Api(q) => ("api", Some(a.quotas[q].key.clone())),
                    };
                    OracleClearDoc {
                        at: show(minute_start(c.minute)),
                        kind,
                        api,
                    }
                })
                .collect(),
            exact: a.oracle.exact,
        },
    }
}

/// (none − policy) / (none − oracle); `None` when no schedule could save anything.
pub fn efficiency(none: u64, policy: u64, oracle: u64) -> Option<f64> {
    (none > oracle).then(|| (none as f64 - policy as f64) / (none as f64 - oracle as f64))
}

/// The table: per account, one line per WeChat day and a total.
pub fn table(r: &Replay) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay {} .. {} (source {})",
        show(minute_start(r.from)),
        show(minute_start(r.to)),
        r.source.as_str()
    );
    let _ = writeln!(
        out,
        "rejected calls: with this config's policy (left), and with no clears, the naive rule \
         (clear at the first 45009 while a budget allows) and the best schedule (right)"
    );
    for a in &r.accounts {
        let _ = writeln!(out, "\n{}", a.name);
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>10} {:>8} {:>6} | {:>10} {:>10} {:>10} {:>6}",
            "day",
            "wanted",
            "served",
            "rejected",
            "blocked",
            "clears",
            "none",
            "naive",
            "oracle",
            "clears"
        );
        let line =
            |out: &mut String, label: &str, d: &DayStats, none: u64, naive: u64, o: &DayStats| {
                let _ = writeln!(
                    out,
                    "{:<10} {:>12} {:>12} {:>10} {:>8} {:>6} | {:>10} {:>10} {:>10} {:>6}",
                    label,
                    d.wanted,
                    d.served,
                    d.rejected,
                    d.blocked_minutes,
                    d.clears,
                    none,
                    naive,
                    o.rejected,
                    o.clears
                );
            };
        for (day, d) in &a.days {
            let none = a.none.get(day).map_or(0, |n| n.rejected);
            let naive = a.naive.get(day).map_or(0, |n| n.rejected);
            let o = a.oracle.days.get(day).cloned().unwrap_or_default();
            line(&mut out, &day.to_string(), d, none, naive, &o);
        }
        let t = total(a.days.values());
        let none = total(a.none.values()).rejected;
        let naive = total(a.naive.values()).rejected;
        let o = total(a.oracle.days.values());
        line(&mut out, "total", &t, none, naive, &o);
        let eff = match efficiency(none, t.rejected, o.rejected) {
            Some(e) => format!("{e:.2}"),
            None => "n/a (no clear could save a call)".into(),
        };
        let _ = writeln!(
            out,
            "efficiency (none − policy) / (none − oracle): {eff}{}",
            if a.oracle.exact {
                ""
            } else {
                "  (oracle is an upper bound: several limited interfaces or proxy retries)"
            }
        );
        for c in &a.clears {
            let _ = writeln!(
                out,
                "  clear {} {} {} (trigger {})",
                show(minute_start(c.minute)),
                if c.api.is_some() { "api" } else { "account" },
                c.api.as_deref().unwrap_or("-"),
                c.trigger
            );
        }
    }
    out
}
