//! The status page (SPEC §11): `GET /` serves one self-contained HTML page (no external
//! assets; it reads `/v1/status` and `/v1/decisions` itself, with the bearer token the
//! user typed when `api_token_file` is set), and `GET /v1/decisions` the latest decision
//! events.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::engine::decisions::CAPACITY;
use crate::engine::Engine;

/// The page, compiled in: the daemon serves it with no file on disk.
const PAGE: &str = include_str!("page.html");

/// Decisions answered when `limit` is not given.
pub const DEFAULT_DECISIONS: usize = 50;

/// `GET /`: the page shell. It holds no data, so it needs no token; the data comes from
/// the API, which does.
pub async fn get_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing from elsewhere, ever: these servers often have no internet, and a
            // page that loads nothing foreign leaks nothing. No framing (clickjacking).
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct DecisionsQuery {
    limit: Option<String>,
}

/// `GET /v1/decisions?limit=N`: the latest decision events, newest first.
pub async fn get_decisions(
    State(engine): State<Engine>,
    Query(q): Query<DecisionsQuery>,
) -> Result<Response, ApiError> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_DECISIONS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=CAPACITY).contains(&n) => n,
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {CAPACITY}, not {raw:?}"),
                ))
            }
        },
    };
    Ok(Json(json!({ "decisions": engine.decisions(limit) })).into_response())
}
