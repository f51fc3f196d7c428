//! Layers every route (API, `/healthz`, the status page) goes through: the `Host` and
//! `Origin` checks that keep web pages away from the API (SPEC §4), and the rewrite that
//! makes every error a JSON `{"error": ...}`, whoever produced it (axum's own 405 and
//! path rejections included).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::engine::Engine;

/// A request from a web page must not reach the API: a cross-site form or `fetch`
/// (a "simple" request needs no CORS preflight, so CORS alone does not stop a POST)
/// carries a foreign `Origin`, and DNS rebinding (a foreign name resolving to
/// 127.0.0.1) carries a foreign `Host`. Both are refused with 403. Tools such as `curl`
/// send neither an Origin nor a foreign Host, so they keep working.
pub async fn host_and_origin(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    if is_signed_push(req.uri().path()) {
        return next.run(req).await;
    }
    let config = engine.config();
    let listen = config.daemon.listen.ip();
    if let Err(why) = check(req.headers(), listen, &config.daemon.allowed_hosts) {
        return ApiError(StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(req).await
}

/// WeChat's platform push (`POST /v1/platforms/{name}/events`, SPEC §8) arrives through
/// whatever public name the platform's reverse proxy uses; its signature, not its
/// origin, authenticates it, so it is the one path the check leaves alone.
fn is_signed_push(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("v1"), Some("platforms"), Some(name), Some("events"), None) if !name.is_empty()
    )
}

/// The decision of [`host_and_origin`], on the headers alone.
pub fn check(headers: &HeaderMap, listen: IpAddr, allowed: &[String]) -> Result<(), String> {
    let host = match headers.get(header::HOST) {
        // HTTP/1.0 clients may send none; browsers always do.
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| "the Host header is not text".to_string())?
                .trim()
                .to_ascii_lowercase(),
        ),
    };
    if let Some(h) = &host {
        if !host_allowed(h, listen, allowed) {
            return Err(format!(
                "Host {h:?} is not this daemon's address (the listen address, localhost or \
                 [daemon] allowed_hosts): refused against DNS rebinding; add the name to \
                 allowed_hosts if clients use it"
            ));
        }
    }
    if let Some(v) = headers.get(header::ORIGIN) {
        let origin = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let same = matches!((authority, &host), (Some(a), Some(h)) if a == h);
        if !same {
            return Err(format!(
                "cross-origin request refused: Origin {origin:?} is not this daemon's own \
                 address, and web pages may not call the API"
            ));
        }
    }
    // Browsers label every request; a page of another site (or another port of this
    // machine) cannot forge this header.
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site == "cross-site" || site == "same-site" {
            return Err(format!(
                "cross-origin request refused (Sec-Fetch-Site: {site}): web pages may not \
                 call the API"
            ));
        }
    }
    Ok(())
}

/// Whether a `Host` value (lowercase, maybe with a port) names this daemon.
fn host_allowed(host: &str, listen: IpAddr, allowed: &[String]) -> bool {
    let name = strip_port(host).trim_end_matches('.');
    if name == "localhost" || allowed.iter().any(|a| a == name) {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => {
            ip == listen
                || listen.is_unspecified()
                || (listen.is_loopback() && ip.is_loopback())
                || allowed.iter().any(|a| a.parse::<IpAddr>() == Ok(ip))
        }
        Err(_) => false,
    }
}

/// `name:port` → `name`; `[v6]:port` and `[v6]` → `v6`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        // More than one ':' without brackets is a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Largest error body rewritten; longer ones are cut.
const MAX_ERROR_TEXT: usize = 4096;

/// Every error answer as JSON: a 4xx or 5xx whose body is not JSON already (axum's 405,
/// its rejections of a malformed URL or body, a timeout) becomes `{"error": ...}` with
/// the same status and headers (a 405 keeps its `Allow`).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            format!("method {method} is not allowed on {path}; allowed: {allow}")
        }
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let mut fresh = ApiError(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in fresh.headers() {
        parts.headers.insert(k.clone(), v.clone());
    }
    let body = std::mem::take(fresh.body_mut());
    Response::from_parts(parts, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_signed_push_is_exempt() {
        assert!(is_signed_push("/v1/platforms/acme/events"));
        assert!(!is_signed_push("/v1/platforms/acme/ticket"));
        assert!(!is_signed_push("/v1/platforms/acme/events/x"));
        assert!(!is_signed_push("/v1/platforms//events"));
        assert!(!is_signed_push("/v1/status"));
    }

    #[test]
    fn hosts_and_origins() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let allowed = vec!["wxq.internal".to_string()];
        let ok = |pairs: &[(&'static str, &str)]| check(&headers(pairs), lo, &allowed).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("host", "127.0.0.1:9477")]));
        assert!(ok(&[("host", "LOCALHOST:9477")]));
        assert!(ok(&[("host", "localhost.")]));
        assert!(ok(&[("host", "[::1]:9477")]));
        assert!(ok(&[("host", "wxq.internal:80")]));
        assert!(!ok(&[("host", "evil.example:9477")]));
        assert!(!ok(&[("host", "localhost.evil.example")]));
        assert!(!ok(&[("host", "10.1.2.3:9477")]));
        // Same origin: the daemon's own page.
        assert!(ok(&[
            ("host", "127.0.0.1:9477"),
            ("origin", "http://127.0.0.1:9477")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:9477"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:9477"), ("origin", "null")]));
        // Another port of this machine is another origin.
        assert!(!ok(&[
            ("host", "127.0.0.1:9477"),
            ("origin", "http://127.0.0.1:3000")
        ]));
        assert!(!ok(&[
            ("host", "127.0.0.1:9477"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(ok(&[
            ("host", "127.0.0.1:9477"),
            ("sec-fetch-site", "same-origin")
        ]));
        // Listening on every address: any IP literal names this machine.
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(check(&headers(&[("host", "10.1.2.3:9477")]), any, &[]).is_ok());
        assert!(check(&headers(&[("host", "evil.example")]), any, &[]).is_err());
    }
}
