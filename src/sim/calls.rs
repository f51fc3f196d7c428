//! What the simulator executed for the APIs the proxy forwards: every executed call
//! with its body (so tests can prove a message was sent once, never twice), and media
//! files (`media/upload` keeps the file, `media/get` returns it byte for byte).

use std::collections::{HashMap, VecDeque};

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::{Answer, Request};

/// Executed calls kept (oldest dropped first), so a long `wxquotad sim` stays bounded.
const MAX_EXECUTIONS: usize = 10_000;
/// Media files kept (oldest dropped first).
const MAX_MEDIA: usize = 256;

/// One call WeChat would have executed (answered with errcode 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The path, no query.
    pub path: String,
    pub appid: Option<String>,
    /// The request body, as received.
    pub body: Vec<u8>,
}

/// A stored media file.
#[derive(Debug, Clone)]
struct MediaFile {
    content_type: String,
    name: String,
    bytes: Bytes,
}

#[derive(Debug, Default)]
pub(super) struct Calls {
    executions: VecDeque<Execution>,
    media: HashMap<String, MediaFile>,
    media_order: VecDeque<String>,
    next_media: u64,
}

impl Calls {
    pub(super) fn executions(&self) -> Vec<Execution> {
        self.executions.iter().cloned().collect()
    }
}

/// The paths whose effects the rules in `state` keep themselves.
fn is_control_api(path: &str) -> bool {
    matches!(
        path,
        "/cgi-bin/token"
            | "/cgi-bin/stable_token"
            | "/cgi-bin/clear_quota"
            | "/cgi-bin/clear_quota/v2"
            | "/cgi-bin/openapi/quota/get"
    )
}

/// Called for every request the rules applied: records the execution and, for a media
/// upload, keeps the file and rewrites the answer as WeChat's.
pub(super) fn applied(
    calls: &mut Calls,
    req: &Request,
    appid: Option<String>,
    answer: &mut Answer,
    unix_now: i64,
) {
    if answer.errcode() != 0 || is_control_api(req.path) {
        return;
    }
    if calls.executions.len() == MAX_EXECUTIONS {
        calls.executions.pop_front();
    }
    calls.executions.push_back(Execution {
        path: req.path.to_string(),
        appid,
        body: req.body.to_vec(),
    });
    if req.path == "/cgi-bin/media/upload" {
        let (name, content_type, bytes) = file_part(req.body);
        calls.next_media += 1;
        let id = format!("sim-media-{}", calls.next_media);
        if calls.media_order.len() == MAX_MEDIA {
            if let Some(old) = calls.media_order.pop_front() {
                calls.media.remove(&old);
            }
        }
        calls.media_order.push_back(id.clone());
        calls.media.insert(
            id.clone(),
            MediaFile {
                content_type,
                name,
                bytes,
            },
        );
        let kind = req
            .query
            .iter()
            .find(|(k, _)| k == "type")
            .map_or("image", |(_, v)| v.as_str());
        answer.body = json!({ "type": kind, "media_id": id, "created_at": unix_now });
    }
}

/// The HTTP answer: the file for a successful `media/get`, else the JSON.
pub(super) fn respond(calls: &Calls, req: &Request, answer: Answer) -> Response {
    if req.path == "/cgi-bin/media/get" && answer.errcode() == 0 {
        let id = req
            .query
            .iter()
            .find(|(k, _)| k == "media_id")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        return match calls.media.get(id) {
            Some(f) => {
                let mut resp = (StatusCode::OK, f.bytes.clone()).into_response();
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&f.content_type) {
                    h.insert(header::CONTENT_TYPE, v);
                }
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename=\"{}\"", f.name))
                {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                resp
            }
            None => Json(json!({ "errcode": 40007, "errmsg": "invalid media_id" })).into_response(),
        };
    }
    Json(answer.body).into_response()
}

/// The file of a `multipart/form-data` body (WeChat's `media` field): its name, type
/// and bytes; a body that is not multipart is taken whole as the file.
fn file_part(body: &[u8]) -> (String, String, Bytes) {
    let whole = || {
        (
            "upload".to_string(),
            "application/octet-stream".to_string(),
            Bytes::copy_from_slice(body),
        )
    };
    // The first line is "--BOUNDARY".
    let Some(eol) = find(body, b"\r\n") else {
        return whole();
    };
    let Some(boundary) = body[..eol].strip_prefix(b"--") else {
        return whole();
    };
    let delimiter = [b"\r\n--".as_slice(), boundary].concat();
    let mut rest = &body[eol + 2..];
    loop {
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            return whole();
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content = &rest[head_end + 4..];
        let Some(end) = find(content, &delimiter) else {
            return whole();
        };
        if let Some(name) = head_value(&head, "filename=\"") {
            let content_type = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("content-type:")
                        .then(|| l["content-type:".len()..].trim().to_string())
                })
                .unwrap_or_else(|| "application/octet-stream".to_string());
            return (name, content_type, Bytes::copy_from_slice(&content[..end]));
        }
        // The next part starts after the delimiter's line end.
        let after = &content[end + delimiter.len()..];
        match after.strip_prefix(b"\r\n") {
            Some(next) => rest = next,
            None => return whole(),
        }
    }
}

fn head_value(head: &str, key: &str) -> Option<String> {
    let start = head.find(key)? + key.len();
    let len = head[start..].find('"')?;
    Some(head[start..start + len].to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_of_a_multipart_body_is_found_byte_for_byte() {
        let file: Vec<u8> = (0..=255u8).chain(b"\r\n--not-it".iter().copied()).collect();
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nimage\r\n",
        );
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n");
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let (name, ct, bytes) = file_part(&body);
        assert_eq!((name.as_str(), ct.as_str()), ("a.png", "image/png"));
        assert_eq!(&bytes[..], &file[..]);
        let (_, ct, bytes) = file_part(b"raw bytes");
        assert_eq!(
            (ct.as_str(), &bytes[..]),
            ("application/octet-stream", &b"raw bytes"[..])
        );
    }
}
