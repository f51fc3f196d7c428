//! Component and authorizer tokens, discovery, and what a push asks for, for every
//! configured platform (SPEC §8). Component tokens come from the stored ticket and are
//! renewed before they expire; authorizer tokens are fetched only when something needs
//! one, from the stored refresh token, at most [`MAX_CONCURRENT_FETCHES`] at a time.
//! Nothing here logs or returns a token, ticket or refresh token except as a [`Secret`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Platform, Secret};
use crate::engine::Engine;
use crate::store::ListedAuthorizer;
use crate::time::Timestamp;
use crate::wechat::{WechatClient, WechatError};

/// Authorizer token fetches in flight at once, all platforms together.
pub const MAX_CONCURRENT_FETCHES: usize = 8;
/// A cached token is renewed when less than this is left of it.
const RENEW_BEFORE: Duration = Duration::from_secs(600);
/// `api_get_authorizer_list` page size (WeChat's maximum).
pub const PAGE: u64 = 500;
/// After a failed discovery, the next try waits this long (or `discover`, if shorter).
const DISCOVERY_RETRY: Duration = Duration::from_secs(60);

/// Why a platform operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("no component_verify_ticket yet (WeChat pushes one every 10 minutes to /v1/platforms/{0}/events)")]
    NoTicket(String),
    #[error("{0} is not an authorizer of this platform")]
    NotAuthorizer(String),
    #[error("authorization revoked (61023); {0} was removed")]
    Revoked(String),
    #[error(transparent)]
    Wechat(#[from] WechatError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    expires_at: Timestamp,
}

impl Cached {
    fn fresh(&self, now: Timestamp) -> bool {
        self.expires_at - now > chrono::Duration::from_std(RENEW_BEFORE).unwrap_or_default()
    }
}

/// In-memory state of every platform: token caches and discovery bookkeeping.
pub struct Platforms {
    /// Component appid → its component token.
    component: Mutex<HashMap<String, Cached>>,
    /// One component token fetch at a time (all platforms together; they are rare).
    component_fetch: tokio::sync::Mutex<()>,
    /// (component appid, authorizer appid) → its token.
    authorizer: Mutex<HashMap<(String, String), Cached>>,
    fetches: tokio::sync::Semaphore,
    /// Component appid → when the last discovery attempt failed.
    failed_discovery: Mutex<HashMap<String, Timestamp>>,
    client: Mutex<Option<(String, WechatClient)>>,
}

