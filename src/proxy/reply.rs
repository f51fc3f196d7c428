//! The proxy's own answers: WeChat-shaped JSON errors (`{"errcode": -1, "errmsg":
//! "wxquotad: ..."}`) and the body type every answer uses.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every answer's body: whole, or streamed from WeChat.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// WeChat's error shape with errcode -1, so SDKs report it as an error; `errmsg`
/// says what happened (and never holds a token or secret).
pub fn wechat_error(status: StatusCode, errmsg: &str) -> Response<ProxyBody> {
    json(
        status,
        &serde_json::json!({ "errcode": -1, "errmsg": errmsg }),
    )
}

/// WeChat's own answer for `errcode` (e.g. 40125 "invalid appsecret"), HTTP 200.
pub fn wechat_errcode(errcode: i64, errmsg: &str) -> Response<ProxyBody> {
    json(
        StatusCode::OK,
        &serde_json::json!({ "errcode": errcode, "errmsg": errmsg }),
    )
}
