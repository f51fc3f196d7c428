//! `[[platforms]]` (SPEC §8): names unique among accounts and platforms, the component
//! appid, the component secret, the push's message token and EncodingAESKey, `discover`,
//! and `[[platforms.authorizers]]` names and overrides.

use std::collections::BTreeMap;

use super::super::file::PlatformFile;
use super::super::platforms::{looks_generated, AuthorizerSettings, Platform};
use super::*;

/// `discover`: a minute to a week, or "0s" (pushes only). Default 1 h.
const DISCOVER: DurationRange = DurationRange::off_or(MINUTE, Duration::from_secs(7 * 86_400));

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where one secret of a platform may come from: a file or an environment variable.
struct Source<'s> {
    what: &'s str,
    file_key: &'s str,
    file: Option<&'s PathBuf>,
    env_key: &'s str,
    env: Option<&'s String>,
    /// Used instead under `--simulate` when the source cannot be read.
    made_up: String,
}

impl Validator<'_> {
    pub(super) fn platforms(
        &mut self,
        list: Vec<PlatformFile>,
        policy: &Policy,
        accounts: &[Account],
    ) -> Vec<Platform> {
        let mut out: Vec<Platform> = Vec::new();
        for (i, p) in list.into_iter().enumerate() {
            let k = KeyPath::root().key("platforms").index(i);
            if let Some(platform) = self.platform(p, &k, policy, accounts, &out) {
                out.push(platform);
            }
        }
        // No configured name may look like a generated authorizer name of any platform.
        let configured: Vec<(String, KeyPath)> = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let k = KeyPath::root().key("accounts").index(i).key("name");
                (a.name.clone(), k)
            })
            .chain(out.iter().enumerate().flat_map(|(i, p)| {
                let k = KeyPath::root().key("platforms").index(i);
                let own = (p.name.clone(), k.key("name"));
                let auths = p.authorizers.iter().enumerate().filter_map(move |(j, a)| {
                    let key = k.key("authorizers").index(j).key("name");
                    a.name.clone().map(|n| (n, key))
                });
                std::iter::once(own).chain(auths)
            }))
            .collect();
        for (name, key) in configured {
            if let Some(p) = out.iter().find(|p| looks_generated(&name, &p.name)) {
                self.error(
                    &key,
                    Some(&name),
                    format!(
                        "name {name:?} has the form of a generated authorizer name of platform \
                         {:?} (\"{{platform}}-{{appid}}\"); choose another name",
                        p.name
                    ),
                );
            }
        }
        out
    }

    fn platform(
        &mut self,
        p: PlatformFile,
        k: &KeyPath,
        global: &Policy,
        accounts: &[Account],
        earlier: &[Platform],
    ) -> Option<Platform> {
        let name = p.name.clone().unwrap_or_default();
        let acct = (!name.is_empty()).then_some(name.as_str());
        match &p.name {
            None => self.error(
                &k.key("name"),
                None,
                "name is missing; expected a name unique among accounts and platforms".into(),
            ),
            Some(n) if !valid_name(n) => self.error(
                &k.key("name"),
                acct,
                format!("name must be 1 to 64 letters, digits, '-' and '_', got {n:?}"),
            ),
            Some(n) => {
                if accounts.iter().any(|a| &a.name == n) || earlier.iter().any(|e| &e.name == n) {
                    self.error(
                        &k.key("name"),
                        acct,
                        format!(
                            "name {n:?} is already used by an account or platform; expected a \
                             name unique among accounts and platforms"
                        ),
                    );
                }
            }
        }
        let appid = p.component_appid.clone().unwrap_or_default();
        if p.component_appid.is_none() {
            self.error(
                &k.key("component_appid"),
                acct,
                "component_appid is missing; expected the platform's appid (\"wx\" followed by \
                 16 lowercase hex digits)"
                    .into(),
            );
        } else if !is_appid(&appid) {
            self.error(
                &k.key("component_appid"),
                acct,
                format!(
                    "component_appid must be \"wx\" followed by 16 lowercase hex digits; got {appid:?}"
                ),
            );
        } else if accounts.iter().any(|a| a.appid == appid)
            || earlier.iter().any(|e| {
                e.component_appid == appid || e.authorizers.iter().any(|x| x.appid == appid)
            })
        {
            self.error(
                &k.key("component_appid"),
                acct,
                format!(
                    "appid {appid} is already used by an account or platform; expected each once"
                ),
            );
        }

        let secret = self.source(
            k,
            acct,
            Source {
                what: "the component AppSecret",
                file_key: "secret_file",
                file: p.secret_file.as_ref(),
                env_key: "secret_env",
                env: p.secret_env.as_ref(),
                made_up: format!("sim-component-secret-{name}"),
            },
        );
        let message_token = self.source(
            k,
            acct,
            Source {
                what: "the push's message token",
                file_key: "message_token_file",
                file: p.message_token_file.as_ref(),
                env_key: "message_token_env",
                env: p.message_token_env.as_ref(),
                made_up: format!("sim-token-{name}"),
            },
        );
        let aes_key = self.source(
            k,
            acct,
            Source {
                what: "the EncodingAESKey",
                file_key: "aes_key_file",
                file: p.aes_key_file.as_ref(),
                env_key: "aes_key_env",
                env: p.aes_key_env.as_ref(),
                made_up: simulated_aes_key(&name),
            },
        );
        let aes_key = aes_key.and_then(|key| {
            if crate::platform::crypto::decode_aes_key(key.expose()).is_ok() {
                Some(key)
            } else {
                let at = if p.aes_key_file.is_some() {
                    "aes_key_file"
                } else {
                    "aes_key_env"
                };
                self.error(
                    &k.key(at),
                    acct,
                    format!(
                        "the EncodingAESKey must be {} base64 characters (letters and digits, as \
                         the platform's settings page shows it); got {} characters",
                        crate::platform::crypto::AES_KEY_CHARS,
                        key.expose().chars().count()
                    ),
                );
                None
            }
        });
        let discover = self.duration(
            p.discover.as_deref(),
            HOUR,
            DISCOVER,
            &k.key("discover"),
            acct,
        );
        let preset = self.choice(
            p.preset.as_deref(),
            PresetName::None,
            &[
                ("normal", PresetName::Normal),
                ("test", PresetName::Test),
                ("none", PresetName::None),
            ],
            &k.key("preset"),
            acct,
        );
        let mut limits = LimitTable::from_preset(preset);
        self.platform_limits(&mut limits, &p.limits, &k.key("limits"), acct);
        let policy = self.policy(global, &p.policy, &k.key("policy"), acct);

        let mut authorizers: Vec<AuthorizerSettings> = Vec::new();
        for (j, a) in p.authorizers.into_iter().enumerate() {
            let ak = k.key("authorizers").index(j);
            let Some(id) = a.appid.clone() else {
                self.error(
                    &ak.key("appid"),
                    acct,
                    "appid is missing; expected the authorizer's appid".into(),
                );
                continue;
            };
            if !is_appid(&id) {
                self.error(
                    &ak.key("appid"),
                    acct,
                    format!("appid must be \"wx\" followed by 16 lowercase hex digits; got {id:?}"),
                );
                continue;
            }
            let taken = id == appid
                || authorizers.iter().any(|x| x.appid == id)
                || accounts.iter().any(|x| x.appid == id)
                || earlier.iter().any(|e| {
                    e.component_appid == id || e.authorizers.iter().any(|x| x.appid == id)
                });
            if taken {
                self.error(
                    &ak.key("appid"),
                    acct,
                    format!("appid {id} is already used by an account, platform or authorizer; expected each once"),
                );
                continue;
            }
            if let Some(n) = &a.name {
                let used = !valid_name(n)
                    || *n == name
                    || accounts.iter().any(|x| &x.name == n)
                    || authorizers.iter().any(|x| x.name.as_ref() == Some(n))
                    || earlier.iter().any(|e| {
                        &e.name == n || e.authorizers.iter().any(|x| x.name.as_ref() == Some(n))
                    });
                if used {
                    self.error(
                        &ak.key("name"),
                        acct,
                        format!(
                            "name {n:?} must be 1 to 64 letters, digits, '-' and '_', unique among \
                             accounts, platforms and authorizers"
                        ),
                    );
                    continue;
                }
            }
            let mut a_limits = limits.clone();
            self.platform_limits(&mut a_limits, &a.limits, &ak.key("limits"), acct);
            let a_policy = self.policy(&policy, &a.policy, &ak.key("policy"), acct);
            authorizers.push(AuthorizerSettings {
                appid: id,
                name: a.name,
                limits: a_limits,
                policy: a_policy,
            });
        }
        Some(Platform {
            name,
            component_appid: appid,
            secret: secret?,
            message_token: message_token?,
            aes_key: aes_key?,
            discover,
            preset,
            limits,
            policy,
            authorizers,
        })
    }

    /// Applies a `limits` table (API path → calls a day) to `table`.
    fn platform_limits(
        &mut self,
        table: &mut LimitTable,
        raw: &BTreeMap<String, i64>,
        key: &KeyPath,
        acct: Option<&str>,
    ) {
        for (path, &n) in raw {
            let k = key.key(path);
            let Some(p) = self.api_path(path, &k, acct) else {
                continue;
            };
            if n < 1 {
                self.error(
                    &k,
                    acct,
                    format!("a daily limit must be at least 1 call, got {n}"),
                );
                continue;
            }
            table.set(&p, n as u64, LimitSource::Config);
        }
    }

    /// A secret from exactly one of a file and an environment variable.
    fn source(&mut self, k: &KeyPath, acct: Option<&str>, s: Source<'_>) -> Option<Secret> {
        let simulated = |v: &mut Self, key: &KeyPath, why: String, made_up: String| {
            if v.opts.simulate {
                v.warn(
                    key,
                    acct,
                    format!("{why}; using a made-up value because of --simulate"),
                );
                Some(Secret::new(made_up))
            } else {
                v.error(key, acct, why);
                None
            }
        };
        match (s.file, s.env) {
            (None, None) => {
                let why = format!(
                    "{} is missing; expected exactly one of {} or {}",
                    s.what, s.file_key, s.env_key
                );
                simulated(self, &k.key(s.file_key), why, s.made_up)
            }
            (Some(_), Some(_)) => {
                self.error(
                    &k.key(s.env_key),
                    acct,
                    format!(
                        "{} and {} are both set; expected exactly one",
                        s.file_key, s.env_key
                    ),
                );
                None
            }
            (Some(f), None) => {
                let key = k.key(s.file_key);
                let path = self.resolve(f);
                match read_secret_file(&path) {
                    Ok(v) => {
                        self.check_private(&path, &key, acct, "secret file");
                        Some(Secret::new(v))
                    }
                    Err(e) => simulated(
                        self,
                        &key,
                        format!("{e}; expected a readable file holding {}", s.what),
                        s.made_up,
                    ),
                }
            }
            (None, Some(var)) => {
                let key = k.key(s.env_key);
                match std::env::var(var) {
                    Ok(v) if !v.trim_end().is_empty() => Some(Secret::new(v.trim_end())),
                    _ => simulated(
                        self,
                        &key,
                        format!(
                            "environment variable {var} is not set or empty; expected it to hold {}",
                            s.what
                        ),
                        s.made_up,
                    ),
                }
            }
        }
    }
}

