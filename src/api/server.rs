//! The API server's accept loop: hyper's HTTP/1 connections with a header-read timeout
//! (hyper applies it while a connection waits for a request's head, so it closes slow
//! senders and idle keep-alive connections alike), a cap on open connections below the
//! process's file limit (logged when reached), and graceful shutdown. `axum::serve` sets
//! neither, and 1,100 idle connections under `LimitNOFILE=1024` made the API and
//! `/healthz` unreachable (issue 9).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// How long a connection may take to send a request's headers, and how long an idle
/// keep-alive connection is kept open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept free of connections: the state file and its WAL, WeChat and
/// alert connections, logs.
const RESERVED_FDS: u64 = 64;

/// The most connections served at once: below the process's open-file limit
/// (`RLIMIT_NOFILE`, raised by the unit's `LimitNOFILE=`), keeping [`RESERVED_FDS`]
/// (or an eighth, if more) for everything else.
pub fn connection_cap() -> usize {
    let soft = open_file_limit().unwrap_or(1024);
    let keep = RESERVED_FDS.max(soft / 8);
    soft.saturating_sub(keep).clamp(16, 1_000_000) as usize
}

/// The soft `RLIMIT_NOFILE`, from getrlimit or else /proc/self/limits.
fn open_file_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        return Some(if rl.rlim_cur == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            rl.rlim_cur
        });
    }
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and
/// lets open connections finish (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cap: usize,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                // New connections wait in the listen backlog until one closes (idle
                // ones do within HEADER_TIMEOUT).
                warn!(
                    event = "connection_cap",
                    cap, "at the connection cap: new connections wait until one closes"
                );
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // E.g. EMFILE: out of descriptors for a moment. Never spin.
                    warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout): nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    info!("API server: no new connections; waiting for open ones to finish");
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        let soft = open_file_limit().expect("the open-file limit is readable");
        let cap = connection_cap() as u64;
        assert!(cap < soft, "cap {cap} vs limit {soft}");
        assert!(cap >= 16);
    }
}
