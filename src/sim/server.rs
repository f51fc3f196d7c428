//! The simulator's HTTP side: WeChat's `/cgi-bin/...` paths (faults applied first) and
//! the `/sim/` control API for black-box tests of the real binary.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::state::{parse_pairs, Answer, Request};
use super::{Endpoint, Fault, FaultKind, Simulator};
use crate::config::{LimitSource, LimitTable, PresetName};

/// Largest request body accepted, bytes.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How long a `ChargeThenDrop` request is held open.
const HOLD: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct Ctx {
    sim: Simulator,
    /// Turns true when the server shuts down, ending held-open requests.
    stop: watch::Receiver<bool>,
}

pub(super) fn router(sim: Simulator, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/sim/accounts", post(add_account))
        .route("/sim/usage", post(set_usage))
        .route("/sim/not_reset", post(set_not_reset))
        .route("/sim/clears", post(set_clears))
        .route("/sim/faults", post(add_fault))
        .route("/sim/state", get(state))
        .nest_service(
            "/cgi-bin/component",
            super::platform::component_routes(sim.clone()),
        )
        .nest_service(
            "/sim/platforms",
            super::platform::control_routes(sim.clone()),
        )
        .fallback(wechat)
        // Media uploads (the proxy's 20 MB test) are larger than axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Ctx { sim, stop })
}

/// A request with owned parts, so it can be handled in a task of its own.
struct Owned {
    post: bool,
    path: String,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl Owned {
    fn as_request(&self) -> Request<'_> {
        Request {
            post: self.post,
            path: &self.path,
            query: &self.query,
            body: &self.body,
        }
    }
}

/// Applies one request to the state, records it and returns the answer.
fn apply(sim: &Simulator, req: &Owned) -> Answer {
    let now = sim.clock.now();
    let (mut answer, appid) = {
        let mut state = sim.lock();
        let req = req.as_request();
        let answer = state.handle(&req, now);
        (answer, state.appid_of(&req))
    };
    sim.record(&req.path, appid.clone(), Some(answer.errcode()));
    super::calls::applied(
        &mut sim.calls(),
        &req.as_request(),
        appid,
        &mut answer,
        now.timestamp(),
    );
    answer
}

/// The HTTP answer for an applied request (a media file, or the JSON).
fn respond(sim: &Simulator, req: &Owned, answer: Answer) -> Response {
    super::calls::respond(&sim.calls(), &req.as_request(), answer)
}

async fn wechat(State(ctx): State<Ctx>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    if !path.starts_with("/cgi-bin/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let req = Owned {
        post: method == Method::POST,
        path,
        query: parse_pairs(uri.query().unwrap_or("")),
        body,
    };
    let sim = ctx.sim.clone();
    let appid = || sim.lock().appid_of(&req.as_request());
    match sim.take_fault(&req.path) {
        None => {
            let answer = apply(&sim, &req);
            respond(&sim, &req, answer)
        }
        Some(FaultKind::Http(status)) => {
            sim.record(&req.path, appid(), None);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "simulated HTTP error").into_response()
        }
        Some(FaultKind::Errcode(errcode)) => {
            sim.record(&req.path, appid(), Some(errcode));
            Json(json!({ "errcode": errcode, "errmsg": "simulated fault" })).into_response()
        }
        Some(FaultKind::Garbage) => {
            sim.record(&req.path, appid(), None);
            "<html><body>simulated garbage</body></html>".into_response()
        }
        Some(FaultKind::Delay(delay)) => {
            // In a task of its own: the request takes effect after the delay even if the
            // client has hung up (and the server dropped this handler) by then.
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                (apply(&sim, &req), req)
            });
            match task.await {
                Ok((answer, req)) => respond(&ctx.sim, &req, answer),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        Some(FaultKind::ChargeThenDrop) => {
            apply(&sim, &req);
            let mut stop = ctx.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(HOLD) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Some(FaultKind::ChargeThenReset) => {
            apply(&sim, &req);
            // Headers go out, then the body fails: the connection is cut mid-answer.
            let cut = futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("simulated reset"))
            });
            (StatusCode::OK, axum::body::Body::from_stream(cut)).into_response()
        }
    }
}

fn bad(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn done(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => bad(StatusCode::NOT_FOUND, e),
    }
}

fn api_path(raw: &str) -> Result<String, String> {
    crate::apipath::normalize(raw)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    appid: String,
    secret: String,
    /// "normal" (default), "test" or "none".
    preset: Option<String>,
    /// Path → calls per day, over the preset.
    #[serde(default)]
    limits: BTreeMap<String, u64>,
}

