//! `POST /v1/report` bodies: parsing and shape checks, naming the bad item's index.
//! Account lookup happens in the engine, which applies a batch all or nothing.

use serde::Deserialize;

use crate::apipath;
use crate::engine::{Report, Reported, Target};

/// Items one request may carry.
pub const MAX_ITEMS: usize = 10_000;
/// Largest `calls` one item may report.
pub const MAX_CALLS: i64 = 1_000_000_000;

/// A problem with a report body, before any account is looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// 400: malformed or invalid.
    Invalid(String),
    /// 413: more than [`MAX_ITEMS`] items.
    TooMany(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    account: Option<String>,
    appid: Option<String>,
    api: Option<String>,
    calls: Option<i64>,
    errcode: Option<i64>,
}

/// Parses one object or an array of objects into checked reports.
pub fn parse(body: &[u8]) -> Result<Vec<Report>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let (raw, single) = match first {
        Some(b'[') => (deserialize::<Vec<RawItem>>(body)?, false),
        Some(b'{') => (vec![deserialize::<RawItem>(body)?], true),
        Some(_) => {
            return Err(BodyError::Invalid(
                "body must be a JSON object or an array of objects".into(),
            ))
        }
        None => return Err(BodyError::Invalid("body is empty".into())),
    };
    if raw.len() > MAX_ITEMS {
        return Err(BodyError::TooMany(raw.len()));
    }
    if raw.is_empty() {
        return Err(BodyError::Invalid("the array holds no reports".into()));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, item)| {
            check(item)
                .map_err(|m| BodyError::Invalid(if single { m } else { format!("item {i}: {m}") }))
        })
        .collect()
}

fn deserialize<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("at {path}: ")
        };
        BodyError::Invalid(format!("invalid JSON {at}{inner}"))
    })?;
    de.end()
        .map_err(|e| BodyError::Invalid(format!("invalid JSON: {e}")))?;
    Ok(value)
}

fn check(item: RawItem) -> Result<Report, String> {
    let target = match (item.account, item.appid) {
        (Some(a), None) => Target::Account(a),
        (None, Some(a)) => Target::Appid(a),
        (Some(_), Some(_)) => return Err("give either \"account\" or \"appid\", not both".into()),
        (None, None) => return Err("\"account\" or \"appid\" is required".into()),
    };
    let api = item.api.ok_or("\"api\" is required")?;
    let api = apipath::normalize(&api).map_err(|e| format!("\"api\": {e}"))?;
    let what = match (item.calls, item.errcode) {
        (Some(n), None) if (1..=MAX_CALLS).contains(&n) => Reported::Calls(n as u64),
        (Some(n), None) => {
            return Err(format!(
                "\"calls\" must be between 1 and {MAX_CALLS}, got {n}"
            ))
        }
        (None, Some(code)) => Reported::Errcode(code),
        (Some(_), Some(_)) => return Err("give either \"calls\" or \"errcode\", not both".into()),
        (None, None) => return Err("\"calls\" or \"errcode\" is required".into()),
    };
    Ok(Report { target, api, what })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(BodyError::Invalid(m)) => m,
            other => panic!("{body}: expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_spec_examples() {
        let one =
            parse(br#"{"account": "shop", "api": "/cgi-bin/message/custom/send", "calls": 25}"#)
                .unwrap();
        assert_eq!(
            one,
            vec![Report {
                target: Target::Account("shop".into()),
                api: "/cgi-bin/message/custom/send".into(),
                what: Reported::Calls(25)
            }]
        );
        let many = parse(
            br#"[{"appid": "wx448f04719cd48f69", "api": "https://api.weixin.qq.com/cgi-bin/user/info?access_token=T", "errcode": 45009},
                 {"account": "shop", "api": "cgi-bin/user/get", "calls": 1}]"#,
        )
        .unwrap();
        assert_eq!(many[0].api, "/cgi-bin/user/info");
        assert_eq!(many[0].what, Reported::Errcode(45009));
        assert_eq!(many[1].api, "/cgi-bin/user/get");
    }

    #[test]
    fn names_what_is_wrong_and_where() {
        assert!(err(r#"{"api": "/a", "calls": 1}"#).contains("\"account\" or \"appid\""));
        assert!(
            err(r#"{"account": "a", "appid": "b", "api": "/a", "calls": 1}"#).contains("not both")
        );
        assert!(err(r#"{"account": "a", "calls": 1}"#).contains("\"api\" is required"));
        assert!(err(r#"{"account": "a", "api": "/a", "calls": 0}"#).contains("between 1 and"));
        assert!(
            err(r#"{"account": "a", "api": "/a", "calls": 1000000001}"#).contains("between 1 and")
        );
        assert!(err(r#"{"account": "a", "api": "/a"}"#).contains("\"calls\" or \"errcode\""));
        assert!(
            err(r#"{"account": "a", "api": "/a", "calls": 1, "errcode": 45009}"#)
                .contains("not both")
        );
        assert!(err(r#"{"account": "a", "api": "/a", "call": 1}"#).contains("unknown field"));
        assert!(err(r#"{"account": "a", "api": "/a", "calls": 1.5}"#).contains("calls"));
        assert!(err(r#"[{"account": "a", "api": "/a", "calls": 1}, {"account": "a", "api": "/a b", "calls": 1}]"#)
            .starts_with("item 1:"));
        assert!(err(r#"[{"account": "a", "api": "/a", "calls": 1}, {"account": "a", "api": "/a", "calls": "x"}]"#)
            .contains("[1].calls"));
        assert!(err("").contains("empty"));
        assert!(err("[]").contains("no reports"));
        assert!(err("42").contains("object"));
        assert!(
            err(r#"{"account": "a", "api": "/a", "calls": 1} trailing"#).contains("invalid JSON")
        );
    }

    #[test]
    fn a_token_in_a_bad_path_is_never_echoed() {
        let m = err(r#"{"account": "a", "api": "/bad path?access_token=TOPSECRET", "calls": 1}"#);
        assert!(!m.contains("TOPSECRET"), "{m}");
    }

    #[test]
    fn too_many_items() {
        let item = r#"{"account":"a","api":"/a","calls":1}"#;
        let body = format!("[{}]", vec![item; MAX_ITEMS + 1].join(","));
        assert_eq!(
            parse(body.as_bytes()),
            Err(BodyError::TooMany(MAX_ITEMS + 1))
        );
    }
}
