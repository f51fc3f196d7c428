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
