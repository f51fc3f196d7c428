//! The WeChat client: one small client per WeChat API the daemon uses (stable token,
//! clear_quota, clear_quota/v2, getApiQuota), the token cache, and errcode
//! classification. Knows nothing of policy or storage.

mod client;
mod component;
mod error;
mod token;

pub use client::{AccessToken, ApiQuota, Observer, WechatClient};
pub use component::{AuthorizerPage, AuthorizerToken, ListedEntry};
pub use error::{Action, WechatError};
pub use token::{IssuedToken, TokenCache};
