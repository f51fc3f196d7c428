//! Simulated third-party platforms (WECHAT.md, SPEC §8): component tickets pushed
//! encrypted to the daemon (on demand and on a timer), `api_component_token`,
//! `api_get_authorizer_list` (paged, at most 500), `api_query_auth`,
//! `api_authorizer_token` (61023 once revoked) and `component/clear_quota/v2`.
//! The platform and each authorizer are simulator accounts too, so their quotas and
//! budgets follow the same rules as any account's; component and authorizer tokens are
//! tokens of those accounts, so `clear_quota` with them clears the right one.
//!
//! Rules chosen where WeChat documents nothing: a ticket is valid 12 hours after it is
//! pushed; a used or unknown authorization code is 61010; an appid that is not an
//! authorizer of the platform is 61003 for `component/clear_quota/v2`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::{parse_pairs, Answer, Request};
use super::Simulator;
use crate::config::{LimitTable, PresetName};
use crate::platform::crypto::MsgCrypt;
use crate::platform::push;
use crate::time::Timestamp;

/// A ticket is accepted this long after it was pushed.
const TICKET_LIFETIME_SECS: i64 = 12 * 3600;
/// Largest page of `api_get_authorizer_list`.
pub const MAX_PAGE: u64 = 500;

struct SimAuthorizer {
    refresh_token: String,
    auth_time: i64,
    revoked: bool,
}

struct SimPlatform {
    secret: String,
    crypt: MsgCrypt,
    /// Pushed tickets and when, newest last.
    tickets: Vec<(String, Timestamp)>,
    /// Component token → its expiry.
    tokens: HashMap<String, Timestamp>,
    authorizers: BTreeMap<String, SimAuthorizer>,
    /// Authorization code → authorizer appid, until used.
    codes: HashMap<String, String>,
    /// Where pushes go, e.g. `http://127.0.0.1:9477/v1/platforms/acme/events`.
    push_url: Option<String>,
    next_appid: u64,
}

/// Every simulated platform, by component appid.
#[derive(Default)]
pub(super) struct SimPlatforms {
    by_appid: BTreeMap<String, SimPlatform>,
}

fn random_string(prefix: &str, n: usize) -> String {
    let chars: String = (0..n).map(|_| fastrand::alphanumeric()).collect();
    format!("{prefix}{chars}")
}

/// A WeChat error answer.
fn err(errcode: i64, errmsg: &str) -> Answer {
    Answer {
        body: json!({ "errcode": errcode, "errmsg": errmsg }),
    }
}

/// The simulator account secret of an authorizer (never sent by the daemon).
fn authorizer_secret(appid: &str) -> String {
    format!("sim-authorizer-secret-{appid}")
}

/// What a push attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    pub status: u16,
    pub body: String,
}

impl Simulator {
    /// Adds a platform: its component secret, message token and EncodingAESKey (which
    /// must be 43 valid characters). The platform's own quota is an account too.
    pub fn add_platform(&self, component_appid: &str, secret: &str, token: &str, aes_key: &str) {
        let crypt = MsgCrypt::new(token, aes_key, component_appid).expect("a valid EncodingAESKey");
        self.add_account(
            component_appid,
            secret,
            LimitTable::from_preset(PresetName::None),
        );
        let mut p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        p.by_appid.insert(
            component_appid.to_string(),
            SimPlatform {
                secret: secret.to_string(),
                crypt,
                tickets: Vec::new(),
                tokens: HashMap::new(),
                authorizers: BTreeMap::new(),
                codes: HashMap::new(),
                push_url: None,
                next_appid: 0,
            },
        );
    }

    fn with_platform<T>(&self, component_appid: &str, f: impl FnOnce(&mut SimPlatform) -> T) -> T {
        let mut p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        let platform = p
            .by_appid
            .get_mut(component_appid)
            .unwrap_or_else(|| panic!("sim: unknown platform {component_appid}"));
        f(platform)
    }

    /// Adds `n` authorizers (each an account with `limits`); returns their appids.
    pub fn add_authorizers(
        &self,
        component_appid: &str,
        n: usize,
        limits: LimitTable,
    ) -> Vec<String> {
        let now = self.clock.now().timestamp();
        let appids: Vec<String> = self.with_platform(component_appid, |p| {
            (0..n)
                .map(|_| {
                    p.next_appid += 1;
                    // Distinct per platform: the component appid's last 8 digits, a counter.
                    let appid = format!("wx{}{:08x}", &component_appid[10..18], p.next_appid);
                    p.authorizers.insert(
                        appid.clone(),
                        SimAuthorizer {
                            refresh_token: random_string("refreshtoken@@@", 40),
                            auth_time: now,
                            revoked: false,
                        },
                    );
                    appid
                })
                .collect()
        });
        let mut state = self.lock();
        for a in &appids {
            state.add_account(a, &authorizer_secret(a), limits.clone());
        }
        appids
    }

