//! `[wechat]`: WeChat's base URL and request timeout.

use super::*;

const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Validator<'_> {
    pub(super) fn wechat(&mut self, w: super::file::WechatFile) -> WechatSettings {
        let k = KeyPath::root().key("wechat");
        let base_url = match w.base_url {
            None => DEFAULT_BASE_URL.to_string(),
            Some(u) => self.wechat_url(&u, "base_url", &k.key("base_url")),
        };
        let mut fallback_urls: Vec<String> = Vec::new();
        for (i, u) in w.fallback_urls.unwrap_or_default().iter().enumerate() {
            let key = k.key("fallback_urls").index(i);
            let u = self.wechat_url(u, "each of fallback_urls", &key);
            if u == base_url || fallback_urls.contains(&u) {
                self.error(
                    &key,
                    None,
                    format!("{u} is already base_url or listed before; expected each URL once"),
                );
            } else {
                fallback_urls.push(u);
            }
        }
        let timeout = self.duration(
            w.timeout.as_deref(),
            DEFAULT_TIMEOUT,
            DurationRange::new(Duration::from_millis(100), 10 * MINUTE),
            &k.key("timeout"),
            None,
        );
        WechatSettings {
            base_url,
            fallback_urls,
            timeout,
        }
    }

    /// An http:// or https:// URL of WeChat's API, without its trailing slash.
    fn wechat_url(&mut self, u: &str, what: &str, key: &KeyPath) -> String {
        let trimmed = u.trim().trim_end_matches('/');
        let host = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            self.error(
                key,
                None,
                format!(
                    "{what} must be an http:// or https:// URL like \
                     \"https://api.weixin.qq.com\", got {u:?}"
                ),
            );
        }
        trimmed.to_string()
    }
}
