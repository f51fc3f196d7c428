//! The CLI's side of the HTTP API: `status`, `report` and `clear` talk to the running
//! daemon at the config's `listen` address, with its API token when one is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::StatusDoc;

/// A failure to talk to the daemon, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

pub struct DaemonClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl DaemonClient {
    pub fn new(config: &Config) -> DaemonClient {
        // A daemon listening on every address is reached on loopback.
        let mut addr: SocketAddr = config.daemon.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        DaemonClient {
            base: format!("http://{addr}"),
            token: config
                .daemon
                .api_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("HTTP client"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            ClientError(if e.is_connect() {
                format!(
                    "cannot reach wxquotad at {} (is it running? `systemctl status wxquotad`)",
                    self.base
                )
            } else {
                format!(
                    "request to wxquotad at {} failed: {}",
                    self.base,
                    e.without_url()
                )
            })
        })?;
        let status = resp.status();
        let value: Value = resp.json().await.map_err(|e| {
            ClientError(format!(
                "unreadable answer from wxquotad: {}",
                e.without_url()
            ))
        })?;
        if !status.is_success() {
            let msg = value
                .get("error")
                .and_then(|m| m.as_str())
                .unwrap_or("no error message");
            return Err(ClientError(format!("wxquotad answered {status}: {msg}")));
        }
        Ok(value)
    }

    pub async fn status(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/v1/status", None).await
    }

    pub async fn report(&self, item: Value) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, "/v1/report", Some(item))
            .await
    }

    pub async fn clear(
        &self,
        account: &str,
        force: bool,
        reason: Option<String>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/accounts/{account}/clear");
        self.call(
            reqwest::Method::POST,
            &path,
            Some(json!({"force": force, "reason": reason})),
        )
        .await
    }
}

/// The status document as a table: account, state, clears used/left, top APIs.
pub fn render_status(doc: &StatusDoc) -> String {
    use std::fmt::Write;
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
        "{:<20} {:<10} {:>6} {:>5} {:>6}  TOP APIS (used/limit)",
        "ACCOUNT", "STATE", "CLEARS", "LEFT", "TODAY"
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
            "{:<20} {:<10} {:>6} {:>5} {:>6}  {}",
            a.name,
            a.state,
            a.clears.used,
            a.clears.left,
            a.clears.today,
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
        if let Some(e) = &a.error {
            let _ = writeln!(out, "{:<20} error: {}", "", e.message);
        }
    }
    out
}
