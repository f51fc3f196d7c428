//! The HTTP API (SPEC §4): reports, status, clear, health. JSON in and out; every
//! error is `{"error": "..."}` with a 4xx status.

pub mod guard;
pub mod page;
pub mod platforms;
pub mod report;
pub mod server;
pub mod status_filter;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::engine::{Engine, ReportError};

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// Longest a request body may take to arrive once its headers are in.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest clear `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The router, with the engine as state.
pub fn router(engine: Engine) -> Router {
    let authed = Router::new()
        .route(
            "/v1/report",
            post(post_report).layer(middleware::from_fn_with_state(
                engine.clone(),
                count_reports,
            )),
        )
        .route("/metrics", get(get_metrics))
        .route("/v1/status", get(get_status))
        .route("/v1/accounts/{name}", get(get_account))
        .route("/v1/accounts/{name}/clear", post(post_clear))
        .route("/v1/decisions", get(page::get_decisions))
        .merge(platforms::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            engine.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(page::get_page))
        .merge(platforms::push_routes())
        .merge(authed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A body that trickles in holds a connection: give up on it.
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        // Outermost, so every route (the status page too), the fallback and routes added
        // later are covered: first the Host/Origin check, around everything the JSON
        // error rewrite.
        .layer(middleware::from_fn_with_state(
            engine.clone(),
            guard::host_and_origin,
        ))
        .layer(middleware::from_fn(guard::json_errors))
        .with_state(engine)
}

/// `200 ok`, or 503 with the reason when the daemon cannot record clears (its state file
/// was deleted or replaced while running).
async fn healthz(State(engine): State<Engine>) -> Response {
    match engine.store().check_identity() {
        Ok(()) => "ok".into_response(),
        Err(why) => ApiError(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// An API error: status and a message for `{"error": ...}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of an oversized body may still be on its way: close the
            // connection rather than let the client reuse it mid-stream.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

/// With `api_token_file` set, every route but /healthz needs `Authorization: Bearer <token>`.
async fn require_token(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    let config = engine.config();
    if let Some(expected) = &config.daemon.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = given.as_bytes().ct_eq(expected.expose().as_bytes()).into();
        if !ok {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token from api_token_file>)"
                    .into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Counts report requests by the status they got.
async fn count_reports(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    engine
        .metrics()
        .report_requests
        .get_or_create(&crate::metrics::StatusLabel {
            status: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

async fn get_metrics(State(engine): State<Engine>) -> Response {
    let body = engine.metrics().render(&engine.status());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

/// Reads a body, turning axum's rejections (e.g. past 1 MiB) into our JSON errors.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let m = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body is larger than {MAX_BODY} bytes (1 MiB)")
        } else {
            r.body_text()
        };
        ApiError(status, m)
    })
}

async fn post_report(
    State(engine): State<Engine>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let raw = body(raw)?;
    let items = report::parse(&raw).map_err(|e| match e {
        report::BodyError::Invalid(m) => bad_request(m),
        report::BodyError::TooMany(n) => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} reports in one request; at most {} are accepted",
                report::MAX_ITEMS
            ),
        ),
    })?;
    match engine.report(&items) {
        Ok(n) => Ok(Json(json!({ "accepted": n }))),
        Err(e @ ReportError::UnknownAccount { .. }) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ ReportError::TooManyPaths { .. }) => Err(bad_request(e.to_string())),
    }
}

async fn get_status(
    State(engine): State<Engine>,
    filter: Result<
        axum::extract::Query<status_filter::StatusFilter>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<crate::engine::StatusDoc>, ApiError> {
    let axum::extract::Query(filter) = filter.map_err(|e| {
        bad_request(format!(
            "invalid filter ({}); expected platform=, state= or account=",
            e.body_text()
        ))
    })?;
    let mut doc = engine.status();
    filter.apply(&engine.config(), &mut doc.accounts)?;
    Ok(Json(doc))
}

async fn get_account(
    State(engine): State<Engine>,
    Path(name): Path<String>,
) -> Result<Json<crate::engine::status::AccountStatus>, ApiError> {
    engine
        .account_status(&name)
        .map(Json)
        .ok_or_else(|| no_account(&name))
}

fn no_account(name: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no account named {name:?}"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClearRequest {
    #[serde(default)]
    force: bool,
    reason: Option<String>,
    /// Clear only this interface, by a per-interface clear (clearApiQuota).
    api: Option<String>,
}

async fn post_clear(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<crate::engine::ClearResult>, ApiError> {
    let raw = body(raw)?;
    let req: ClearRequest = if raw.iter().all(|b| b.is_ascii_whitespace()) {
        ClearRequest::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| bad_request(format!("invalid JSON: {e}")))?
    };
    if let Some(r) = &req.reason {
        // Characters, as the message says: a Chinese reason is 3 bytes a character.
        let n = r.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(bad_request(format!(
                "\"reason\" is {n} characters long; at most {MAX_REASON_CHARS} are accepted"
            )));
        }
    }
    let api = match &req.api {
        Some(a) => {
            Some(crate::apipath::normalize(a).map_err(|e| bad_request(format!("\"api\": {e}")))?)
        }
        None => None,
    };
    engine
        .clear_now_of(&name, req.force, req.reason, api.as_deref())
        .await
        .map(Json)
        .ok_or_else(|| no_account(&name))
}
