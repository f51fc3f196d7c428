//! The config file as written (SPEC §3): serde types where every key with a default is
//! optional and unknown keys are errors. Values stay raw (strings for durations, paths
//! and choices, `i64` for counts) so validation can check them all and say where each is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub daemon: DaemonFile,
    #[serde(default)]
    pub wechat: WechatFile,
    #[serde(default)]
    pub policy: PolicyFile,
    #[serde(default)]
    pub poll: PollFile,
    /// Absent: the proxy is off.
    pub proxy: Option<ProxyFile>,
    #[serde(default)]
    pub alerts: Vec<AlertFile>,
    #[serde(default)]
    pub accounts: Vec<AccountFile>,
    #[serde(default)]
    pub platforms: Vec<PlatformFile>,
}

/// `[daemon]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DaemonFile {
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
    pub dry_run: Option<bool>,
    pub log_format: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub traffic_log: Option<PathBuf>,
    pub traffic_log_max: Option<ByteSize>,
}

/// `[wechat]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WechatFile {
    pub base_url: Option<String>,
    pub fallback_urls: Option<Vec<String>>,
    pub timeout: Option<String>,
}

/// `[proxy]` (SPEC §7).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ProxyFile {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub hold: Option<String>,
    pub timeout: Option<String>,
    pub max_retry_body: Option<ByteSize>,
}

/// A size: a string like "1MiB" or "512KiB", or a whole number of bytes.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ByteSize {
    Text(String),
    Bytes(i64),
}

/// `[policy]`, and `[accounts.policy]` (where every key overrides the global one).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub threshold: Option<f64>,
    pub clear_on_45009: Option<bool>,
    pub reserve: Option<i64>,
    pub monthly_clears: Option<i64>,
    pub api_clears: Option<bool>,
    pub monthly_api_clears: Option<i64>,
    pub api_reserve: Option<i64>,
    pub confirm_45009: Option<bool>,
    pub min_interval: Option<String>,
    pub max_clears_per_day: Option<i64>,
    pub quiet_before_reset: Option<String>,
    pub watch: Option<Vec<String>>,
}

/// `[poll]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PollFile {
    pub interval: Option<String>,
    pub apis: Option<Vec<String>>,
}

/// One `[[alerts]]`. No `Debug`: the URL may carry a key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertFile {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub repeat_after: Option<String>,
}

/// One `[[accounts]]`. No `Debug`: `secret` is the AppSecret itself.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountFile {
    pub name: Option<String>,
    pub appid: Option<String>,
    pub kind: Option<String>,
    pub preset: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub secret: Option<String>,
    pub clear_via: Option<String>,
    /// API path (any form `apipath::normalize` takes) → calls per WeChat day.
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
    #[serde(default)]
    pub policy: PolicyFile,
}

/// One `[[platforms]]` (SPEC §8). No `Debug`: it names secret files and may hold secrets.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PlatformFile {
    pub name: Option<String>,
    pub component_appid: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub message_token_file: Option<PathBuf>,
    pub message_token_env: Option<String>,
    pub aes_key_file: Option<PathBuf>,
    pub aes_key_env: Option<String>,
    pub discover: Option<String>,
    pub preset: Option<String>,
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
    #[serde(default)]
    pub policy: PolicyFile,
    #[serde(default)]
    pub authorizers: Vec<AuthorizerFile>,
}

/// One `[[platforms.authorizers]]`: a name and overrides for one authorized account.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorizerFile {
    pub appid: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
    #[serde(default)]
    pub policy: PolicyFile,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde::de::{self, Deserializer, Visitor};

    /// Records the field names serde would accept for a struct, so tests can check that
    /// `config.example.toml` documents every key these types define.
    struct FieldNames(&'static [&'static str]);

    impl<'de> Deserializer<'de> for &mut FieldNames {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        let mut names = FieldNames(&[]);
        let _ = T::deserialize(&mut names);
        names.0
    }

    /// Every key of every section, as `(section, key)`; the section is how the example
    /// names it (`accounts.policy` keys are the `policy` keys).
    pub(in crate::config) fn all_keys() -> Vec<(&'static str, &'static str)> {
        let mut keys = Vec::new();
        for (section, names) in [
            ("", fields::<FileConfig>()),
            ("daemon", fields::<DaemonFile>()),
            ("wechat", fields::<WechatFile>()),
            ("policy", fields::<PolicyFile>()),
            ("poll", fields::<PollFile>()),
            ("proxy", fields::<ProxyFile>()),
            ("alerts", fields::<AlertFile>()),
            ("accounts", fields::<AccountFile>()),
            ("platforms", fields::<PlatformFile>()),
            ("platforms.authorizers", fields::<AuthorizerFile>()),
        ] {
            for n in names {
                keys.push((section, *n));
            }
        }
        keys
    }

    #[test]
    fn field_names_are_recorded() {
        let keys = all_keys();
        assert!(keys.contains(&("daemon", "listen")));
        assert!(keys.contains(&("accounts", "secret_env")));
        assert!(keys.contains(&("", "accounts")));
        assert!(keys.len() > 30, "{keys:?}");
    }

    #[test]
    fn the_example_documents_every_key() {
        let text = include_str!("../../config.example.toml");
        let documented = |line: &str, key: &str| {
            let l = line.trim_start_matches(['#', ' ']);
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        for (section, key) in all_keys() {
            let found = match (section, key) {
                ("", k) => text.contains(&format!("[{k}]")),
                ("accounts", "limits" | "policy") => text.contains(&format!("[accounts.{key}]")),
                ("platforms", "limits" | "policy") => text.contains(&format!("[platforms.{key}]")),
                ("platforms", "authorizers") => text.contains("[[platforms.authorizers]]"),
                ("platforms.authorizers", "limits" | "policy") => {
                    text.contains(&format!("[platforms.authorizers.{key}]"))
                }
                _ => text.lines().any(|l| documented(l, key)),
            };
            assert!(
                found,
                "config.example.toml does not document {section}.{key}"
            );
        }
    }
}
