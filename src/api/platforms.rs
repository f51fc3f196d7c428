//! Platform endpoints (SPEC §8): WeChat's authorization-event push (authenticated by
//! its signature, so no bearer token), a ticket posted by a platform that decrypts its
//! pushes itself, and the platforms' overview.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::{bad_request, ApiError};
use crate::config::Platform;
use crate::engine::Engine;
use crate::platform::push::{self, Event, PushError};

/// Largest push body. WeChat's pushes are well under 4 KiB; anything near this is not one.
pub const MAX_PUSH_BODY: usize = 64 * 1024;

/// The signature-checked push: reachable without the bearer token.
pub(super) fn push_routes() -> Router<Engine> {
    Router::new().route(
        "/v1/platforms/{name}/events",
        post(post_events).layer(DefaultBodyLimit::max(MAX_PUSH_BODY)),
    )
}

/// Bearer-protected platform routes.
pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/v1/platforms", get(get_platforms))
        .route("/v1/platforms/{name}/ticket", post(post_ticket))
}

fn platform(engine: &Engine, name: &str) -> Result<Platform, ApiError> {
    engine
        .config()
        .platforms
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no platform named {name:?}")))
}

fn store_failed(e: crate::store::StoreError) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the state could not be written: {e}"),
    )
}

#[derive(Deserialize, Default)]
struct PushQuery {
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    msg_signature: String,
}

async fn post_events(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    query: Result<Query<PushQuery>, axum::extract::rejection::QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = platform(&engine, &name)?;
    let raw = raw.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                status,
                format!("body is larger than {MAX_PUSH_BODY} bytes; not a WeChat push"),
            )
        } else {
            ApiError(status, r.body_text())
        }
    })?;
    let Query(q) = query.map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))?;
    let event = match push::open(&p.crypt(), &q.timestamp, &q.nonce, &q.msg_signature, &raw) {
        Ok(e) => e,
        Err(e) => {
            warn!(event = "platform_push_refused", platform = %p.name, reason = %e, "platform push refused");
            let status = match e {
                PushError::Signature => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err(ApiError(status, e.to_string()));
        }
    };
    let now = engine.clock().now();
    let store = engine.store();
    let applied = match &event {
        Event::Ticket {
            ticket,
            create_time,
        } => store
            .save_ticket(&p.component_appid, ticket, *create_time, now)
            .map_err(store_failed)?,
        Event::Unauthorized {
            authorizer,
            create_time,
        } => store
            .authorizer_removed(&p.component_appid, authorizer, *create_time, now)
            .map_err(store_failed)?,
        Event::Authorized {
            authorizer,
            code: Some(code),
            create_time,
        } => {
            // api_query_auth is a call to WeChat: answer the push at once (WeChat waits
            // 5 s at most) and add the authorizer in the background. Should that fail,
            // the next discovery lists it anyway.
            let (engine, p) = (engine.clone(), p.clone());
            let (authorizer, code, create_time) = (authorizer.clone(), code.clone(), *create_time);
            tokio::spawn(async move {
                match engine
                    .platforms()
                    .authorized(&engine, &p, &authorizer, &code, create_time)
                    .await
                {
                    Ok(applied) => {
                        info!(event = "authorizer_added", platform = %p.name, authorizer = %authorizer, applied, "authorizer added by push")
                    }
                    Err(e) => {
                        warn!(event = "authorizer_add_failed", platform = %p.name, authorizer = %authorizer, error = %e, "authorized push not applied; discovery will list it")
                    }
                }
            });
            true
        }
        Event::Authorized { code: None, .. } | Event::Other { .. } => false,
    };
    info!(event = "platform_push", platform = %p.name, info_type = event.info_type(), applied, "platform push");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    ticket: String,
}

async fn post_ticket(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = platform(&engine, &name)?;
    let raw = super::body(raw)?;
    let req: TicketRequest = serde_json::from_slice(&raw).map_err(|e| {
        bad_request(format!(
            "invalid JSON, expected {{\"ticket\": \"...\"}}: {e}"
        ))
    })?;
    let ticket = req.ticket.trim();
    if ticket.is_empty() || ticket.len() > 512 || ticket.chars().any(char::is_control) {
        return Err(bad_request(
            "\"ticket\" must be the component_verify_ticket: 1 to 512 printable characters",
        ));
    }
    let now = engine.clock().now();
    engine
        .store()
        .save_ticket(&p.component_appid, ticket, now.timestamp(), now)
        .map_err(store_failed)?;
    info!(event = "platform_ticket", platform = %p.name, "component_verify_ticket posted");
    Ok(Json(json!({ "stored": true })))
}

/// `GET /v1/platforms`: each platform's ticket age, token state, authorizer count and
/// last discovery. Never a ticket or token.
async fn get_platforms(State(engine): State<Engine>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = engine.config();
    let now = engine.clock().now();
    let store = engine.store();
    let mut out = Vec::new();
    for p in &config.platforms {
        let ticket = store.ticket(&p.component_appid).map_err(store_failed)?;
        let discovery = store
            .last_discovery(&p.component_appid)
            .map_err(store_failed)?;
        let authorizers = store
            .authorizer_count(&p.component_appid)
            .map_err(store_failed)?;
        out.push(json!({
            "name": p.name,
            "component_appid": p.component_appid,
            "ticket": ticket.map(|t| json!({
                "received_at": crate::time::show(t.received_at),
                "age_seconds": (now - t.received_at).num_seconds().max(0),
            })),
            "component_token": if engine.platforms().has_component_token(&p.component_appid, now) { "cached" } else { "none" },
            "authorizers": authorizers,
            "authorizer_tokens_cached": engine.platforms().cached_authorizer_tokens(&p.component_appid),
            "discover_seconds": p.discover.as_secs(),
            "last_discovery": discovery.map(|(at, listed)| json!({
                "at": crate::time::show(at),
                "listed": listed,
            })),
        }));
    }
    Ok(Json(json!({ "platforms": out })))
}