impl Default for Platforms {
    fn default() -> Platforms {
        Platforms {
            component: Mutex::default(),
            component_fetch: tokio::sync::Mutex::new(()),
            authorizer: Mutex::default(),
            fetches: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
            failed_discovery: Mutex::default(),
            client: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Platforms {
    /// A client for the current `[wechat] base_url` (rebuilt when a reload changes it).
    fn client(&self, engine: &Engine) -> WechatClient {
        let config = engine.config();
        let mut c = lock(&self.client);
        match &*c {
            Some((url, client)) if *url == config.wechat.base_url => client.clone(),
            _ => {
                let client = WechatClient::new(&config.wechat.base_url, config.wechat.timeout);
                *c = Some((config.wechat.base_url.clone(), client.clone()));
                client
            }
        }
    }

    /// Whether a component token is cached and not due for renewal.
    pub fn has_component_token(&self, component_appid: &str, now: Timestamp) -> bool {
        lock(&self.component)
            .get(component_appid)
            .is_some_and(|c| c.fresh(now))
    }

    /// The platform's component token: cached, else from the stored ticket.
    pub async fn component_token(
        &self,
        engine: &Engine,
        p: &Platform,
    ) -> Result<Secret, PlatformError> {
        let now = engine.clock().now();
        if let Some(c) = lock(&self.component)
            .get(&p.component_appid)
            .filter(|c| c.fresh(now))
        {
            return Ok(c.token.clone());
        }
        let _one = self.component_fetch.lock().await;
        let now = engine.clock().now();
        if let Some(c) = lock(&self.component)
            .get(&p.component_appid)
            .filter(|c| c.fresh(now))
        {
            return Ok(c.token.clone());
        }
        let ticket = engine
            .store()
            .ticket(&p.component_appid)?
            .ok_or_else(|| PlatformError::NoTicket(p.name.clone()))?;
        let t = self
            .client(engine)
            .api_component_token(&p.component_appid, &p.secret, &ticket.ticket)
            .await?;
        let expires_at =
            engine.clock().now() + chrono::Duration::from_std(t.expires_in).unwrap_or_default();
        lock(&self.component).insert(
            p.component_appid.clone(),
            Cached {
                token: t.token.clone(),
                expires_at,
            },
        );
        info!(event = "component_token", platform = %p.name, expires_in = t.expires_in.as_secs(), "component token fetched");
        Ok(t.token)
    }

    /// An authorizer's token: cached, else from its stored refresh token (at most
    /// [`MAX_CONCURRENT_FETCHES`] fetches at once). 61023 removes the authorizer.
    pub async fn authorizer_token(
        &self,
        engine: &Engine,
        p: &Platform,
        appid: &str,
    ) -> Result<Secret, PlatformError> {
        let key = (p.component_appid.clone(), appid.to_string());
        let now = engine.clock().now();
        if let Some(c) = lock(&self.authorizer).get(&key).filter(|c| c.fresh(now)) {
            return Ok(c.token.clone());
        }
        let _permit = self
            .fetches
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let now = engine.clock().now();
        if let Some(c) = lock(&self.authorizer).get(&key).filter(|c| c.fresh(now)) {
            return Ok(c.token.clone());
        }
        let refresh = engine
            .store()
            .refresh_token(&p.component_appid, appid)?
            .ok_or_else(|| PlatformError::NotAuthorizer(appid.to_string()))?;
        let component = self.component_token(engine, p).await?;
        let result = self
            .client(engine)
            .api_authorizer_token(&component, &p.component_appid, appid, &refresh)
            .await;
        let t = match result {
            Ok(t) => t,
            Err(e) if e.errcode() == Some(61023) => {
                let now = engine.clock().now();
                engine.store().authorizer_removed(
                    &p.component_appid,
                    appid,
                    now.timestamp(),
                    now,
                )?;
                lock(&self.authorizer).remove(&key);
                warn!(event = "authorizer_removed", platform = %p.name, authorizer = appid, reason = "61023", "authorization revoked; authorizer removed");
                return Err(PlatformError::Revoked(appid.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        if t.refresh_token.expose() != refresh.expose() {
            engine.store().save_refresh_token(
                &p.component_appid,
                appid,
                t.refresh_token.expose(),
            )?;
        }
        let expires_at = engine.clock().now()
            + chrono::Duration::from_std(t.token.expires_in).unwrap_or_default();
        lock(&self.authorizer).insert(
            key,
            Cached {
                token: t.token.token.clone(),
                expires_at,
            },
        );
        Ok(t.token.token)
    }

    /// Authorizer tokens cached now (for status: lazily fetched, so usually few).
    pub fn cached_authorizer_tokens(&self, component_appid: &str) -> usize {
        lock(&self.authorizer)
            .keys()
            .filter(|(c, _)| c == component_appid)
            .count()
    }

    /// Lists every authorizer (500 a page) and stores the list in one transaction.
    /// Returns how many were listed.
    pub async fn discover(&self, engine: &Engine, p: &Platform) -> Result<usize, PlatformError> {
        let started = engine.clock().now();
        let token = self.component_token(engine, p).await?;
        let client = self.client(engine);
        let mut listed: Vec<ListedAuthorizer> = Vec::new();
        let mut offset = 0;
        loop {
            let page = client
                .api_get_authorizer_list(&token, &p.component_appid, offset, PAGE)
                .await?;
            let n = page.list.len() as u64;
            listed.extend(page.list.into_iter().map(|e| ListedAuthorizer {
                appid: e.appid,
                refresh_token: e.refresh_token,
                auth_time: e.auth_time,
            }));
            offset += n;
            if n == 0 || offset >= page.total_count {
                break;
            }
        }
        let count = listed.len();
        let store = engine.store();
        let now = engine.clock().now();
        store.save_discovery(&p.component_appid, &listed, started, now)?;
        let secs = (now - started).num_milliseconds() as f64 / 1000.0;
        info!(event = "platform_discovered", platform = %p.name, authorizers = count, seconds = secs, "authorizers discovered");
        Ok(count)
    }

    /// An `authorized` push: the code becomes a refresh token (`api_query_auth`) and
    /// the authorizer is added, unless a later push about it was already applied.
    pub async fn authorized(
        &self,
        engine: &Engine,
        p: &Platform,
        authorizer: &str,
        code: &str,
        create_time: i64,
    ) -> Result<bool, PlatformError> {
        let token = self.component_token(engine, p).await?;
        let (appid, refresh) = self
            .client(engine)
            .api_query_auth(&token, &p.component_appid, &Secret::new(code))
            .await?;
        if appid != authorizer {
            warn!(event = "platform_push_mismatch", platform = %p.name, pushed = authorizer, answered = %appid, "api_query_auth named another authorizer; using WeChat's answer");
        }
        let now = engine.clock().now();
        let applied = engine.store().authorizer_pushed(
            &p.component_appid,
            &appid,
            refresh.expose(),
            create_time,
            now,
        )?;
        lock(&self.authorizer).remove(&(p.component_appid.clone(), appid));
        Ok(applied)
    }

    /// Whether `p` should discover now: a ticket is stored, `discover` is on, and the
    /// last discovery is older than `discover` (or there was none), unless the last
    /// attempt failed less than a retry interval ago.
    pub fn discovery_due(
        &self,
        engine: &Engine,
        p: &Platform,
        now: Timestamp,
    ) -> Result<bool, PlatformError> {
        if p.discover.is_zero() {
            return Ok(false);
        }
        let store = engine.store();
        if store.ticket(&p.component_appid)?.is_none() {
            return Ok(false);
        }
        if let Some(failed) = lock(&self.failed_discovery).get(&p.component_appid) {
            let wait = DISCOVERY_RETRY.min(p.discover);
            if now - *failed < chrono::Duration::from_std(wait).unwrap_or_default() {
                return Ok(false);
            }
        }
        Ok(match store.last_discovery(&p.component_appid)? {
            None => true,
            Some((at, _)) => now - at >= chrono::Duration::from_std(p.discover).unwrap_or_default(),
        })
    }

    /// One pass over every platform: discovers those due. Called every few seconds.
    pub async fn run_once(&self, engine: &Engine) {
        let config = engine.config();
        for p in &config.platforms {
            let now = engine.clock().now();
            match self.discovery_due(engine, p, now) {
                Ok(false) => {}
                Ok(true) => match self.discover(engine, p).await {
                    Ok(_) => {
                        lock(&self.failed_discovery).remove(&p.component_appid);
                    }
                    Err(e) => {
                        lock(&self.failed_discovery)
                            .insert(p.component_appid.clone(), engine.clock().now());
                        warn!(event = "platform_discovery_failed", platform = %p.name, error = %e, "authorizer discovery failed; retrying later");
                    }
                },
                Err(e) => warn!(platform = %p.name, error = %e, "platform state unreadable"),
            }
        }
    }
}

/// Every `every`, discovers the platforms that are due, until `stop` turns true.
pub fn spawn(
    engine: Engine,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => engine.platforms().run_once(&engine).await,
                _ = stop.changed() => break,
            }
        }
    })
}
