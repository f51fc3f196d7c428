//! The central token server (SPEC §7): `GET /cgi-bin/token` and `POST
//! /cgi-bin/stable_token` for configured accounts are answered from the engine's
//! stable_token cache after a constant-time secret check; and the tokens handed out,
//! so calls carrying one are attributed and a 40001/42001 for one can be mended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use tokio::time::Instant;
use tracing::info;

use super::attribution::{self, Account};
use super::reply::{self, ProxyBody};
use crate::config::Secret;
use crate::engine::Engine;
use crate::wechat::WechatError;

/// A token handed out is remembered this long (WeChat's tokens last 2 h; old and new
/// overlap 5 min after a refresh).
const REMEMBER: Duration = Duration::from_secs(3 * 3600);

/// Tokens the proxy handed out (or added under `/a/{account}/`), by value → appid.
/// Kept in memory only; never logged.
#[derive(Default)]
pub struct HandedOut {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl HandedOut {
    pub fn note(&self, token: &Secret, appid: &str) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(token.expose()) {
            map.retain(|_, (_, at)| now.duration_since(*at) < REMEMBER);
        }
        map.insert(token.expose().to_string(), (appid.to_string(), now));
    }

    /// The appid a handed-out token belongs to.
    pub fn appid_of(&self, token: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(token).map(|(appid, _)| appid.clone())
    }
}

/// A token request, as either API words it.
struct Ask {
    appid: Option<String>,
    secret: Option<String>,
    grant_type: Option<String>,
    force: bool,
}

/// Answers a token request for a configured account; `None` for anything else (it is
/// forwarded). `prefix` is the `/a/{account}/` account, used when no appid is given.
pub async fn serve(
    engine: &Engine,
    handed_out: &HandedOut,
    method: &Method,
    path: &str,
    query: &str,
    body: Option<&Bytes>,
    prefix: Option<&Account>,
) -> Option<Response<ProxyBody>> {
    let ask = match (method, path) {
        (&Method::GET, "/cgi-bin/token") => Ask {
            appid: attribution::param(query, "appid"),
            secret: attribution::param(query, "secret"),
            grant_type: attribution::param(query, "grant_type"),
            force: false,
        },
        (&Method::POST, "/cgi-bin/stable_token") => {
            let v: serde_json::Value = serde_json::from_slice(body?).ok()?;
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            Ask {
                appid: text("appid"),
                secret: text("secret"),
                grant_type: text("grant_type"),
                force: v.get("force_refresh").and_then(|f| f.as_bool()) == Some(true),
            }
        }
        _ => return None,
    };
    let appid = ask.appid.or_else(|| prefix.map(|a| a.appid.clone()))?;
    let secret_ok = engine.secret_matches(&appid, ask.secret.as_deref().unwrap_or(""))?;
    if ask.grant_type.as_deref() != Some("client_credential") {
        return Some(reply::wechat_errcode(40002, "invalid grant_type"));
    }
    if ask.secret.as_deref().unwrap_or("").is_empty() {
        return Some(reply::wechat_errcode(41004, "appsecret missing"));
    }
    if !secret_ok {
        info!(event = "proxy_token_refused", appid = %appid, "token request with a wrong secret (40125)");
        return Some(reply::wechat_errcode(40125, "invalid appsecret"));
    }
    let issued = match engine.proxy_token(&appid, ask.force).await? {
        Ok(t) => t,
        Err(WechatError::Api { errcode, errmsg }) => {
            return Some(reply::wechat_errcode(errcode, &errmsg));
        }
        Err(e) => {
            return Some(reply::wechat_error(
                StatusCode::BAD_GATEWAY,
                &format!("wxquotad: no token from WeChat: {e}"),
            ));
        }
    };
    handed_out.note(&issued.token, &appid);
    let expires_in = (issued.expires_at - engine.clock().now())
        .num_seconds()
        .max(0);
    Some(reply::json(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": issued.token.expose(),
            "expires_in": expires_in,
        }),
    ))
}
