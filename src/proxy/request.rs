//! One proxied request's life, as small phases: access check → attribution → token
//! handling → forward → count → decide and retry.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tracing::{debug, info, warn};

use super::attribution::{self, Account};
use super::reply::{self, ProxyBody};
use super::upstream::{Outgoing, RequestBody, Try};
use super::verdict::{self, Count, Resend};
use super::Proxy;
use crate::config::Secret;
use crate::engine::{Report, Reported, Target};

/// A call on its way to WeChat.
struct Call {
    account: Option<Account>,
    /// The interface, normalised (`None` for a path that is not one).
    api: Option<String>,
    /// The path WeChat sees (prefix removed) and the query (token added or replaced).
    path: String,
    query: String,
    /// The access token, when the proxy handed it out or added it.
    token_ours: Option<Secret>,
    out: Outgoing,
}

impl Call {
    fn set_token(&mut self, token: &Secret) {
        self.query = attribution::with_token(&self.query, token.expose());
        self.token_ours = Some(token.clone());
        self.out.path_and_query = path_and_query(&self.path, &self.query);
    }

    fn account_name(&self) -> &str {
        self.account.as_ref().map_or("-", |a| a.name.as_str())
    }
}

fn path_and_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// Serves one request from a client at `peer`.
pub(super) async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if let Some(refused) = check_access(&proxy, peer) {
        return refused;
    }
    let (parts, body) = req.into_parts();
    let config = proxy.engine.config();
    let (prefix, path) = match attribution::split_prefix(parts.uri.path()) {
        Some((name, rest)) => match attribution::by_name(&config, name) {
            Some(account) => (Some(account), rest.to_string()),
            None => return unknown_prefix(name),
        },
        None => (None, parts.uri.path().to_string()),
    };
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut headers = parts.headers;
    let body = match RequestBody::read(
        body,
        &headers,
        proxy.settings.max_retry_body,
        proxy.settings.timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(why) => {
            return reply::wechat_error(StatusCode::BAD_REQUEST, &format!("wxquotad: {why}"))
        }
    };
    if let Some(answer) = super::tokens::serve(
        &proxy.engine,
        &proxy.handed_out,
        &parts.method,
        &path,
        &query,
        body.kept(),
        prefix.as_ref(),
    )
    .await
    {
        return answer;
    }
    super::upstream::strip_hop_by_hop(&mut headers);
    if body.kept().is_some() {
        // The kept body's own length is sent.
        headers.remove(hyper::header::CONTENT_LENGTH);
    }
    let mut call = Call {
        account: None,
        api: crate::apipath::normalize(&path).ok(),
        out: Outgoing {
            method: parts.method,
            path_and_query: path_and_query(&path, &query),
            headers,
            body,
        },
        path,
        query,
        token_ours: None,
    };
    attribute(&proxy, &mut call, prefix).await;
    exchange(&proxy, call).await
}

/// Phase 1: clients outside `[proxy] allow` get 403.
fn check_access(proxy: &Proxy, peer: SocketAddr) -> Option<Response<ProxyBody>> {
    if proxy.settings.allows(peer.ip()) {
        return None;
    }
    warn!(event = "proxy_refused", client = %peer.ip(), "client not in [proxy] allow");
    Some(reply::wechat_error(
        StatusCode::FORBIDDEN,
        &format!(
            "wxquotad: {} is not allowed to use this proxy ([proxy] allow)",
            peer.ip()
        ),
    ))
}

fn unknown_prefix(name: &str) -> Response<ProxyBody> {
    let shown: String = name.chars().take(64).collect();
    reply::wechat_error(
        StatusCode::NOT_FOUND,
        &format!("wxquotad: no account named {shown:?} (from the /a/{{account}}/ prefix); nothing was sent"),
    )
}

/// Phases 2 and 3: the account (prefix, a token handed out, a configured appid), and
/// under a prefix the account's token when the call carries none.
async fn attribute(proxy: &Proxy, call: &mut Call, prefix: Option<Account>) {
    let config = proxy.engine.config();
    let token = attribution::param(&call.query, "access_token").filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if let Some(appid) = proxy.handed_out.appid_of(t) {
            call.token_ours = Some(Secret::new(t.clone()));
            if prefix.is_none() {
                call.account = attribution::by_appid(&config, &appid);
            }
        }
    }
    if let Some(account) = prefix {
        if token.is_none() {
            match proxy.engine.proxy_token(&account.appid, false).await {
                Some(Ok(t)) => {
                    proxy.handed_out.note(&t.token, &account.appid);
                    call.set_token(&t.token);
                }
                Some(Err(e)) => {
                    warn!(account = %account.name, error = %e, "no token to add; forwarding without one")
                }
                None => {}
            }
        }
        call.account = Some(account);
    }
    if call.account.is_none() {
        call.account = attribution::named_appid(&call.query, call.out.body.kept().map(|b| &b[..]))
            .and_then(|appid| attribution::by_appid(&config, &appid));
    }
}

