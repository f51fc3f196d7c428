//! HTTP calls to WeChat's stable token, clear and quota APIs: one request per call,
//! no retries, every failure mapped to a [`WechatError`] that never holds a URL, a
//! token or a secret.

use std::time::Duration;

use serde_json::{json, Value};

use super::WechatError;
use crate::config::Secret;

/// An access token and how long WeChat says it lasts.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Remaining lifetime as WeChat reported it (`expires_in`, seconds; at most 7200).
    pub expires_in: Duration,
}

/// getApiQuota's answer for one path (calls per WeChat day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiQuota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
}

/// Longest stretch of an unreadable answer quoted in an error, in characters.
const SNIPPET_CHARS: usize = 80;

/// Talks to one WeChat base URL. Cheap to clone.
#[derive(Clone)]
pub struct WechatClient {
    base_url: String,
    http: reqwest::Client,
    observer: Option<Observer>,
}

/// Told of every request's endpoint path and outcome (e.g. to count them for metrics).
/// Never sees a query, a token or a secret.
pub type Observer = std::sync::Arc<dyn Fn(&str, Result<(), &WechatError>) + Send + Sync>;

impl WechatClient {
    /// `base_url` is e.g. `https://api.weixin.qq.com` (a trailing slash is dropped);
    /// `timeout` bounds each whole request, connecting through reading the body.
    /// Redirects are not followed: a redirect would carry the token elsewhere.
    pub fn new(base_url: &str, timeout: Duration) -> WechatClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        WechatClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            observer: None,
        }
    }

    /// The same client, reporting every request to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> WechatClient {
        self.observer = Some(observer);
        self
    }

    /// `POST /cgi-bin/stable_token` without `force_refresh`: the account's current
    /// stable token (WeChat hands out the same one while it is valid). Never calls
    /// `/cgi-bin/token`, which would invalidate the application's own token.
    pub async fn stable_token(
        &self,
        appid: &str,
        secret: &Secret,
    ) -> Result<AccessToken, WechatError> {
        self.stable_token_with(appid, secret, false).await
    }

    /// [`WechatClient::stable_token`], with `force_refresh` as given: forcing makes
    /// WeChat issue a new token (at most 20 a day, 30 s apart). Only the proxy forces,
    /// and only when an application asked for it (SPEC §7).
    pub async fn stable_token_with(
        &self,
        appid: &str,
        secret: &Secret,
        force_refresh: bool,
    ) -> Result<AccessToken, WechatError> {
        let body = json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret.expose(),
            "force_refresh": force_refresh,
        });
        let v = self
            .post(
                "/cgi-bin/stable_token",
                &[],
                Some(&body),
                &[secret.expose()],
            )
            .await?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unreadable("no access_token in the answer"))?;
        let expires_in = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .ok_or_else(|| unreadable("no expires_in in the answer"))?;
        Ok(AccessToken {
            token: Secret::new(token),
            expires_in: Duration::from_secs(expires_in),
        })
    }

    /// `POST /cgi-bin/clear_quota?access_token=…` with `{"appid"}`: resets the account's
    /// daily counters and spends one of its 10 monthly clears.
    pub async fn clear_quota(&self, token: &Secret, appid: &str) -> Result<(), WechatError> {
        let v = self
            .post(
                "/cgi-bin/clear_quota",
                &[("access_token", token.expose())],
                Some(&json!({ "appid": appid })),
                &[token.expose()],
            )
            .await?;
        require_errcode(&v)
    }

    /// `POST /cgi-bin/clear_quota/v2?appid=…&appsecret=…` with the same two fields as
    /// a JSON body: the AppSecret variant, which needs no token. Older docs (and mature
    /// SDKs) read the query, newer ones the body, so both are sent (WECHAT.md). Shares
    /// the monthly budget. Neither the URL nor the body is ever logged.
    pub async fn clear_quota_v2(&self, appid: &str, secret: &Secret) -> Result<(), WechatError> {
        let v = self
            .post(
                "/cgi-bin/clear_quota/v2",
                &[("appid", appid), ("appsecret", secret.expose())],
                Some(&json!({ "appid": appid, "appsecret": secret.expose() })),
                &[secret.expose()],
            )
            .await?;
        require_errcode(&v)
    }

    /// `POST /cgi-bin/openapi/quota/clear?access_token=…` with `{"cgi_path"}`
    /// (clearApiQuota): resets one interface's daily count and spends one of the
    /// account's 50 per-interface clears a month.
    pub async fn clear_api_quota(&self, token: &Secret, cgi_path: &str) -> Result<(), WechatError> {
        let v = self
            .post(
                "/cgi-bin/openapi/quota/clear",
                &[("access_token", token.expose())],
                Some(&json!({ "cgi_path": cgi_path })),
                &[token.expose()],
            )
            .await?;
        require_errcode(&v)
    }

    /// `POST /cgi-bin/openapi/quota/get?access_token=…` with `{"cgi_path"}`: WeChat's
    /// own counter for one API path today. `rate_limit` and `component_rate_limit` are
    /// ignored.
    pub async fn get_api_quota(
        &self,
        token: &Secret,
        cgi_path: &str,
    ) -> Result<ApiQuota, WechatError> {
        let v = self
            .post(
                "/cgi-bin/openapi/quota/get",
                &[("access_token", token.expose())],
                Some(&json!({ "cgi_path": cgi_path })),
                &[token.expose()],
            )
            .await?;
        let field = |name: &str| {
            v.get("quota")
                .and_then(|q| q.get(name))
                .and_then(Value::as_u64)
                .ok_or_else(|| unreadable(&format!("no quota.{name} in the answer")))
        };
        Ok(ApiQuota {
            daily_limit: field("daily_limit")?,
            used: field("used")?,
            remain: field("remain")?,
        })
    }

    /// Sends one POST and returns the answer's JSON object when its errcode is absent
    /// or 0. `secrets` are scrubbed from anything of the answer quoted in an error.
    pub(super) async fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        secrets: &[&str],
    ) -> Result<Value, WechatError> {
        let result = self.send(path, query, body, secrets).await;
        if let Some(observe) = &self.observer {
            observe(path, result.as_ref().map(|_| ()));
        }
        result
    }

    async fn send(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        secrets: &[&str],
    ) -> Result<Value, WechatError> {
        let mut req = self.http.post(format!("{}{}", self.base_url, path));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(WechatError::Http {
                status: status.as_u16(),
            });
        }
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            WechatError::Unreadable(format!("not JSON: {:?}", snippet(&bytes, secrets)))
        })?;
        if !value.is_object() {
            return Err(unreadable("not a JSON object"));
        }
        match value.get("errcode") {
            None => Ok(value),
            Some(code) => match code.as_i64() {
                Some(0) => Ok(value),
                Some(errcode) => {
                    let errmsg = value.get("errmsg").and_then(Value::as_str).unwrap_or("");
                    Err(WechatError::Api {
                        errcode,
                        errmsg: snippet(errmsg.as_bytes(), secrets),
                    })
                }
                None => Err(unreadable("errcode is not an integer")),
            },
        }
    }
}

