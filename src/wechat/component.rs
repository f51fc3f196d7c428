//! Third-party platform (component) APIs (WECHAT.md): the component token from the
//! ticket, the authorizer list, an authorization code's refresh token, authorizer
//! tokens, and `component/clear_quota/v2`. Errors never hold a token, ticket or secret.

use std::time::Duration;

use serde_json::{json, Value};

use super::client::{AccessToken, WechatClient};
use super::WechatError;
use crate::config::Secret;

/// One page of `api_get_authorizer_list`.
#[derive(Debug, Clone)]
pub struct AuthorizerPage {
    pub total_count: u64,
    pub list: Vec<ListedEntry>,
}

/// One authorizer as listed.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    pub appid: String,
    pub refresh_token: Secret,
    pub auth_time: Option<i64>,
}

/// An authorizer token and the refresh token to use next (WeChat may rotate it).
#[derive(Debug, Clone)]
pub struct AuthorizerToken {
    pub token: AccessToken,
    pub refresh_token: Secret,
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, WechatError> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WechatError::Unreadable(format!("no {name} in the answer")))
}

fn expires(v: &Value) -> Result<Duration, WechatError> {
    v.get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .ok_or_else(|| WechatError::Unreadable("no expires_in in the answer".into()))
}

impl WechatClient {
    /// `POST /cgi-bin/component/api_component_token`.
    pub async fn api_component_token(
        &self,
        component_appid: &str,
        secret: &Secret,
        ticket: &Secret,
    ) -> Result<AccessToken, WechatError> {
        let body = json!({
            "component_appid": component_appid,
            "component_appsecret": secret.expose(),
            "component_verify_ticket": ticket.expose(),
        });
        let v = self
            .post(
                "/cgi-bin/component/api_component_token",
                &[],
                Some(&body),
                &[secret.expose(), ticket.expose()],
            )
            .await?;
        Ok(AccessToken {
            token: Secret::new(field(&v, "component_access_token")?),
            expires_in: expires(&v)?,
        })
    }

    /// `POST /cgi-bin/component/api_get_authorizer_list` (at most 500 a page).
    pub async fn api_get_authorizer_list(
        &self,
        component_token: &Secret,
        component_appid: &str,
        offset: u64,
        count: u64,
    ) -> Result<AuthorizerPage, WechatError> {
        let body = json!({"component_appid": component_appid, "offset": offset, "count": count});
        let v = self
            .post(
                "/cgi-bin/component/api_get_authorizer_list",
                &[("component_access_token", component_token.expose())],
                Some(&body),
                &[component_token.expose()],
            )
            .await?;
        let total_count = v
            .get("total_count")
            .and_then(Value::as_u64)
            .ok_or_else(|| WechatError::Unreadable("no total_count in the answer".into()))?;
        let items = v
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut list = Vec::with_capacity(items.len());
        for item in &items {
            list.push(ListedEntry {
                appid: field(item, "authorizer_appid")?.to_string(),
                refresh_token: Secret::new(field(item, "refresh_token")?),
                auth_time: item.get("auth_time").and_then(Value::as_i64),
            });
        }
        Ok(AuthorizerPage { total_count, list })
    }

    /// `POST /cgi-bin/component/api_query_auth`: an authorization code's authorizer and
    /// refresh token.
    pub async fn api_query_auth(
        &self,
        component_token: &Secret,
        component_appid: &str,
        code: &Secret,
    ) -> Result<(String, Secret), WechatError> {
        let body = json!({"component_appid": component_appid, "authorization_code": code.expose()});
        let v = self
            .post(
                "/cgi-bin/component/api_query_auth",
                &[("component_access_token", component_token.expose())],
                Some(&body),
                &[component_token.expose(), code.expose()],
            )
            .await?;
        let info = v
            .get("authorization_info")
            .ok_or_else(|| WechatError::Unreadable("no authorization_info in the answer".into()))?;
        Ok((
            field(info, "authorizer_appid")?.to_string(),
            Secret::new(field(info, "authorizer_refresh_token")?),
        ))
    }

