//! The baseline for the report-ingestion benchmark (bench/ingest.sh): the smallest axum
//! server that does what `POST /v1/report` must do before the engine sees anything —
//! read the body (1 MiB limit), parse and check it with the daemon's own parser — and
//! answers `200 {"accepted": N}`. No accounts, no counters, no decision.
//!
//! Usage: `bench_baseline [ADDR]` (default 127.0.0.1:9480). Built like the daemon: the
//! same runtime shape (multi-thread, one worker per core) and the same axum features.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use wxquotad::api::report;

async fn post_report(body: Bytes) -> (StatusCode, Json<Value>) {
    match report::parse(&body) {
        Ok(items) => (StatusCode::OK, Json(json!({ "accepted": items.len() }))),
        Err(report::BodyError::Invalid(m)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": m })))
        }
        Err(report::BodyError::TooMany(n)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "error": format!("{n} reports") })),
        ),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9480".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new()
            .route("/v1/report", post(post_report))
            .layer(DefaultBodyLimit::max(wxquotad::api::MAX_BODY));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}