    /// The authorizer revokes the authorization: its refresh token answers 61023 and
    /// it leaves the list.
    pub fn revoke_authorizer(&self, component_appid: &str, appid: &str) {
        self.with_platform(component_appid, |p| {
            if let Some(a) = p.authorizers.get_mut(appid) {
                a.revoked = true;
            }
        });
    }

    /// The current (not revoked) authorizers.
    pub fn authorizers(&self, component_appid: &str) -> Vec<String> {
        self.with_platform(component_appid, |p| {
            p.authorizers
                .iter()
                .filter(|(_, a)| !a.revoked)
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// Sets where this platform's pushes go.
    pub fn set_push_url(&self, component_appid: &str, url: &str) {
        self.with_platform(component_appid, |p| p.push_url = Some(url.to_string()));
    }

    /// Issues a new ticket and pushes it, encrypted and signed, to the push URL.
    pub async fn push_ticket(&self, component_appid: &str) -> Result<PushResult, String> {
        let now = self.clock.now();
        let ticket = random_string("ticket@@@", 48);
        self.with_platform(component_appid, |p| {
            p.tickets.push((ticket.clone(), now));
            let keep = p.tickets.len().saturating_sub(4);
            p.tickets.drain(..keep);
        });
        let xml = push::ticket_xml(component_appid, &ticket, now.timestamp());
        self.push(component_appid, &xml).await
    }

    /// An account authorizes the platform: it becomes an authorizer (an account with
    /// `limits`) and an `authorized` push carries its authorization code.
    pub async fn push_authorized(
        &self,
        component_appid: &str,
        limits: LimitTable,
    ) -> Result<(String, PushResult), String> {
        let appid = self.add_authorizers(component_appid, 1, limits).remove(0);
        let code = random_string("queryauthcode@@@", 32);
        self.with_platform(component_appid, |p| {
            p.codes.insert(code.clone(), appid.clone())
        });
        let now = self.clock.now().timestamp();
        let xml = push::authorization_xml(component_appid, "authorized", &appid, Some(&code), now);
        let r = self.push(component_appid, &xml).await?;
        Ok((appid, r))
    }

    /// The authorizer revokes the authorization, and an `unauthorized` push says so.
    pub async fn push_unauthorized(
        &self,
        component_appid: &str,
        appid: &str,
    ) -> Result<PushResult, String> {
        self.revoke_authorizer(component_appid, appid);
        let now = self.clock.now().timestamp();
        let xml = push::authorization_xml(component_appid, "unauthorized", appid, None, now);
        self.push(component_appid, &xml).await
    }

    /// Pushes a new ticket every `every`, first at once, until the task is aborted.
    pub fn push_tickets_every(
        &self,
        component_appid: &str,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let sim = self.clone();
        let appid = component_appid.to_string();
        tokio::spawn(async move {
            loop {
                if let Err(e) = sim.push_ticket(&appid).await {
                    tracing::warn!(target: "wxquotad::sim", component_appid = %appid, error = %e, "sim ticket push failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    async fn push(&self, component_appid: &str, xml: &str) -> Result<PushResult, String> {
        let (crypt, url) =
            self.with_platform(component_appid, |p| (p.crypt.clone(), p.push_url.clone()));
        let url = url.ok_or("no push URL set for this platform")?;
        let encrypt = crypt.encrypt(xml);
        let timestamp = self.clock.now().timestamp().to_string();
        let nonce = fastrand::u32(..).to_string();
        let signature = crypt.sign(&timestamp, &nonce, &encrypt);
        let resp = reqwest::Client::new()
            .post(format!(
                "{url}?signature=&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}"
            ))
            .header("content-type", "text/xml")
            .body(push::envelope(component_appid, &encrypt))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("push failed: {}", e.without_url()))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(PushResult { status, body })
    }

    /// The latest ticket pushed (for tests).
    pub fn latest_ticket(&self, component_appid: &str) -> Option<String> {
        self.with_platform(component_appid, |p| p.tickets.last().map(|t| t.0.clone()))
    }

    /// Answers one `/cgi-bin/component/...` request.
    fn component(
        &self,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> (Answer, Option<String>) {
        let now = self.clock.now();
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |k: &str| -> Option<String> {
            query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| json.get(k).and_then(Value::as_str).map(str::to_string))
                .filter(|v| !v.is_empty())
        };
        let component = field("component_appid");
        let result = match path {
            "/cgi-bin/component/api_component_token" => self.component_token(&field, now),
            "/cgi-bin/component/clear_quota/v2" => self.component_clear(&field, now),
            _ => self
                .component_token_check(&field, now)
                .and_then(|c| match path {
                    "/cgi-bin/component/api_get_authorizer_list" => self.authorizer_list(&c, &json),
                    "/cgi-bin/component/api_query_auth" => self.query_auth(&c, &field, now),
                    "/cgi-bin/component/api_authorizer_token" => {
                        self.authorizer_token(&c, &field, now)
                    }
                    _ => Err(err(-1, "unknown component API in the simulator")),
                }),
        };
        let answer = result.unwrap_or_else(|a| a);
        (
            answer,
            field("authorizer_appid").or(field("appid")).or(component),
        )
    }

    fn component_token(
        &self,
        field: &dyn Fn(&str) -> Option<String>,
        now: Timestamp,
    ) -> Result<Answer, Answer> {
        let appid =
            field("component_appid").ok_or_else(|| err(41002, "component_appid missing"))?;
        let secret = field("component_appsecret")
            .ok_or_else(|| err(41004, "component_appsecret missing"))?;
        let ticket = field("component_verify_ticket")
            .ok_or_else(|| err(61006, "component ticket is invalid"))?;
        let mut p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        let platform = p
            .by_appid
            .get_mut(&appid)
            .ok_or_else(|| err(40013, "invalid appid"))?;
        if platform.secret != secret {
            return Err(err(40125, "invalid appsecret"));
        }
        let issued = platform
            .tickets
            .iter()
            .find(|(t, _)| *t == ticket)
            .map(|(_, at)| *at)
            .ok_or_else(|| err(61006, "component ticket is invalid"))?;
        if (now - issued).num_seconds() > TICKET_LIFETIME_SECS {
            return Err(err(61005, "component ticket is expired"));
        }
        platform.tokens.retain(|_, exp| *exp > now);
        drop(p);
        // The platform's own account's token, so clear_quota and getApiQuota with it
        // act on the platform's own quota.
        let (token, expires_in) = self.stable_token_of(&appid, &secret, now)?;
        let mut p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(platform) = p.by_appid.get_mut(&appid) {
            platform
                .tokens
                .insert(token.clone(), now + chrono::Duration::seconds(expires_in));
        }
        Ok(Answer {
            body: json!({"component_access_token": token, "expires_in": expires_in}),
        })
    }

    /// The platform whose valid component token the query carries.
    fn component_token_check(
        &self,
        field: &dyn Fn(&str) -> Option<String>,
        now: Timestamp,
    ) -> Result<String, Answer> {
        let token = field("component_access_token")
            .ok_or_else(|| err(41001, "component_access_token missing"))?;
        let p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
        for (appid, platform) in &p.by_appid {
            if let Some(exp) = platform.tokens.get(&token) {
                if *exp <= now {
                    return Err(err(42001, "component_access_token expired"));
                }
                return Ok(appid.clone());
            }
        }
        Err(err(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ))
    }

    fn authorizer_list(&self, component: &str, json: &Value) -> Result<Answer, Answer> {
        let offset = json.get("offset").and_then(Value::as_u64).unwrap_or(0);
        let count = json.get("count").and_then(Value::as_u64).unwrap_or(0);
        if count == 0 || count > MAX_PAGE {
            return Err(err(47001, "data format error: count must be 1 to 500"));
        }
        self.with_platform(component, |p| {
            let live: Vec<(&String, &SimAuthorizer)> = p.authorizers.iter().filter(|(_, a)| !a.revoked).collect();
            let list: Vec<Value> = live
                .iter()
                .skip(offset as usize)
                .take(count as usize)
                .map(|(appid, a)| json!({"authorizer_appid": appid, "refresh_token": a.refresh_token, "auth_time": a.auth_time}))
                .collect();
            Ok(Answer { body: json!({"total_count": live.len(), "list": list}) })
        })
    }

    fn query_auth(
        &self,
        component: &str,
        field: &dyn Fn(&str) -> Option<String>,
        now: Timestamp,
    ) -> Result<Answer, Answer> {
        let code =
            field("authorization_code").ok_or_else(|| err(61010, "authorization code missing"))?;
        let (appid, refresh) = self.with_platform(component, |p| {
            let appid = p
                .codes
                .remove(&code)
                .ok_or_else(|| err(61010, "code is expired or used"))?;
            let a = p
                .authorizers
                .get(&appid)
                .filter(|a| !a.revoked)
                .ok_or_else(|| err(61023, "refresh_token is invalid"))?;
            Ok::<_, Answer>((appid, a.refresh_token.clone()))
        })?;
        let (token, expires_in) = self.authorizer_access_token(&appid, now)?;
        Ok(Answer {
            body: json!({"authorization_info": {
                "authorizer_appid": appid, "authorizer_access_token": token, "expires_in": expires_in,
                "authorizer_refresh_token": refresh, "func_info": []}}),
        })
    }

    fn authorizer_token(
        &self,
        component: &str,
        field: &dyn Fn(&str) -> Option<String>,
        now: Timestamp,
    ) -> Result<Answer, Answer> {
        let appid =
            field("authorizer_appid").ok_or_else(|| err(41002, "authorizer_appid missing"))?;
        let given = field("authorizer_refresh_token")
            .ok_or_else(|| err(61023, "refresh_token is invalid"))?;
        let refresh = self.with_platform(component, |p| {
            p.authorizers
                .get(&appid)
                .filter(|a| !a.revoked && a.refresh_token == given)
                .map(|a| a.refresh_token.clone())
                .ok_or_else(|| err(61023, "refresh_token is invalid"))
        })?;
        let (token, expires_in) = self.authorizer_access_token(&appid, now)?;
        Ok(Answer {
            body: json!({"authorizer_access_token": token, "expires_in": expires_in, "authorizer_refresh_token": refresh}),
        })
    }

    /// An access token of the authorizer's own account (its stable token), so calls
    /// and clears with it count against that account.
    fn authorizer_access_token(
        &self,
        appid: &str,
        now: Timestamp,
    ) -> Result<(String, i64), Answer> {
        self.stable_token_of(appid, &authorizer_secret(appid), now)
    }

    /// The stable token of a simulator account, and its remaining lifetime (seconds).
    fn stable_token_of(
        &self,
        appid: &str,
        secret: &str,
        now: Timestamp,
    ) -> Result<(String, i64), Answer> {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false}).to_string();
        let answer = self.lock().handle(
            &Request {
                post: true,
                path: "/cgi-bin/stable_token",
                query: &[],
                body: body.as_bytes(),
            },
            now,
        );
        let token = answer
            .body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string);
        match token {
            Some(t) => Ok((
                t,
                answer
                    .body
                    .get("expires_in")
                    .and_then(Value::as_i64)
                    .unwrap_or(7200),
            )),
            None => Err(answer),
        }
    }

    /// `component/clear_quota/v2` `{component_appid, appsecret[, appid]}`: clears the
    /// authorizer `appid`, or the platform itself without one; spends that account's budget.
    fn component_clear(
        &self,
        field: &dyn Fn(&str) -> Option<String>,
        now: Timestamp,
    ) -> Result<Answer, Answer> {
        let component =
            field("component_appid").ok_or_else(|| err(41002, "component_appid missing"))?;
        let secret = field("appsecret").ok_or_else(|| err(41004, "appsecret missing"))?;
        let target = {
            let p = self.platforms.lock().unwrap_or_else(|e| e.into_inner());
            let platform = p
                .by_appid
                .get(&component)
                .ok_or_else(|| err(40013, "invalid appid"))?;
            if platform.secret != secret {
                return Err(err(40125, "invalid appsecret"));
            }
            match field("appid") {
                None => (component.clone(), secret.clone()),
                Some(a) if a == component => (component.clone(), secret.clone()),
                Some(a) => {
                    if platform.authorizers.get(&a).is_none_or(|x| x.revoked) {
                        return Err(err(61003, "component is not authorized by this account"));
                    }
                    let s = authorizer_secret(&a);
                    (a, s)
                }
            }
        };
        let query = vec![
            ("appid".to_string(), target.0),
            ("appsecret".to_string(), target.1),
        ];
        Ok(self.lock().handle(
            &Request {
                post: true,
                path: "/cgi-bin/clear_quota/v2",
                query: &query,
                body: b"",
            },
            now,
        ))
    }
}

/// Routes under `/cgi-bin/component` (nested, so paths arrive without the prefix).
pub(super) fn component_routes(sim: Simulator) -> Router {
    Router::new().fallback(component_api).with_state(sim)
}

async fn component_api(State(sim): State<Simulator>, uri: Uri, body: Bytes) -> Json<Value> {
    let path = format!("/cgi-bin/component{}", uri.path());
    let query = parse_pairs(uri.query().unwrap_or(""));
    let (answer, appid) = sim.component(&path, &query, &body);
    sim.record(&path, appid, Some(answer.errcode()));
    Json(answer.body)
}

/// The control API for platforms, under `/sim/platforms`: add one, add authorizers,
/// revoke one, push a ticket / an authorization now.
pub(super) fn control_routes(sim: Simulator) -> Router {
    Router::new()
        .route("/{appid}", post(control_add))
        .route("/{appid}/authorizers", post(control_authorizers))
        .route("/{appid}/push_ticket", post(control_push_ticket))
        .route("/{appid}/revoke", post(control_revoke))
        .with_state(sim)
}

fn control_known(sim: &Simulator, appid: &str) -> Result<(), (axum::http::StatusCode, String)> {
    let known = sim
        .platforms
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .by_appid
        .contains_key(appid);
    if known {
        Ok(())
    } else {
        Err((
            axum::http::StatusCode::NOT_FOUND,
            format!("no platform {appid}"),
        ))
    }
}

async fn control_add(
    State(sim): State<Simulator>,
    Path(appid): Path<String>,
    Json(v): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if MsgCrypt::new(&s("token"), &s("aes_key"), &appid).is_err() {
        return Err((
            axum::http::StatusCode::BAD_REQUEST,
            "aes_key must be 43 characters".into(),
        ));
    }
    sim.add_platform(&appid, &s("secret"), &s("token"), &s("aes_key"));
    if let Some(url) = v.get("push_url").and_then(Value::as_str) {
        sim.set_push_url(&appid, url);
    }
    Ok(Json(json!({"ok": true})))
}

async fn control_authorizers(
    State(sim): State<Simulator>,
    Path(appid): Path<String>,
    Json(v): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    control_known(&sim, &appid)?;
    let n = v
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .min(1_000_000) as usize;
    let added = sim.add_authorizers(&appid, n, LimitTable::from_preset(PresetName::None));
    Ok(Json(
        json!({"added": added.len(), "total": sim.authorizers(&appid).len()}),
    ))
}

async fn control_push_ticket(
    State(sim): State<Simulator>,
    Path(appid): Path<String>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    control_known(&sim, &appid)?;
    let r = sim
        .push_ticket(&appid)
        .await
        .map_err(|e| (axum::http::StatusCode::BAD_GATEWAY, e))?;
    Ok(Json(json!({"status": r.status, "body": r.body})))
}

async fn control_revoke(
    State(sim): State<Simulator>,
    Path(appid): Path<String>,
    Json(v): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    control_known(&sim, &appid)?;
    let a = v
        .get("authorizer_appid")
        .and_then(Value::as_str)
        .unwrap_or("");
    sim.revoke_authorizer(&appid, a);
    Ok(Json(json!({"ok": true})))
}

/// Authorizers each simulated platform starts with under `run --simulate`.
pub const SIMULATED_AUTHORIZERS: usize = 3;
/// How often WeChat pushes a ticket (WECHAT.md: every 10 minutes).
pub const TICKET_EVERY: Duration = Duration::from_secs(600);

/// `run --simulate`: every configured platform in the simulator (with its configured
/// authorizers and [`SIMULATED_AUTHORIZERS`] more), pushing tickets to the daemon at
/// `daemon` at once and then every [`TICKET_EVERY`]. Returns the push tasks.
pub fn simulate_platforms(
    sim: &Simulator,
    config: &crate::config::Config,
    daemon: std::net::SocketAddr,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for p in &config.platforms {
        sim.add_platform(
            &p.component_appid,
            p.secret.expose(),
            p.message_token.expose(),
            p.aes_key.expose(),
        );
        sim.set_push_url(
            &p.component_appid,
            &format!("http://{daemon}/v1/platforms/{}/events", p.name),
        );
        sim.add_authorizers(&p.component_appid, SIMULATED_AUTHORIZERS, p.limits.clone());
        for a in &p.authorizers {
            sim.add_configured_authorizer(&p.component_appid, &a.appid, a.limits.clone());
        }
        tasks.push(sim.push_tickets_every(&p.component_appid, TICKET_EVERY));
    }
    tasks
}

impl Simulator {
    /// Adds an authorizer with a given appid (e.g. one named in the config).
    pub fn add_configured_authorizer(
        &self,
        component_appid: &str,
        appid: &str,
        limits: LimitTable,
    ) {
        let now = self.clock.now().timestamp();
        self.with_platform(component_appid, |p| {
            p.authorizers
                .entry(appid.to_string())
                .or_insert_with(|| SimAuthorizer {
                    refresh_token: random_string("refreshtoken@@@", 40),
                    auth_time: now,
                    revoked: false,
                });
        });
        self.lock()
            .add_account(appid, &authorizer_secret(appid), limits);
    }
}
