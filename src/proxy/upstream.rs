//! Forwarding to WeChat: one pooled keep-alive client (rustls), request and response
//! bodies streamed, hop-by-hop headers removed, and what each try came to: an answer,
//! nothing sent (502), or sent with no answer (504).

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::reply::{self, ProxyBody};
use super::verdict::Tried;

/// Answers up to this long are read whole before they go back, so their `errcode` can
/// be seen (WeChat's JSON answers are far smaller); longer ones stream through.
const PEEK_BYTES: usize = 64 * 1024;
/// Idle keep-alive connections kept per WeChat host.
const IDLE_PER_HOST: usize = 64;

/// A request body: kept whole (small enough to send again) or streamed once.
pub enum RequestBody {
    Kept(Bytes),
    /// Taken by the first try; `None` afterwards.
    Streamed(Option<reqwest::Body>),
}

impl RequestBody {
    /// Reads `body` whole when it is at most `max` bytes (per Content-Length, else by
    /// reading up to `max + 1`); otherwise streams it, with what was read so far first.
    pub async fn read(
        body: Incoming,
        headers: &HeaderMap,
        max: u64,
        timeout: Duration,
    ) -> Result<RequestBody, String> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Ok(RequestBody::Streamed(Some(reqwest::Body::wrap(body))));
        }
        let mut body = body;
        let mut kept: Vec<Bytes> = Vec::new();
        let mut size = 0u64;
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("could not read the request body: {e}"))?;
                if let Ok(data) = frame.into_data() {
                    size += data.len() as u64;
                    kept.push(data);
                    if size > max {
                        return Ok(false);
                    }
                }
            }
            Ok::<bool, String>(true)
        };
        let complete = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| "the request body did not arrive within the timeout".to_string())??;
        if complete {
            let mut all = Vec::with_capacity(size as usize);
            for chunk in kept {
                all.extend_from_slice(&chunk);
            }
            return Ok(RequestBody::Kept(Bytes::from(all)));
        }
        let head = futures_util::stream::iter(kept.into_iter().map(Ok::<_, hyper::Error>));
        let rest = body.into_data_stream();
        let joined = head.chain(rest).map_ok(Frame::data);
        Ok(RequestBody::Streamed(Some(reqwest::Body::wrap(
            StreamBody::new(joined),
        ))))
    }

    /// The whole body, when it was kept.
    pub fn kept(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Kept(b) => Some(b),
            RequestBody::Streamed(_) => None,
        }
    }

    /// A body for one more try, if there is one left.
    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            RequestBody::Kept(b) => Some(reqwest::Body::from(b.clone())),
            RequestBody::Streamed(s) => s.take(),
        }
    }
}

/// One call to forward: everything but the host.
pub struct Outgoing {
    pub method: Method,
    /// The path and query as WeChat should see them (prefix removed, token added).
    pub path_and_query: String,
    /// The client's headers less hop-by-hop ones and `Host`.
    pub headers: HeaderMap,
    pub body: RequestBody,
}

/// WeChat's answer: status, headers, and the body (whole when short).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: AnswerBody,
}

pub enum AnswerBody {
    Whole(Bytes),
    /// The first chunks, then the rest as it comes.
    Streaming(Vec<Bytes>, reqwest::Response),
}

impl Answer {
    /// The `errcode` of a whole JSON answer.
    pub fn errcode(&self) -> Option<i64> {
        match &self.body {
            AnswerBody::Whole(b) => serde_json::from_slice::<serde_json::Value>(b)
                .ok()?
                .get("errcode")?
                .as_i64(),
            AnswerBody::Streaming(..) => None,
        }
    }
}

/// What one try came to, and when it was sent.
pub struct Try {
    pub reply: Reply,
    pub sent_at: Instant,
}

pub enum Reply {
    Answer(Box<Answer>),
    /// Nothing reached WeChat; why.
    NotSent(String),
    /// Sent, no answer; why.
    NoAnswer(String),
}

impl Try {
    pub fn tried(&self) -> Tried {
        match &self.reply {
            Reply::Answer(a) => Tried::Answered {
                status: a.status.as_u16(),
                errcode: a.errcode(),
            },
            Reply::NotSent(_) => Tried::NotSent,
            Reply::NoAnswer(_) => Tried::NoAnswer,
        }
    }