/// A made-up EncodingAESKey for `--simulate`: 43 letters and digits derived from the
/// platform's name, so the daemon and its simulator agree without any file.
pub(crate) fn simulated_aes_key(name: &str) -> String {
    let seed: String = format!("SimulatedKey{name}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    seed.chars()
        .chain("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ".chars())
        .take(crate::platform::crypto::AES_KEY_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    /// Loads `text` with the platform's secret files present (mode 0600) in its directory.
    fn load_text(text: &str) -> Result<(Config, Vec<Warning>), ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            ("acme.secret", "COMPONENTSECRET"),
            ("acme.token", "TOKENVALUE"),
            ("acme.aeskey", KEY),
            ("bad.aeskey", "tooshort"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        load(&path, LoadOptions::default())
    }

    const PLATFORM: &str = "[[platforms]]\nname = \"acme\"\ncomponent_appid = \"wx7c8d9e0f1a2b3c4d\"\n\
        secret_file = \"acme.secret\"\nmessage_token_file = \"acme.token\"\naes_key_file = \"acme.aeskey\"\n";

    fn errors(text: &str) -> Vec<ConfigError> {
        match load_text(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn a_platform_loads_with_defaults_and_overrides() {
        let text = format!(
            "[policy]\nthreshold = 0.8\n{PLATFORM}discover = \"10m\"\n[platforms.limits]\n\"/cgi-bin/user/info\" = 100\n\
             [platforms.policy]\nreserve = 3\n[[platforms.authorizers]]\nappid = \"wx1a2b3c4d5e6f7a8b\"\nname = \"brand-a\"\n\
             [platforms.authorizers.policy]\nthreshold = 0.95\n"
        );
        let (c, _) = load_text(&text).unwrap_or_else(|e| panic!("{e}"));
        let p = &c.platforms[0];
        assert_eq!(p.name, "acme");
        assert_eq!(p.secret.expose(), "COMPONENTSECRET");
        assert_eq!(p.message_token.expose(), "TOKENVALUE");
        assert_eq!(p.aes_key.expose(), KEY);
        assert_eq!(p.discover, Duration::from_secs(600));
        assert_eq!(p.preset, PresetName::None);
        assert_eq!((p.policy.threshold, p.policy.reserve), (0.8, 3));
        let (limits, policy) = p.settings_for("wx1a2b3c4d5e6f7a8b");
        assert_eq!((policy.threshold, policy.reserve), (0.95, 3));
        assert_eq!(
            limits.entry_for("/cgi-bin/user/info").unwrap().limit,
            Some(100)
        );
        assert_eq!(p.authorizer_name("wx1a2b3c4d5e6f7a8b"), "brand-a");
        assert_eq!(
            p.authorizer_name("wx00000000000000aa"),
            "acme-wx00000000000000aa"
        );
        let _ = p.crypt();
        // Defaults: discover 1h.
        let (c, _) = load_text(PLATFORM).unwrap();
        assert_eq!(c.platforms[0].discover, HOUR);
        assert!(!format!("{:?}", c.platforms[0]).contains("COMPONENTSECRET"));
        assert!(!format!("{:?}", c.platforms[0]).contains(KEY));
    }

    #[test]
    fn each_rule_names_the_key() {
        let acct =
            "[[accounts]]\nname = \"shop\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"S\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (PLATFORM.replace("name = \"acme\"\n", ""), "platforms[0].name", "name is missing"),
            (format!("{acct}{}", PLATFORM.replace("\"acme\"", "\"shop\"")), "platforms[0].name", "unique among accounts and platforms"),
            (format!("{PLATFORM}{PLATFORM}"), "platforms[1].name", "already used"),
            (PLATFORM.replace("wx7c8d9e0f1a2b3c4d", "wxNOPE"), "platforms[0].component_appid", "16 lowercase hex"),
            (format!("{}{PLATFORM}", acct.replace("wx448f04719cd48f69", "wx7c8d9e0f1a2b3c4d")), "platforms[0].component_appid", "already used"),
            (PLATFORM.replace("secret_file = \"acme.secret\"\n", ""), "platforms[0].secret_file", "component AppSecret is missing"),
            (format!("{PLATFORM}secret_env = \"X\"\n"), "platforms[0].secret_env", "both set"),
            (PLATFORM.replace("acme.token", "missing.token"), "platforms[0].message_token_file", "cannot read"),
            (PLATFORM.replace("message_token_file = \"acme.token\"\n", "message_token_env = \"WXQ_TEST_UNSET_VAR\"\n"), "platforms[0].message_token_env", "not set"),
            (PLATFORM.replace("acme.aeskey", "bad.aeskey"), "platforms[0].aes_key_file", "43 base64 characters"),
            (format!("{PLATFORM}discover = \"10s\"\n"), "platforms[0].discover", "from 1m to 7d"),
            (format!("{PLATFORM}preset = \"huge\"\n"), "platforms[0].preset", "must be one of"),
            (format!("{PLATFORM}[platforms.policy]\nthreshold = 2.0\n"), "platforms[0].policy.threshold", "(0, 1]"),
            (format!("{PLATFORM}[[platforms.authorizers]]\nname = \"x\"\n"), "platforms[0].authorizers[0].appid", "appid is missing"),
            (format!("{PLATFORM}[[platforms.authorizers]]\nappid = \"wx7c8d9e0f1a2b3c4d\"\n"), "platforms[0].authorizers[0].appid", "already used"),
            (format!("{acct}{PLATFORM}[[platforms.authorizers]]\nappid = \"wx1a2b3c4d5e6f7a8b\"\nname = \"shop\"\n"), "platforms[0].authorizers[0].name", "unique among"),
            (format!("{PLATFORM}[[platforms.authorizers]]\nappid = \"wx1a2b3c4d5e6f7a8b\"\nname = \"acme-wx1a2b3c4d5e6f7a8b\"\n"), "platforms[0].authorizers[0].name", "generated authorizer name"),
            (format!("{}{PLATFORM}", acct.replace("\"shop\"", "\"acme-wx0123456789abcdef\"")), "accounts[0].name", "generated authorizer name"),
            (format!("{PLATFORM}[platforms.limits]\n\"/cgi-bin/user/info\" = 0\n"), "platforms[0].limits.\"/cgi-bin/user/info\"", "at least 1"),
            (format!("{PLATFORM}unknown_key = 1\n"), "", "unknown_key"),
        ];
        for (text, key, fragment) in cases {
            let errs = errors(&text);
            let hit = errs.iter().find(|e| e.to_string().contains(fragment));
            let Some(e) = hit else {
                panic!(
                    "no error containing {fragment:?} for:\n{text}\ngot:\n{}",
                    ConfigErrors(errs)
                )
            };
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{e}");
                assert!(e.line.is_some(), "{e}");
            }
            for secret in ["COMPONENTSECRET", "TOKENVALUE", KEY] {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
    }

    #[test]
    fn simulate_makes_up_missing_secrets_and_a_valid_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, PLATFORM).unwrap();
        let (c, warnings) = load(&path, LoadOptions { simulate: true }).unwrap();
        assert!(crate::platform::crypto::decode_aes_key(c.platforms[0].aes_key.expose()).is_ok());
        assert_eq!(
            warnings.iter().filter(|w| w.0.contains("made-up")).count(),
            3,
            "{warnings:?}"
        );
        assert!(load(&path, LoadOptions::default()).is_err());
    }
}
