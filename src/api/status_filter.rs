//! `GET /v1/status` filters (SPEC §8 "Status at scale"): `?platform=` (the platform's
//! own account and its authorizers), `?state=` (`ok`, `exhausted`, `error`) and
//! `?account=` (names or appids containing the text, case-insensitive). Filters
//! combine; an unknown key or state is 400, an unknown platform 404.

use axum::http::StatusCode;
use serde::Deserialize;

use super::{bad_request, ApiError};
use crate::config::Config;
use crate::engine::status::AccountStatus;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusFilter {
    pub platform: Option<String>,
    pub state: Option<String>,
    pub account: Option<String>,
}

/// The states an account can be in.
const STATES: [&str; 3] = ["ok", "exhausted", "error"];

impl StatusFilter {
    /// Keeps the accounts that pass every given filter.
    pub fn apply(
        &self,
        config: &Config,
        accounts: &mut Vec<AccountStatus>,
    ) -> Result<(), ApiError> {
        if let Some(s) = &self.state {
            if !STATES.contains(&s.as_str()) {
                return Err(bad_request(format!(
                    "state must be one of \"ok\", \"exhausted\", \"error\"; got {s:?}"
                )));
            }
            accounts.retain(|a| &a.state == s);
        }
        if let Some(text) = &self.account {
            let text = text.to_lowercase();
            accounts.retain(|a| {
                a.name.to_lowercase().contains(&text) || a.appid.to_lowercase().contains(&text)
            });
        }
        if let Some(name) = &self.platform {
            let p = config
                .platforms
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| {
                    ApiError(StatusCode::NOT_FOUND, format!("no platform named {name:?}"))
                })?;
            accounts.retain(|a| {
                a.name == p.name
                    || a.appid == p.component_appid
                    || p.configured(&a.appid).is_some()
                    || crate::config::looks_generated(&a.name, &p.name)
            });
        }
        Ok(())
    }
}
