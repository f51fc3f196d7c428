//! The simulator's wire shapes: a request as the rules see it (path, decoded query,
//! body), the JSON answer, and query/form decoding.

use serde_json::{json, Value};

/// A request as the rules see it.
pub struct Request<'a> {
    pub post: bool,
    /// The path, no query.
    pub path: &'a str,
    /// The decoded query parameters.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn json(&self) -> Option<Value> {
        serde_json::from_slice::<Value>(self.body)
            .ok()
            .filter(Value::is_object)
    }
}

/// The answer: always HTTP 200 with a JSON body, like WeChat.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub body: Value,
}

impl Answer {
    pub(super) fn ok() -> Answer {
        Answer::err(0, "ok")
    }

    pub(super) fn err(errcode: i64, errmsg: &str) -> Answer {
        Answer {
            body: json!({ "errcode": errcode, "errmsg": errmsg }),
        }
    }

    /// The errcode answered (0 when the body has none, as token answers).
    pub fn errcode(&self) -> i64 {
        self.body
            .get("errcode")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs (`+` is a space).
pub fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn form_param(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if text.trim_start().starts_with('{') {
        return None;
    }
    parse_pairs(text.trim())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