    /// `POST /cgi-bin/component/api_authorizer_token`: an authorizer token from its
    /// refresh token (61023 once the authorization is revoked).
    pub async fn api_authorizer_token(
        &self,
        component_token: &Secret,
        component_appid: &str,
        authorizer_appid: &str,
        refresh_token: &Secret,
    ) -> Result<AuthorizerToken, WechatError> {
        let body = json!({
            "component_appid": component_appid,
            "authorizer_appid": authorizer_appid,
            "authorizer_refresh_token": refresh_token.expose(),
        });
        let v = self
            .post(
                "/cgi-bin/component/api_authorizer_token",
                &[("component_access_token", component_token.expose())],
                Some(&body),
                &[component_token.expose(), refresh_token.expose()],
            )
            .await?;
        let next = v
            .get("authorizer_refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .unwrap_or_else(|| refresh_token.clone());
        Ok(AuthorizerToken {
            token: AccessToken {
                token: Secret::new(field(&v, "authorizer_access_token")?),
                expires_in: expires(&v)?,
            },
            refresh_token: next,
        })
    }

    /// `POST /cgi-bin/component/clear_quota/v2`: clears `appid` (an authorizer) or,
    /// with `None`, the platform itself, with the component secret. The fields go in
    /// both the query and the JSON body (WECHAT.md: the docs disagree).
    pub async fn component_clear_quota_v2(
        &self,
        component_appid: &str,
        secret: &Secret,
        appid: Option<&str>,
    ) -> Result<(), WechatError> {
        let mut query = vec![
            ("component_appid", component_appid),
            ("appsecret", secret.expose()),
        ];
        let mut body = json!({"component_appid": component_appid, "appsecret": secret.expose()});
        if let Some(a) = appid {
            query.push(("appid", a));
            body["appid"] = json!(a);
        }
        let v = self
            .post(
                "/cgi-bin/component/clear_quota/v2",
                &query,
                Some(&body),
                &[secret.expose()],
            )
            .await?;
        match v.get("errcode") {
            Some(_) => Ok(()),
            None => Err(WechatError::Unreadable("no errcode in the answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitTable, PresetName};
    use crate::sim::Simulator;
    use crate::time::{parse, Clock};

    const COMPONENT: &str = "wx7c8d9e0f1a2b3c4d";
    const SECRET: &str = "TOPSECRETcomponent";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[tokio::test]
    async fn component_clear_v2_spends_the_right_budget_and_refuses_strangers() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let sim = Simulator::new(Clock::manual(parse("2026-11-22T10:00:00+08:00").unwrap()));
            sim.add_platform(COMPONENT, SECRET, "token", KEY);
            let auths =
                sim.add_authorizers(COMPONENT, 2, LimitTable::from_preset(PresetName::None));
            sim.add_account(
                "wx0000000000000001",
                "other",
                LimitTable::from_preset(PresetName::None),
            );
            let (addr, _task) = sim.clone().start().await.unwrap();
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(5));
            let secret = Secret::new(SECRET);

            // An authorizer, on its behalf: its own budget.
            client
                .component_clear_quota_v2(COMPONENT, &secret, Some(&auths[0]))
                .await
                .unwrap();
            assert_eq!(sim.clears_charged(&auths[0]), 1);
            assert_eq!(sim.clears_charged(COMPONENT), 0);
            // The platform itself.
            client
                .component_clear_quota_v2(COMPONENT, &secret, None)
                .await
                .unwrap();
            assert_eq!(sim.clears_charged(COMPONENT), 1);
            // Not an authorizer of this platform; a wrong secret; a revoked authorizer.
            let e = client
                .component_clear_quota_v2(COMPONENT, &secret, Some("wx0000000000000001"))
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(61003));
            let e = client
                .component_clear_quota_v2(COMPONENT, &Secret::new("wrong"), Some(&auths[1]))
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(40125));
            assert!(!format!("{e} {e:?}").contains("TOPSECRET"));
            sim.revoke_authorizer(COMPONENT, &auths[1]);
            let e = client
                .component_clear_quota_v2(COMPONENT, &secret, Some(&auths[1]))
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(61003));
            // The budget is the authorizer's 10, then 48006.
            for _ in 1..10 {
                client
                    .component_clear_quota_v2(COMPONENT, &secret, Some(&auths[0]))
                    .await
                    .unwrap();
            }
            let e = client
                .component_clear_quota_v2(COMPONENT, &secret, Some(&auths[0]))
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(48006));
            assert_eq!(sim.clears_charged(&auths[0]), 10);
        })
        .await
        .expect("within the time limit");
    }

    #[tokio::test]
    async fn component_token_needs_a_pushed_ticket() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let sim = Simulator::new(Clock::manual(parse("2026-11-22T10:00:00+08:00").unwrap()));
            sim.add_platform(COMPONENT, SECRET, "token", KEY);
            let (addr, _task) = sim.clone().start().await.unwrap();
            let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(5));
            let e = client
                .api_component_token(COMPONENT, &Secret::new(SECRET), &Secret::new("made-up"))
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(61006));
            // A ticket "pushed" (nowhere to go, but issued), then the token works and
            // lists authorizers within WeChat's page limit only.
            sim.set_push_url(COMPONENT, "http://127.0.0.1:9/none");
            let _ = sim.push_ticket(COMPONENT).await;
            let ticket = Secret::new(sim.latest_ticket(COMPONENT).unwrap());
            let e = client
                .api_component_token(COMPONENT, &Secret::new("wrong"), &ticket)
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(40125));
            let t = client
                .api_component_token(COMPONENT, &Secret::new(SECRET), &ticket)
                .await
                .unwrap();
            assert_eq!(t.expires_in, Duration::from_secs(7200));
            let e = client
                .api_get_authorizer_list(&t.token, COMPONENT, 0, 501)
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(47001));
            let page = client
                .api_get_authorizer_list(&t.token, COMPONENT, 0, 500)
                .await
                .unwrap();
            assert_eq!((page.total_count, page.list.len()), (0, 0));
            // A ticket older than 12 hours is expired.
            sim.clock().advance(Duration::from_secs(12 * 3600 + 1));
            let e = client
                .api_component_token(COMPONENT, &Secret::new(SECRET), &ticket)
                .await
                .unwrap_err();
            assert_eq!(e.errcode(), Some(61005));
        })
        .await
        .expect("within the time limit");
    }
}
