//! The CLI's client of the running daemon's HTTP API: `status`, `report` and `clear`
//! talk to the config's `listen` address, with its API token when one is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;

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
        self.status_filtered(&[]).await
    }

    /// `GET /v1/status` with filters (`platform`, `state`, `account`) as query pairs.
    pub async fn status_filtered(&self, filters: &[(&str, &str)]) -> Result<Value, ClientError> {
        let query: Vec<String> = filters
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let path = if query.is_empty() {
            "/v1/status".to_string()
        } else {
            format!("/v1/status?{}", query.join("&"))
        };
        self.call(reqwest::Method::GET, &path, None).await
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
        api: Option<String>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/accounts/{account}/clear");
        let mut body = json!({"force": force, "reason": reason});
        if let Some(api) = api {
            body["api"] = json!(api);
        }
        self.call(reqwest::Method::POST, &path, Some(body)).await
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
