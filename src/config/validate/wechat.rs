//! `[wechat]`: WeChat's base URL and request timeout.

use super::*;

const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Validator<'_> {
    pub(super) fn wechat(&mut self, w: super::file::WechatFile) -> WechatSettings {
        let k = KeyPath::root().key("wechat");
        let base_url = match w.base_url {
            None => DEFAULT_BASE_URL.to_string(),
            Some(u) => {
                let trimmed = u.trim().trim_end_matches('/');
                let host = trimmed
                    .strip_prefix("https://")
                    .or_else(|| trimmed.strip_prefix("http://"));
                if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                    self.error(
                        &k.key("base_url"),
                        None,
                        format!(
                            "base_url must be an http:// or https:// URL like \
                             \"https://api.weixin.qq.com\", got {u:?}"
                        ),
                    );
                }
                trimmed.to_string()
            }
        };
        let timeout = self.duration(
            w.timeout.as_deref(),
            DEFAULT_TIMEOUT,
            &k.key("timeout"),
            None,
            false,
        );
        WechatSettings { base_url, timeout }
    }
}
