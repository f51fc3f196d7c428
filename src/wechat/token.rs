//! Per-account stable access token cache. (Being written: see issue 2.)

use super::{WechatClient, WechatError};
use crate::config::Secret;
use crate::time::Timestamp;

/// One account's token, fetched with /cgi-bin/stable_token and reused until shortly
/// before it expires; one refresh at a time.
#[derive(Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<(Secret, Timestamp)>>,
}

impl TokenCache {
    pub async fn get(
        &self,
        _client: &WechatClient,
        _appid: &str,
        _secret: &Secret,
        _now: Timestamp,
    ) -> Result<Secret, WechatError> {
        let _ = &self.slot;
        todo!()
    }

    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}
