//! `[[platforms]]` at run time (SPEC §8): a third-party platform, its push secrets, and
//! the names and overrides configured for some of its authorizers.

use std::time::Duration;

use super::{LimitTable, Policy, PresetName, Secret};

/// One `[[platforms]]` entry.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Unique among accounts and platforms; also the name of the platform's own account.
    pub name: String,
    pub component_appid: String,
    /// The component AppSecret.
    pub secret: Secret,
    /// The token WeChat signs pushes with (`msg_signature`).
    pub message_token: Secret,
    /// The EncodingAESKey (43 characters, checked to decode to 32 bytes).
    pub aes_key: Secret,
    /// `api_get_authorizer_list` every this long; zero = pushes only. Default 1 h.
    pub discover: Duration,
    /// The preset of the platform's own account and its authorizers. Default "none".
    pub preset: PresetName,
    /// The preset with `[platforms.limits]` applied: the default for every authorizer.
    pub limits: LimitTable,
    /// `[policy]` with `[platforms.policy]` applied: the default for every authorizer.
    pub policy: Policy,
    /// `[[platforms.authorizers]]`: names and overrides for some authorizers.
    pub authorizers: Vec<AuthorizerSettings>,
}

/// One `[[platforms.authorizers]]` entry.
#[derive(Debug, Clone)]
pub struct AuthorizerSettings {
    pub appid: String,
    /// The account name; `None` = `{platform}-{appid}`.
    pub name: Option<String>,
    /// The platform's limits with this entry's `limits` applied.
    pub limits: LimitTable,
    /// The platform's policy with this entry's `policy` applied.
    pub policy: Policy,
}

impl Platform {
    /// The account name of an authorizer: configured, else `{platform}-{appid}`.
    pub fn authorizer_name(&self, appid: &str) -> String {
        self.configured(appid)
            .and_then(|a| a.name.clone())
            .unwrap_or_else(|| format!("{}-{appid}", self.name))
    }

    /// The `[[platforms.authorizers]]` entry for `appid`, if any.
    pub fn configured(&self, appid: &str) -> Option<&AuthorizerSettings> {
        self.authorizers.iter().find(|a| a.appid == appid)
    }

    /// Limits and policy for an authorizer: its overrides, else the platform's.
    pub fn settings_for(&self, appid: &str) -> (&LimitTable, &Policy) {
        match self.configured(appid) {
            Some(a) => (&a.limits, &a.policy),
            None => (&self.limits, &self.policy),
        }
    }

    /// The push crypto for this platform.
    pub fn crypt(&self) -> crate::platform::crypto::MsgCrypt {
        crate::platform::crypto::MsgCrypt::new(
            self.message_token.expose(),
            self.aes_key.expose(),
            &self.component_appid,
        )
        .expect("the AES key was checked when the config was loaded")
    }
}

/// Whether `name` has the form of a generated authorizer name of `platform`
/// (`{platform}-{appid}`), which configured names may not take.
pub fn looks_generated(name: &str, platform: &str) -> bool {
    name.strip_prefix(platform)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(super::validate::is_appid)
}
