//! The counting proxy (SPEC §7): serves WeChat's API to applications, forwards every
//! call to WeChat, counts it through the engine's one report path, serves access
//! tokens as a central token server, and clears-and-retries on 45009, never sending a
//! call twice unless WeChat certainly did not execute it.
//!
//! Layout:
//! - [`server`]: the listener (HTTP/1.1 keep-alive, optional TLS, graceful stop);
//! - [`request`]: one request's life as phases (access → attribution → tokens →
//!   forward → count → decide and retry);
//! - [`attribution`]: which account a call belongs to;
//! - [`tokens`]: the token server and the tokens handed out;
//! - [`upstream`]: the pooled client to WeChat, streaming bodies, 502 vs 504;
//! - [`verdict`]: the "never twice" rule and what a try counts, pure;
//! - [`reply`]: WeChat-shaped error answers.

pub mod attribution;
mod reply;
mod request;
mod server;
mod tokens;
mod upstream;
pub mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::ProxySettings;
use crate::engine::Engine;

/// What every request shares.
pub(crate) struct Proxy {
    engine: Engine,
    settings: ProxySettings,
    upstream: upstream::Upstream,
    handed_out: tokens::HandedOut,
}

impl Proxy {
    /// `[wechat] base_url`, then `fallback_urls`, as the config in force says.
    fn hosts(&self) -> Vec<String> {
        let config = self.engine.config();
        let mut hosts = vec![config.wechat.base_url.clone()];
        hosts.extend(config.wechat.fallback_urls.iter().cloned());
        hosts
    }

    /// Counts one try in the metrics by account and outcome.
    fn metrics_outcome(&self, account: &str, t: &upstream::Try) {
        let outcome = match t.tried() {
            verdict::Tried::NotSent => "not_sent".to_string(),
            verdict::Tried::NoAnswer => "no_answer".to_string(),
            verdict::Tried::Answered { status, errcode } => match errcode {
                Some(code) => code.to_string(),
                None if status == 200 => "0".to_string(),
                None => format!("http_{status}"),
            },
        };
        self.engine.metrics().count_proxied(account, &outcome);
    }
}

/// A running proxy.
pub struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets calls in flight finish (at most `drain`), and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How long calls in flight may take to finish when the daemon stops.
fn drain_limit(settings: &ProxySettings) -> Duration {
    settings.timeout + settings.hold + Duration::from_secs(1)
}

/// Binds `settings.listen` and serves until [`Running::stop`]. Errors (the address,
/// the TLS files) name what is wrong.
pub async fn start(engine: Engine, settings: ProxySettings) -> Result<Running, String> {
    let tls = match &settings.tls {
        Some(files) => Some(server::tls_acceptor(files)?),
        None => None,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {} ([proxy] listen): {e}", settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if tls.is_none() && !addr.ip().is_loopback() {
        warn!(addr = %addr, "the proxy serves plain HTTP on a non-loopback address: access tokens cross the network unencrypted (set [proxy] tls_cert_file and tls_key_file)");
    }
    info!(event = "proxy_listening", addr = %addr, tls = tls.is_some(), "counting proxy ready");
    let drain = drain_limit(&settings);
    let proxy = Arc::new(Proxy {
        upstream: upstream::Upstream::new(settings.timeout),
        engine,
        settings,
        handed_out: tokens::HandedOut::default(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, tls, proxy, stop_rx, drain));
    Ok(Running { addr, stop, task })
}