/// Phases 4 to 6: forward, count, and send again only when the "never twice" rule
/// allows it.
async fn exchange(proxy: &Proxy, mut call: Call) -> Response<ProxyBody> {
    let first = proxy.upstream.forward(&proxy.hosts(), &mut call.out).await;
    let tried = first.tried();
    match verdict::resend(tried, call.token_ours.is_some()) {
        Resend::AfterClear => after_45009(proxy, call, first).await,
        Resend::WithNewToken => {
            count(proxy, &call, &first);
            with_new_token(proxy, call, first).await
        }
        Resend::Never | Resend::NextHost => {
            count(proxy, &call, &first);
            first.into_response()
        }
    }
}

/// Phase 5: what the try adds to the account's usage, through the engine's one path.
fn count(proxy: &Proxy, call: &Call, t: &Try) {
    let what = verdict::count(t.tried());
    proxy.metrics_outcome(call.account_name(), t);
    let (Some(account), Some(api)) = (&call.account, &call.api) else {
        if what != Count::Nothing {
            debug!(path = %call.path, "unattributed call forwarded");
        }
        return;
    };
    let result = match what {
        Count::Nothing => return,
        Count::One => proxy.engine.report(&[Report {
            target: Target::Appid(account.appid.clone()),
            api: api.clone(),
            what: Reported::Calls(1),
        }]),
        Count::Blocked => proxy.engine.report_blocked(&account.appid, api).map(|_| 1),
    };
    if let Err(e) = result {
        warn!(account = %account.name, error = %e, "proxied call not counted");
    }
}

/// Phase 6 for a 45009: the engine decides at once; if a clear is coming, the answer
/// waits for it (at most `hold`) and the call is sent once more when it worked.
async fn after_45009(proxy: &Proxy, call: Call, first: Try) -> Response<ProxyBody> {
    let (Some(account), Some(api)) = (call.account.clone(), call.api.clone()) else {
        count(proxy, &call, &first);
        return first.into_response();
    };
    if call.out.body.kept().is_none() {
        count(proxy, &call, &first);
        return first.into_response();
    }
    if proxy
        .engine
        .last_cleared_at(&account.appid)
        .is_some_and(|cleared| cleared > first.sent_at)
    {
        info!(event = "proxy_resend", account = %account.name, api = %api, reason = "45009 for a call sent before the latest clear ended", "sending the call once more");
        return send_again(proxy, call).await;
    }
    let wait = match proxy.engine.report_blocked(&account.appid, &api) {
        Ok(Some(wait)) => wait,
        Ok(None) => return first.into_response(),
        Err(e) => {
            warn!(account = %account.name, error = %e, "45009 not reported");
            return first.into_response();
        }
    };
    proxy.metrics_outcome(&account.name, &first);
    match tokio::time::timeout(proxy.settings.hold, wait.cleared()).await {
        Ok(true) => {
            info!(event = "proxy_resend", account = %account.name, api = %api, reason = "45009, then a clear that worked", "sending the call once more");
            send_again(proxy, call).await
        }
        Ok(false) => first.into_response(),
        Err(_) => {
            info!(account = %account.name, api = %api, hold_ms = proxy.settings.hold.as_millis() as u64, "the clear did not end within [proxy] hold; passing the 45009 back");
            first.into_response()
        }
    }
}

/// Phase 6 for a token the proxy handed out that WeChat refused: a new token, once.
async fn with_new_token(proxy: &Proxy, mut call: Call, first: Try) -> Response<ProxyBody> {
    let (Some(account), Some(bad)) = (call.account.clone(), call.token_ours.clone()) else {
        return first.into_response();
    };
    if call.out.body.kept().is_none() {
        return first.into_response();
    }
    match proxy.engine.renew_token(&account.appid, &bad).await {
        Some(token) => {
            proxy.handed_out.note(&token, &account.appid);
            call.set_token(&token);
            info!(event = "proxy_resend", account = %account.name, reason = "WeChat refused a token the proxy handed out", "sending the call once more with a new token");
            send_again(proxy, call).await
        }
        None => first.into_response(),
    }
}

/// The one re-send a call may get; its answer goes back whatever it is.
async fn send_again(proxy: &Proxy, mut call: Call) -> Response<ProxyBody> {
    let again = proxy.upstream.forward(&proxy.hosts(), &mut call.out).await;
    count(proxy, &call, &again);
    again.into_response()
}