    /// The answer for the client: WeChat's unchanged, or a 502/504 saying which.
    pub fn into_response(self) -> hyper::Response<ProxyBody> {
        match self.reply {
            Reply::Answer(a) => {
                let a = *a;
                let body = match a.body {
                    AnswerBody::Whole(b) => reply::full(b),
                    AnswerBody::Streaming(head, rest) => {
                        let head = futures_util::stream::iter(head.into_iter().map(Ok));
                        let rest = reqwest::Body::from(rest).into_data_stream();
                        let frames = head
                            .chain(rest)
                            .map_ok(Frame::data)
                            .map_err(reply::BoxError::from);
                        http_body_util::combinators::BoxBody::new(StreamBody::new(frames))
                    }
                };
                let mut resp = hyper::Response::new(body);
                *resp.status_mut() = a.status;
                *resp.headers_mut() = a.headers;
                resp
            }
            Reply::NotSent(why) => reply::wechat_error(
                StatusCode::BAD_GATEWAY,
                &format!("wxquotad: could not reach WeChat ({why}); nothing was sent"),
            ),
            Reply::NoAnswer(why) => reply::wechat_error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "wxquotad: the call was sent but WeChat gave no answer ({why}); it may have been executed and was not sent again"
                ),
            ),
        }
    }
}

/// The client to WeChat. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    timeout: Duration,
}

impl Upstream {
    /// `timeout` bounds the wait for an answer's status and headers, and each read of
    /// its body; connecting may take at most half of it, so a host that cannot be
    /// reached still leaves time for a fallback.
    pub fn new(timeout: Duration) -> Upstream {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout / 2)
            .read_timeout(timeout)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .tcp_nodelay(true)
            // A redirect would carry the token elsewhere; WeChat does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Upstream { http, timeout }
    }

    /// Sends `call` to `hosts` in order, moving on only while nothing could be sent
    /// (and the body can be sent again).
    pub async fn forward(&self, hosts: &[String], call: &mut Outgoing) -> Try {
        let mut last = None;
        for host in hosts {
            let Some(body) = call.body.take() else { break };
            let t = self.send(host, call, body).await;
            match t.reply {
                Reply::NotSent(ref why) => {
                    tracing::warn!(host = %host, reason = %why, "WeChat host unreachable; nothing sent");
                    last = Some(t);
                }
                _ => return t,
            }
        }
        last.unwrap_or_else(|| Try {
            reply: Reply::NotSent("no host to send to".into()),
            sent_at: Instant::now(),
        })
    }

    async fn send(&self, host: &str, call: &Outgoing, body: reqwest::Body) -> Try {
        let url = format!("{}{}", host.trim_end_matches('/'), call.path_and_query);
        let req = self
            .http
            .request(call.method.clone(), url)
            .headers(call.headers.clone())
            .body(body);
        let sent_at = Instant::now();
        let reply = match tokio::time::timeout(self.timeout, req.send()).await {
            Err(_) => Reply::NoAnswer(format!(
                "none within {}",
                humantime::format_duration(self.timeout)
            )),
            Ok(Err(e)) if e.is_connect() => Reply::NotSent(describe(&e)),
            Ok(Err(e)) => Reply::NoAnswer(describe(&e)),
            Ok(Ok(resp)) => match peek(resp).await {
                Ok(a) => Reply::Answer(Box::new(a)),
                Err(e) => Reply::NoAnswer(describe(&e)),
            },
        };
        Try { reply, sent_at }
    }
}

/// Reads the answer's first [`PEEK_BYTES`]; whole if it ends there.
async fn peek(mut resp: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let status = resp.status();
    let mut headers = std::mem::take(resp.headers_mut());
    strip_hop_by_hop(&mut headers);
    let mut head = Vec::new();
    let mut size = 0;
    while size <= PEEK_BYTES {
        match resp.chunk().await? {
            Some(c) => {
                size += c.len();
                head.push(c);
            }
            None => {
                let body = if head.len() == 1 {
                    head.pop().expect("one chunk")
                } else {
                    Bytes::from(head.concat())
                };
                return Ok(Answer {
                    status,
                    headers,
                    body: AnswerBody::Whole(body),
                });
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: AnswerBody::Streaming(head, resp),
    })
}

/// What went wrong, in words that never hold the URL (its query may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the connection dropped"
    };
    // The innermost cause (an I/O or protocol error) never holds the URL.
    let mut innermost = None;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    match innermost {
        Some(c) => format!("{what}: {c}"),
        None => what.to_string(),
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): those named in `Connection` and the
/// standard ones; and `Host`, which the client sets for the upstream.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::HOST,
        // The proxy answers `Expect: 100-continue` itself; the upstream client does not
        // speak it.
        header::EXPECT,
    ] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("proxy:9480"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 3, "{left:?}");
        for k in ["content-type", "content-length", "x-request-id"] {
            assert!(h.contains_key(k), "{k} kept");
        }
    }
}
