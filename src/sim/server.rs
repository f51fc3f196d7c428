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
        .fallback(wechat)
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
    let (answer, appid) = {
        let mut state = sim.lock();
        let req = req.as_request();
        let answer = state.handle(&req, now);
        (answer, state.appid_of(&req))
    };
    sim.record(&req.path, appid, Some(answer.errcode()));
    answer
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
        None => Json(apply(&sim, &req).body).into_response(),
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
                apply(&sim, &req)
            });
            match task.await {
                Ok(answer) => Json(answer.body).into_response(),
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