async fn add_account(State(ctx): State<Ctx>, Json(b): Json<AccountBody>) -> Response {
    let preset_name = b.preset.as_deref().unwrap_or("normal");
    let Some(preset) = PresetName::parse(preset_name) else {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("unknown preset {preset_name:?}"),
        );
    };
    let mut limits = LimitTable::from_preset(preset);
    for (raw, n) in &b.limits {
        match api_path(raw) {
            Ok(path) => limits.set(&path, *n, LimitSource::Config),
            Err(e) => return bad(StatusCode::BAD_REQUEST, e),
        }
    }
    ctx.sim.add_account(&b.appid, &b.secret, limits);
    done(Ok(()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBody {
    appid: String,
    api: String,
    used: u64,
}

async fn set_usage(State(ctx): State<Ctx>, Json(b): Json<UsageBody>) -> Response {
    let path = match api_path(&b.api) {
        Ok(p) => p,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let now = ctx.sim.clock.now();
    let result = ctx.sim.lock().set_usage(&b.appid, &path, b.used, now);
    done(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotResetBody {
    appid: String,
    api: String,
}

async fn set_not_reset(State(ctx): State<Ctx>, Json(b): Json<NotResetBody>) -> Response {
    let path = match api_path(&b.api) {
        Ok(p) => p,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let result = ctx.sim.lock().set_not_reset(&b.appid, &path);
    done(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearsBody {
    appid: String,
    /// Clears already made this month.
    charged: Option<u32>,
    /// The monthly budget.
    limit: Option<u32>,
}

async fn set_clears(State(ctx): State<Ctx>, Json(b): Json<ClearsBody>) -> Response {
    let now = ctx.sim.clock.now();
    let mut state = ctx.sim.lock();
    let mut result = Ok(());
    if let Some(n) = b.charged {
        result = result.and_then(|()| state.set_clears_charged(&b.appid, n, now));
    }
    if let Some(n) = b.limit {
        result = result.and_then(|()| state.set_clear_limit(&b.appid, n));
    }
    drop(state);
    done(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    endpoint: String,
    kind: String,
    status: Option<u16>,
    errcode: Option<i64>,
    delay_ms: Option<u64>,
    /// Default 1.
    times: Option<u32>,
}

/// The control API's fault description as a [`Fault`].
fn fault_of(b: &FaultBody) -> Result<Fault, String> {
    let endpoint =
        Endpoint::parse(&b.endpoint).ok_or_else(|| format!("unknown endpoint {:?}", b.endpoint))?;
    let kind = match b.kind.as_str() {
        "http" => FaultKind::Http(b.status.ok_or("kind \"http\" needs \"status\"")?),
        "errcode" => FaultKind::Errcode(b.errcode.ok_or("kind \"errcode\" needs \"errcode\"")?),
        "garbage" => FaultKind::Garbage,
        "delay" => FaultKind::Delay(Duration::from_millis(
            b.delay_ms.ok_or("kind \"delay\" needs \"delay_ms\"")?,
        )),
        "charge_then_drop" => FaultKind::ChargeThenDrop,
        "charge_then_reset" => FaultKind::ChargeThenReset,
        other => return Err(format!("unknown fault kind {other:?}")),
    };
    Ok(Fault {
        endpoint,
        kind,
        times: b.times.unwrap_or(1),
    })
}

async fn add_fault(State(ctx): State<Ctx>, Json(b): Json<FaultBody>) -> Response {
    match fault_of(&b) {
        Ok(fault) => {
            ctx.sim.inject(fault);
            done(Ok(()))
        }
        Err(e) => bad(StatusCode::BAD_REQUEST, e),
    }
}

async fn state(State(ctx): State<Ctx>) -> Json<Value> {
    let now = ctx.sim.clock.now();
    let state = ctx.sim.lock();
    let accounts: Vec<Value> = state
        .appids()
        .iter()
        .map(|appid| {
            json!({
                "appid": appid,
                "clears_charged": state.clears_charged(appid, now),
                "usage": state.usage_today(appid, now),
            })
        })
        .collect();
    Json(json!({ "accounts": accounts, "requests": state.requests }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::time::{parse, Clock};
    use crate::wechat::{WechatClient, WechatError};

    const APPID: &str = "wxhttp";
    const SECRET: &str = "http-secret";

    fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    async fn started(start: &str) -> (Simulator, WechatClient, String) {
        let sim = Simulator::new(Clock::manual(parse(start).unwrap()));
        sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
        let (addr, _task) = sim.clone().start().await.unwrap();
        let base = format!("http://{addr}");
        let client = WechatClient::new(&base, Duration::from_millis(300));
        (sim, client, base)
    }

    #[tokio::test]
    async fn ten_clears_then_48006_until_the_month_turns_in_utc8() {
        within(async {
            let (sim, client, _) = started("2026-11-30T23:59:00+08:00").await;
            let secret = Secret::new(SECRET);
            let token = client.stable_token(APPID, &secret).await.unwrap().token;
            for i in 0..10 {
                if i % 2 == 0 {
                    client.clear_quota(&token, APPID).await.unwrap();
                } else {
                    client.clear_quota_v2(APPID, &secret).await.unwrap();
                }
            }
            let e = client.clear_quota(&token, APPID).await.unwrap_err();
            assert_eq!(e.errcode(), Some(48006));
            sim.clock().set(parse("2026-11-30T23:59:59+08:00").unwrap());
            let e = client.clear_quota_v2(APPID, &secret).await.unwrap_err();
            assert_eq!(e.errcode(), Some(48006));
            assert_eq!(sim.clears_charged(APPID), 10);
            sim.clock().advance(Duration::from_secs(1));
            assert_eq!(sim.clears_charged(APPID), 0);
            client.clear_quota(&token, APPID).await.unwrap();
            assert_eq!(sim.clears_charged(APPID), 1);
            let codes: Vec<Option<i64>> = sim.requests().iter().map(|r| r.errcode).collect();
            assert_eq!(codes.iter().filter(|c| **c == Some(48006)).count(), 2);
            assert!(sim
                .requests()
                .iter()
                .all(|r| r.appid.as_deref() == Some(APPID)));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn charge_then_drop_times_out_with_the_clear_charged() {
        within(async {
            let (sim, client, _) = started("2026-11-22T10:00:00+08:00").await;
            let secret = Secret::new(SECRET);
            let token = client.stable_token(APPID, &secret).await.unwrap().token;
            sim.inject(Fault {
                endpoint: Endpoint::ClearQuota,
                kind: FaultKind::ChargeThenDrop,
                times: 1,
            });
            let e = client.clear_quota(&token, APPID).await.unwrap_err();
            assert_eq!(e, WechatError::Timeout);
            assert!(e.may_have_taken_effect());
            assert_eq!(sim.clears_charged(APPID), 1);
            let last = sim.requests().pop().unwrap();
            assert_eq!(last.endpoint, "/cgi-bin/clear_quota");
            assert_eq!(last.errcode, Some(0));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_held_requests() {
        within(async {
            let sim = Simulator::new(Clock::manual(parse("2026-11-22T10:00:00+08:00").unwrap()));
            sim.add_account(APPID, SECRET, LimitTable::from_preset(PresetName::Normal));
            sim.inject(Fault {
                endpoint: Endpoint::Any,
                kind: FaultKind::ChargeThenDrop,
                times: 1,
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(sim.clone().serve(listener, async {
                let _ = rx.await;
            }));
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(30));
            let call = tokio::spawn(async move {
                client
                    .clear_quota_v2(APPID, &Secret::new(SECRET))
                    .await
                    .unwrap_err()
            });
            while sim.clears_charged(APPID) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tx.send(()).unwrap();
            server.await.unwrap().unwrap();
            assert_eq!(call.await.unwrap(), WechatError::Http { status: 503 });
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_control_api_sets_up_and_reports() {
        within(async {
            let (_sim, client, base) = started("2026-11-22T10:00:00+08:00").await;
            let http = reqwest::Client::new();
            let post =
                |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
            let r = post(
                "/sim/accounts",
                json!({"appid": "wxmini", "secret": "m", "preset": "none",
                       "limits": {"/cgi-bin/message/template/send": 5}}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
            let r = post(
                "/sim/accounts",
                json!({"appid": "x", "secret": "y", "preset": "big"}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 400);
            let r = post(
                "/sim/usage",
                json!({"appid": "wxmini", "api": "cgi-bin/message/template/send", "used": 5}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
            let r = post(
                "/sim/usage",
                json!({"appid": "nope", "api": "/cgi-bin/a", "used": 1}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 404);
            post(
                "/sim/not_reset",
                json!({"appid": "wxmini", "api": "/cgi-bin/message/template/send"}),
            )
            .await
            .unwrap();
            post(
                "/sim/faults",
                json!({"endpoint": "clear_quota_v2", "kind": "errcode", "errcode": -1, "times": 1}),
            )
            .await
            .unwrap();
            let r = post(
                "/sim/faults",
                json!({"endpoint": "nowhere", "kind": "garbage"}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 400);

            let secret = Secret::new("m");
            let e = client.clear_quota_v2("wxmini", &secret).await.unwrap_err();
            assert_eq!(e.errcode(), Some(-1));
            client.clear_quota_v2("wxmini", &secret).await.unwrap();
            let token = client.stable_token("wxmini", &secret).await.unwrap().token;
            let q = client
                .get_api_quota(&token, "/cgi-bin/message/template/send")
                .await
                .unwrap();
            assert_eq!((q.daily_limit, q.used, q.remain), (5, 5, 0));

            let state: Value = http
                .get(format!("{base}/sim/state"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mini = state["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["appid"] == "wxmini")
                .unwrap();
            assert_eq!(mini["clears_charged"], 1);
            assert_eq!(mini["usage"]["/cgi-bin/message/template/send"], 5);
            let requests = state["requests"].as_array().unwrap();
            assert_eq!(requests.len(), 4);
            assert_eq!(requests[0]["endpoint"], "/cgi-bin/clear_quota/v2");
            assert_eq!(requests[0]["errcode"], -1);
            assert_eq!(requests[0]["appid"], "wxmini");
            let text = state.to_string();
            assert!(!text.contains(token.expose()), "no token in the state");
            assert!(!text.contains("\"m\""), "no secret in the state");
        })
        .await
        .unwrap();
    }
}
