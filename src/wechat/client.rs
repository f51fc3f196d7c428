//! HTTP calls to WeChat's token, clear and quota APIs. (Being written: see issue 2.)

use std::time::Duration;

use super::WechatError;
use crate::config::Secret;

/// An access token and how long WeChat says it lasts.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_in: Duration,
}

/// getApiQuota's answer for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiQuota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
}

/// Talks to one WeChat base URL. Cheap to clone.
#[derive(Clone)]
pub struct WechatClient {
    base_url: String,
    http: reqwest::Client,
}

impl WechatClient {
    pub fn new(base_url: &str, timeout: Duration) -> WechatClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("HTTP client");
        WechatClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        }
    }

    pub async fn stable_token(
        &self,
        _appid: &str,
        _secret: &Secret,
    ) -> Result<AccessToken, WechatError> {
        let _ = (&self.base_url, &self.http);
        todo!()
    }

    pub async fn clear_quota(&self, _token: &Secret, _appid: &str) -> Result<(), WechatError> {
        todo!()
    }

    pub async fn clear_quota_v2(&self, _appid: &str, _secret: &Secret) -> Result<(), WechatError> {
        todo!()
    }

    pub async fn get_api_quota(
        &self,
        _token: &Secret,
        _cgi_path: &str,
    ) -> Result<ApiQuota, WechatError> {
        todo!()
    }
}
