//! Faults the simulator can be told to produce: HTTP errors, errcodes, garbage, delays,
//! and a clear that is charged but never answered. Queued, consumed in order.

use std::time::Duration;

/// A WeChat endpoint, as faults and the control API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/cgi-bin/stable_token`
    StableToken,
    /// `/cgi-bin/token`
    Token,
    /// `/cgi-bin/clear_quota`
    ClearQuota,
    /// `/cgi-bin/clear_quota/v2`
    ClearQuotaV2,
    /// `/cgi-bin/openapi/quota/get`
    GetApiQuota,
    /// `/cgi-bin/openapi/quota/clear` (clearApiQuota)
    ClearApiQuota,
    /// Any `/cgi-bin/...` request, including other APIs.
    Any,
    /// Any other API: not the token, clear or quota ones above (what the proxy forwards).
    Api,
}

impl Endpoint {
    /// The endpoint a request path is, or `None` for any other `/cgi-bin/...` API.
    pub fn of(path: &str) -> Option<Endpoint> {
        match path {
            "/cgi-bin/stable_token" => Some(Endpoint::StableToken),
            "/cgi-bin/token" => Some(Endpoint::Token),
            "/cgi-bin/clear_quota" => Some(Endpoint::ClearQuota),
            "/cgi-bin/clear_quota/v2" => Some(Endpoint::ClearQuotaV2),
            "/cgi-bin/openapi/quota/get" => Some(Endpoint::GetApiQuota),
            "/cgi-bin/openapi/quota/clear" => Some(Endpoint::ClearApiQuota),
            _ => None,
        }
    }

    /// The control API's name: `stable_token`, `token`, `clear_quota`,
    /// `clear_quota_v2`, `quota_get`, `quota_clear` or `any`.
    pub fn parse(name: &str) -> Option<Endpoint> {
        match name {
            "stable_token" => Some(Endpoint::StableToken),
            "token" => Some(Endpoint::Token),
            "clear_quota" => Some(Endpoint::ClearQuota),
            "clear_quota_v2" => Some(Endpoint::ClearQuotaV2),
            "quota_get" => Some(Endpoint::GetApiQuota),
            "quota_clear" => Some(Endpoint::ClearApiQuota),
            "any" => Some(Endpoint::Any),
            "api" => Some(Endpoint::Api),
            _ => None,
        }
    }

    /// Whether a fault aimed at `self` applies to a request to `actual`.
    pub fn matches(self, actual: Option<Endpoint>) -> bool {
        match self {
            Endpoint::Any => true,
            Endpoint::Api => actual.is_none(),
            _ => Some(self) == actual,
        }
    }
}

/// What a fault does to the request it catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this HTTP status (e.g. 500, 502) with a plain-text body; the request is
    /// not applied.
    Http(u16),
    /// Answer `{"errcode": n, "errmsg": "simulated fault"}` (e.g. -1, 45009); not applied.
    Errcode(i64),
    /// Answer 200 with a body that is not JSON; not applied.
    Garbage,
    /// Wait this long, then handle the request normally. The request is applied after
    /// the wait even if the client has given up by then.
    Delay(Duration),
    /// Apply the request (e.g. charge the clear), then never answer: the connection is
    /// held open for an hour (or until the simulator shuts down), so the client times out.
    ChargeThenDrop,
    /// Apply the request, send the status and headers, then cut the connection before
    /// the body: the client sees the connection drop mid-answer.
    ChargeThenReset,
}

/// One queued fault: the next `times` matching requests get `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub endpoint: Endpoint,
    pub kind: FaultKind,
    /// How many matching requests it catches; 0 catches none.
    pub times: u32,
}

/// Consumes one use of the first queued fault that matches a request to `actual`
/// (`None`: another `/cgi-bin/...` API), dropping faults that are used up.
pub fn take(queue: &mut Vec<Fault>, actual: Option<Endpoint>) -> Option<FaultKind> {
    queue.retain(|f| f.times > 0);
    let i = queue.iter().position(|f| f.endpoint.matches(actual))?;
    let kind = queue[i].kind;
    queue[i].times -= 1;
    if queue[i].times == 0 {
        queue.remove(i);
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_in_order_by_matching_requests() {
        let mut q = vec![
            Fault {
                endpoint: Endpoint::ClearQuota,
                kind: FaultKind::Http(502),
                times: 2,
            },
            Fault {
                endpoint: Endpoint::Any,
                kind: FaultKind::Errcode(-1),
                times: 1,
            },
        ];
        assert_eq!(
            take(&mut q, Some(Endpoint::StableToken)),
            Some(FaultKind::Errcode(-1))
        );
        assert_eq!(take(&mut q, Some(Endpoint::StableToken)), None);
        assert_eq!(take(&mut q, None), None);
        assert_eq!(
            take(&mut q, Some(Endpoint::ClearQuota)),
            Some(FaultKind::Http(502))
        );
        assert_eq!(
            take(&mut q, Some(Endpoint::ClearQuota)),
            Some(FaultKind::Http(502))
        );
        assert_eq!(take(&mut q, Some(Endpoint::ClearQuota)), None);
        assert!(q.is_empty());
    }

    #[test]
    fn paths_and_names_map_to_endpoints() {
        assert_eq!(
            Endpoint::of("/cgi-bin/clear_quota/v2"),
            Some(Endpoint::ClearQuotaV2)
        );
        assert_eq!(Endpoint::of("/cgi-bin/user/get"), None);
        assert_eq!(Endpoint::parse("quota_get"), Some(Endpoint::GetApiQuota));
        assert!(Endpoint::Any.matches(None));
        assert!(!Endpoint::Token.matches(Some(Endpoint::StableToken)));
        assert!(Endpoint::Api.matches(None));
        assert!(!Endpoint::Api.matches(Some(Endpoint::StableToken)));
    }
}
