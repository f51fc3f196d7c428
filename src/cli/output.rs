//! What the commands print: one human style (a first line `SUBJECT: RESULT`, details
//! indented below, tables for status and presets), and the JSON documents of `--json`.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::config::{Config, ConfigErrors, LimitTable, PresetName, Warning};
use crate::engine::StatusDoc;

/// The status document as a table: account, state, clears used/left, top APIs.
pub fn render_status(doc: &StatusDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "now {}   next reset {}{}",
        doc.now,
        doc.next_reset,
        if doc.dry_run { "   (dry run)" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>6} {:>5} {:>6} {:>9}  TOP APIS (used/limit)",
        "ACCOUNT", "STATE", "CLEARS", "LEFT", "TODAY", "API LEFT"
    );
    for a in &doc.accounts {
        let top: Vec<String> = a
            .apis
            .iter()
            .filter(|q| q.used > 0 || q.blocked)
            .take(3)
            .map(|q| {
                let limit = q.limit.map_or("-".into(), |l| l.to_string());
                let pct = q
                    .ratio
                    .map_or(String::new(), |r| format!(" {:.0}%", r * 100.0));
                let blocked = if q.blocked { " BLOCKED" } else { "" };
                format!("{} {}/{}{}{}", q.api, q.used, limit, pct, blocked)
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>6} {:>5} {:>6} {:>9}  {}",
            a.name,
            a.state,
            a.clears.used,
            a.clears.left,
            a.clears.today,
            a.api_clears.left,
            if top.is_empty() {
                "-".to_string()
            } else {
                top.join(", ")
            }
        );
        if let Some(last) = &a.clears.last {
            let _ = writeln!(
                out,
                "{:<20} last clear {} {} ({})",
                "", last.at, last.outcome, last.reason
            );
        }
        if let Some(last) = &a.api_clears.last {
            let _ = writeln!(
                out,
                "{:<20} last interface clear {} {} ({})",
                "", last.at, last.outcome, last.reason
            );
        }
        if let Some(e) = &a.error {
            let _ = writeln!(out, "{:<20} error: {}", "", e.message);
        }
    }
    out
}

/// `report`: what was reported and what the daemon accepted.
pub fn report_line(
    account: &str,
    api: &str,
    calls: Option<u64>,
    errcode: Option<i64>,
    answer: &Value,
) -> String {
    let what = match (calls, errcode) {
        (Some(n), _) => format!("{n} call{}", if n == 1 { "" } else { "s" }),
        (_, Some(code)) => format!("errcode {code}"),
        _ => String::new(),
    };
    let accepted = answer["accepted"].as_u64().unwrap_or(0);
    format!("{account} {api}: reported {what} (accepted {accepted})\n")
}

/// `clear`: the outcome, then why.
pub fn clear_lines(account: &str, answer: &Value) -> String {
    let outcome = answer["outcome"].as_str().unwrap_or("unknown");
    let reason = answer["reason"].as_str().unwrap_or("");
    format!("{account}: {outcome}\n  why: {reason}\n")
}

/// `check --json` for a valid config: the summary's figures, never a secret.
pub fn check_json(config: &Config, warnings: &[Warning]) -> Value {
    let d = &config.daemon;
    json!({
        "ok": true,
        "file": config.path.display().to_string(),
        "warnings": warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "errors": [],
        "listen": d.listen.to_string(),
        "api_token": d.api_token.is_some(),
        "state_dir": d.state_dir.display().to_string(),
        "dry_run": d.dry_run,
        "wechat": config.wechat.base_url,
        "poll_interval_secs": config.poll.interval.as_secs(),
        "alerts": config.alerts.len(),
        "accounts": config.accounts.iter().map(|a| json!({
            "name": a.name,
            "appid": a.appid,
            "kind": a.kind.as_str(),
            "preset": a.preset.as_str(),
            "clear_via": a.clear_via.as_str(),
            "watched": a.watched().len(),
            "threshold": a.policy.threshold,
            "reserve": a.policy.reserve,
            "monthly_clears": a.policy.monthly_clears,
        })).collect::<Vec<_>>(),
    })
}

/// `check --json` for an invalid config: every error, located.
pub fn check_errors_json(file: &std::path::Path, errors: &ConfigErrors) -> Value {
    json!({
        "ok": false,
        "file": file.display().to_string(),
        "warnings": [],
        "errors": errors.0.iter().map(|e| json!({
            "file": e.file.display().to_string(),
            "line": e.line,
            "column": e.column,
            "key": e.key,
            "account": e.account,
            "message": e.message,
            "text": e.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// `presets --json`: each table as path → daily limit (`null`: no fixed limit).
pub fn presets_json(which: Option<PresetName>) -> Value {
    let names = match which {
        Some(p) => vec![p],
        None => vec![PresetName::Normal, PresetName::Test],
    };
    let mut doc = serde_json::Map::new();
    for p in names {
        let mut table = serde_json::Map::new();
        for e in LimitTable::from_preset(p).entries() {
            for path in &e.paths {
                table.insert(path.clone(), json!(e.limit));
            }
        }
        doc.insert(p.as_str().to_string(), Value::Object(table));
    }
    Value::Object(doc)
}