fn unreadable(what: &str) -> WechatError {
    WechatError::Unreadable(what.to_string())
}

/// A clear's answer must say `errcode: 0` to count as done; anything else that got
/// this far is not understood (and may have taken effect).
fn require_errcode(v: &Value) -> Result<(), WechatError> {
    match v.get("errcode") {
        Some(_) => Ok(()),
        None => Err(unreadable("no errcode in the answer")),
    }
}

/// Describes a reqwest failure by its kind alone. A reqwest error's `Display` includes
/// the URL with its query (the token or AppSecret), so it is never formatted.
fn transport_error(e: &reqwest::Error) -> WechatError {
    if e.is_timeout() {
        WechatError::Timeout
    } else if e.is_connect() {
        let cause = io_kind(e).map_or_else(|| "connection failed".to_string(), |k| k.to_string());
        WechatError::Connect(cause)
    } else if e.is_builder() {
        WechatError::Connect("the request could not be built".into())
    } else if e.is_body() || e.is_decode() {
        unreadable("the answer was cut off")
    } else {
        unreadable("the connection failed before a complete answer")
    }
}

/// The kind of the first I/O error under `e` (e.g. "connection refused").
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// The start of an answer, for an error message: control characters dropped, secrets
/// replaced by `***` in every encoding WeChat may quote them in (percent-encoded, `+`
/// for space, JSON-escaped), at most [`SNIPPET_CHARS`] characters.
fn snippet(bytes: &[u8], secrets: &[&str]) -> String {
    crate::config::safe_quote(bytes, secrets, SNIPPET_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitTable, PresetName};
    use crate::sim::{Endpoint, Fault, FaultKind, Simulator};
    use crate::time::{parse, Clock};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const APPID: &str = "wx0123456789abcdef";
    const SECRET: &str = "TOPSECRETappsecret0123456789";
    const TOKEN: &str = "TOPSECRETaccesstoken0123456789";

    fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    async fn sim() -> (Simulator, WechatClient) {
        let sim = Simulator::new(Clock::manual(parse("2026-11-22T10:00:00+08:00").unwrap()));
        sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
        let (addr, _task) = sim.clone().start().await.unwrap();
        let client = WechatClient::new(&format!("http://{addr}/"), Duration::from_millis(300));
        (sim, client)
    }

    /// Every call's error, for checking that none leaks the token or secret.
    async fn all_errors(client: &WechatClient) -> Vec<WechatError> {
        let secret = Secret::new(SECRET);
        let token = Secret::new(TOKEN);
        vec![
            client.stable_token(APPID, &secret).await.unwrap_err(),
            client.clear_quota(&token, APPID).await.unwrap_err(),
            client.clear_quota_v2(APPID, &secret).await.unwrap_err(),
            client
                .get_api_quota(&token, "/cgi-bin/user/get")
                .await
                .unwrap_err(),
        ]
    }

    fn assert_no_leak(errors: &[WechatError]) {
        for e in errors {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("TOPSECRET"), "{shown}");
            assert!(!shown.contains("http://"), "{shown}");
        }
    }

    /// A raw server that answers every request with `answer` and then, when `hold`,
    /// keeps the connection open.
    async fn raw_server(answer: String, hold: bool) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(answer.as_bytes()).await;
                    if hold {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn calls_work_against_the_simulator() {
        within(async {
            let (sim, client) = sim().await;
            let secret = Secret::new(SECRET);
            let t = client.stable_token(APPID, &secret).await.unwrap();
            assert_eq!(t.expires_in, Duration::from_secs(7200));
            sim.set_usage(APPID, "/cgi-bin/user/get", 120);
            let q = client
                .get_api_quota(&t.token, "/cgi-bin/user/get")
                .await
                .unwrap();
            assert_eq!(
                q,
                ApiQuota {
                    daily_limit: 500,
                    used: 120,
                    remain: 380
                }
            );
            client.clear_quota(&t.token, APPID).await.unwrap();
            assert_eq!(sim.usage(APPID, "/cgi-bin/user/get"), 0);
            client.clear_quota_v2(APPID, &secret).await.unwrap();
            assert_eq!(sim.clears_charged(APPID), 2);
            let paths: Vec<String> = sim.requests().into_iter().map(|r| r.endpoint).collect();
            assert_eq!(
                paths,
                [
                    "/cgi-bin/stable_token",
                    "/cgi-bin/openapi/quota/get",
                    "/cgi-bin/clear_quota",
                    "/cgi-bin/clear_quota/v2"
                ]
            );
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn clear_quota_v2_sends_appid_and_appsecret_in_the_query_and_the_body() {
        within(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 4096];
                // Read until the JSON body (it ends with '}').
                while !got.ends_with(b"}") {
                    let n = sock.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let body = r#"{"errcode":0,"errmsg":"ok"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
                let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            });
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(5));
            client
                .clear_quota_v2(APPID, &Secret::new(SECRET))
                .await
                .unwrap();
            let request = rx.await.unwrap();
            let (head, body) = request.split_once("\r\n\r\n").unwrap();
            let line = head.lines().next().unwrap();
            assert!(
                line.starts_with(&format!(
                    "POST /cgi-bin/clear_quota/v2?appid={APPID}&appsecret={SECRET} "
                )),
                "{line}"
            );
            let json: Value = serde_json::from_str(body).unwrap();
            assert_eq!(json, json!({"appid": APPID, "appsecret": SECRET}));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn errcodes_become_api_errors() {
        within(async {
            let (_sim, client) = sim().await;
            let bad = Secret::new("TOPSECRETwrong");
            let e = client.stable_token(APPID, &bad).await.unwrap_err();
            assert_eq!(e.errcode(), Some(40125));
            let e = client
                .clear_quota(&Secret::new(TOKEN), APPID)
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(40001));
            let e = client.clear_quota_v2("wxunknown", &bad).await.unwrap_err();
            assert_eq!(e.errcode(), Some(40013));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_closed_port_is_connect_and_leaks_nothing() {
        within(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(2));
            let errors = all_errors(&client).await;
            for e in &errors {
                assert!(matches!(e, WechatError::Connect(_)), "{e:?}");
                assert!(!e.may_have_taken_effect());
            }
            assert_no_leak(&errors);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn garbage_that_echoes_the_url_leaks_nothing() {
        within(async {
            // A server that quotes the request line (with its query) in a non-JSON body,
            // and one that quotes it in an errmsg.
            let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
                format!("<html>bad gateway for {uri}</html>")
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(2));
            let errors = all_errors(&client).await;
            for e in &errors {
                assert!(matches!(e, WechatError::Unreadable(_)), "{e:?}");
            }
            assert_no_leak(&errors);

            let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
                axum::Json(json!({"errcode": 40164, "errmsg": format!("invalid ip for {uri}")}))
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(2));
            let errors = all_errors(&client).await;
            for e in &errors {
                assert_eq!(e.errcode(), Some(40164), "{e:?}");
            }
            assert_no_leak(&errors);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_stalled_body_is_a_timeout_and_a_cut_body_unreadable() {
        within(async {
            let head = concat!(
                "HTTP/1.1 200 OK\r\n",
                "content-type: application/json\r\n",
                "content-length: 100\r\n\r\n",
                "{\"errcode\"",
            );
            let stalled = raw_server(head.to_string(), true).await;
            let client =
                WechatClient::new(&format!("http://{stalled}"), Duration::from_millis(300));
            let errors = all_errors(&client).await;
            for e in &errors {
                assert_eq!(e, &WechatError::Timeout);
            }
            assert_no_leak(&errors);

            let cut = raw_server(head.to_string(), false).await;
            let client = WechatClient::new(&format!("http://{cut}"), Duration::from_secs(2));
            let errors = all_errors(&client).await;
            for e in &errors {
                assert!(matches!(e, WechatError::Unreadable(_)), "{e:?}");
                assert!(e.may_have_taken_effect());
            }
            assert_no_leak(&errors);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn each_fault_kind_is_the_right_error() {
        within(async {
            let (sim, client) = sim().await;
            let secret = Secret::new(SECRET);
            let fault = |kind| Fault {
                endpoint: Endpoint::ClearQuotaV2,
                kind,
                times: 1,
            };
            sim.inject(fault(FaultKind::Http(502)));
            sim.inject(fault(FaultKind::Errcode(-1)));
            sim.inject(fault(FaultKind::Garbage));
            sim.inject(fault(FaultKind::Delay(Duration::from_secs(2))));
            sim.inject(fault(FaultKind::ChargeThenDrop));
            let mut errors = Vec::new();
            for _ in 0..5 {
                errors.push(client.clear_quota_v2(APPID, &secret).await.unwrap_err());
            }
            assert_eq!(errors[0], WechatError::Http { status: 502 });
            assert_eq!(errors[1].errcode(), Some(-1));
            assert!(matches!(errors[2], WechatError::Unreadable(_)));
            assert_eq!(errors[3], WechatError::Timeout);
            assert_eq!(errors[4], WechatError::Timeout);
            assert_no_leak(&errors);
            // Only the delayed request (answered late) and the dropped one took effect.
            tokio::time::sleep(Duration::from_millis(2000)).await;
            assert_eq!(sim.clears_charged(APPID), 2);
            // The queue is empty again: the next clear answers normally.
            client.clear_quota_v2(APPID, &secret).await.unwrap();
            assert_eq!(sim.clears_charged(APPID), 3);
        })
        .await
        .unwrap();
    }
}
