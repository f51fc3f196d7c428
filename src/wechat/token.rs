//! Per-account stable access token cache: one `/cgi-bin/stable_token` request per
//! token lifetime, one refresh at a time.

use super::{WechatClient, WechatError};
use crate::config::Secret;
use crate::time::Timestamp;

/// A cached token is replaced this long before WeChat says it expires (seconds).
const EARLY_REFRESH_SECS: i64 = 60;
/// Longest lifetime believed, whatever `expires_in` says (seconds; WeChat's is 7200).
const MAX_LIFETIME_SECS: u64 = 7200;

/// One account's token, fetched with /cgi-bin/stable_token and reused until
/// [`EARLY_REFRESH_SECS`] before it expires. The lock is held across the fetch, so
/// concurrent callers wait for one request and reuse its token.
#[derive(Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: Secret,
    /// From this instant on the token is fetched again.
    refresh_at: Timestamp,
    /// When WeChat said it expires (for the proxy's `expires_in`).
    expires_at: Timestamp,
}

/// A token and when it expires, for the proxy's token server.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_at: Timestamp,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The cached token, or a new one from WeChat when there is none or it is due
    /// (`now` decides). A failed fetch leaves the cache empty and returns the error.
    pub async fn get(
        &self,
        client: &WechatClient,
        appid: &str,
        secret: &Secret,
        now: Timestamp,
    ) -> Result<Secret, WechatError> {
        Ok(self.issue(client, appid, secret, now, false).await?.token)
    }

    /// [`TokenCache::get`] with the expiry; with `force`, a new token from WeChat
    /// (`force_refresh`) whatever is cached. The caller keeps forcing within WeChat's
    /// limits.
    pub async fn issue(
        &self,
        client: &WechatClient,
        appid: &str,
        secret: &Secret,
        now: Timestamp,
        force: bool,
    ) -> Result<IssuedToken, WechatError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = &*slot {
            if now < cached.refresh_at && !force {
                return Ok(IssuedToken {
                    token: cached.token.clone(),
                    expires_at: cached.expires_at,
                });
            }
        }
        *slot = None;
        let fresh = client.stable_token_with(appid, secret, force).await?;
        let lifetime = fresh.expires_in.as_secs().min(MAX_LIFETIME_SECS) as i64;
        let expires_at = now + chrono::Duration::seconds(lifetime);
        *slot = Some(Cached {
            token: fresh.token.clone(),
            refresh_at: expires_at - chrono::Duration::seconds(EARLY_REFRESH_SECS),
            expires_at,
        });
        Ok(IssuedToken {
            token: fresh.token,
            expires_at,
        })
    }

    /// Drops the cached token only if it is still `bad` (so many callers reporting the
    /// same dead token cause one new request, not many).
    pub async fn invalidate_if(&self, bad: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| &c.token == bad) {
            *slot = None;
        }
    }

    /// Drops the cached token, after WeChat called it invalid or expired
    /// (40001, 40014, 42001); the next [`TokenCache::get`] fetches one.
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{LimitTable, PresetName};
    use crate::sim::Simulator;
    use crate::time::{parse, Clock};

    const APPID: &str = "wxcache";

    fn at(s: &str) -> Timestamp {
        parse(s).unwrap()
    }

    async fn setup() -> (Simulator, WechatClient) {
        let sim = Simulator::new(Clock::manual(at("2026-11-22T10:00:00+08:00")));
        sim.add_account(APPID, "s3cret", LimitTable::from_preset(PresetName::Normal));
        let (addr, _task) = sim.clone().start().await.unwrap();
        (
            sim,
            WechatClient::new(&format!("http://{addr}"), Duration::from_secs(2)),
        )
    }

    fn token_requests(sim: &Simulator) -> usize {
        sim.requests()
            .iter()
            .filter(|r| r.endpoint == "/cgi-bin/stable_token")
            .count()
    }

    fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    #[tokio::test]
    async fn reuses_until_a_minute_before_expiry_then_refreshes() {
        within(async {
            let (sim, client) = setup().await;
            let cache = TokenCache::new();
            let secret = Secret::new("s3cret");
            let t0 = at("2026-11-22T10:00:00+08:00");
            let a = cache.get(&client, APPID, &secret, t0).await.unwrap();
            let b = cache
                .get(
                    &client,
                    APPID,
                    &secret,
                    t0 + chrono::Duration::seconds(7139),
                )
                .await
                .unwrap();
            assert_eq!(a, b);
            assert_eq!(token_requests(&sim), 1);
            cache
                .get(
                    &client,
                    APPID,
                    &secret,
                    t0 + chrono::Duration::seconds(7140),
                )
                .await
                .unwrap();
            assert_eq!(token_requests(&sim), 2);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_request() {
        within(async {
            let (sim, client) = setup().await;
            let cache = Arc::new(TokenCache::new());
            let now = at("2026-11-22T10:00:00+08:00");
            let mut tasks = Vec::new();
            for _ in 0..10 {
                let (cache, client) = (cache.clone(), client.clone());
                tasks.push(tokio::spawn(async move {
                    cache
                        .get(&client, APPID, &Secret::new("s3cret"), now)
                        .await
                        .unwrap()
                }));
            }
            let mut tokens = Vec::new();
            for t in tasks {
                tokens.push(t.await.unwrap());
            }
            assert!(tokens.iter().all(|t| t == &tokens[0]));
            assert_eq!(token_requests(&sim), 1);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn invalidate_forces_a_new_request_and_errors_are_not_cached() {
        within(async {
            let (sim, client) = setup().await;
            let cache = TokenCache::new();
            let now = at("2026-11-22T10:00:00+08:00");
            let secret = Secret::new("s3cret");
            cache.get(&client, APPID, &secret, now).await.unwrap();
            cache.invalidate().await;
            cache.get(&client, APPID, &secret, now).await.unwrap();
            assert_eq!(token_requests(&sim), 2);

            let other = TokenCache::new();
            let e = other
                .get(&client, APPID, &Secret::new("wrong"), now)
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(40125));
            other.get(&client, APPID, &secret, now).await.unwrap();
            assert_eq!(token_requests(&sim), 4);
        })
        .await
        .unwrap();
    }
}
