//! `[[accounts]]`: names, appids, kinds, presets, limits and the AppSecret.

use super::*;

/// Whether `appid` looks like one: "wx" and 16 lowercase hex digits.
pub(crate) fn is_appid(appid: &str) -> bool {
    appid.len() == 18
        && appid.starts_with("wx")
        && appid[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl Validator<'_> {
    pub(super) fn accounts(
        &mut self,
        list: Vec<AccountFile>,
        policy: &Policy,
        global_watch: bool,
    ) -> Vec<Account> {
        if list.is_empty() {
            self.warn(
                &KeyPath::root(),
                None,
                "no [[accounts]]: the daemon has nothing to watch".into(),
            );
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut appids: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, a) in list.into_iter().enumerate() {
            let k = KeyPath::root().key("accounts").index(i);
            if let Some(acc) = self.account(a, &k, i, policy, global_watch, &mut names, &mut appids)
            {
                out.push(acc);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        a: AccountFile,
        k: &KeyPath,
        i: usize,
        global: &Policy,
        global_watch: bool,
        names: &mut HashMap<String, usize>,
        appids: &mut HashMap<String, usize>,
    ) -> Option<Account> {
        let name = a.name.clone().unwrap_or_default();
        let acct = (!name.is_empty()).then_some(name.as_str());
        match &a.name {
            None => self.error(
                &k.key("name"),
                None,
                "name is missing; expected a unique name of letters, digits, '-' and '_'".into(),
            ),
            Some(n) => {
                let valid = !n.is_empty()
                    && n.len() <= 64
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    self.error(
                        &k.key("name"),
                        acct,
                        format!("name must be 1 to 64 letters, digits, '-' and '_', got {n:?}"),
                    );
                } else if let Some(first) = names.get(n) {
                    self.error(
                        &k.key("name"),
                        acct,
                        format!("name {n:?} is already used by accounts[{first}]; expected a unique name"),
                    );
                } else {
                    names.insert(n.clone(), i);
                }
            }
        }
        match &a.appid {
            None => self.error(
                &k.key("appid"),
                acct,
                "appid is missing; expected \"wx\" followed by 16 lowercase hex digits".into(),
            ),
            Some(id) if !is_appid(id) => self.error(
                &k.key("appid"),
                acct,
                format!(
                    "appid must be \"wx\" followed by 16 lowercase hex digits, like \
                     \"wx448f04719cd48f69\"; got {id:?}"
                ),
            ),
            Some(id) => {
                if let Some(first) = appids.get(id) {
                    self.error(
                        &k.key("appid"),
                        acct,
                        format!("appid {id} is already used by accounts[{first}]; expected each account once"),
                    );
                } else {
                    appids.insert(id.clone(), i);
                }
            }
        }
        let kind = self.choice(
            a.kind.as_deref(),
            AccountKind::OfficialAccount,
            &[
                ("official_account", AccountKind::OfficialAccount),
                ("mini_program", AccountKind::MiniProgram),
            ],
            &k.key("kind"),
            acct,
        );
        let default_preset = match kind {
            AccountKind::OfficialAccount => PresetName::Normal,
            AccountKind::MiniProgram => PresetName::None,
        };
        let preset = self.choice(
            a.preset.as_deref(),
            default_preset,
            &[
                ("normal", PresetName::Normal),
                ("test", PresetName::Test),
                ("none", PresetName::None),
            ],
            &k.key("preset"),
            acct,
        );
        let clear_via = self.choice(
            a.clear_via.as_deref(),
            ClearVia::Auto,
            &[
                ("auto", ClearVia::Auto),
                ("token", ClearVia::Token),
                ("appsecret", ClearVia::AppSecret),
            ],
            &k.key("clear_via"),
            acct,
        );
        let secret = self.secret(&a, k, acct, &name);

        let mut limits = LimitTable::from_preset(preset);
        let mut seen: Vec<String> = Vec::new();
        for (raw, &n) in &a.limits {
            let key = k.key("limits").key(raw);
            let Some(path) = self.api_path(raw, &key, acct) else {
                continue;
            };
            if seen.contains(&path) {
                self.error(
                    &key,
                    acct,
                    format!("{path} is given twice in limits; expected each path once"),
                );
                continue;
            }
            seen.push(path.clone());
            if n < 1 {
                self.error(
                    &key,
                    acct,
                    format!("a daily limit must be at least 1 call, got {n}"),
                );
                continue;
            }
            limits.set(&path, n as u64, LimitSource::Config);
        }

        let policy = self.policy(global, &a.policy, &k.key("policy"), acct);
        let watch_key = if a.policy.watch.is_some() {
            Some(k.key("policy").key("watch"))
        } else if global_watch {
            Some(KeyPath::root().key("policy").key("watch"))
        } else {
            None
        };
        if let Some(wk) = watch_key {
            for w in &policy.watch {
                if limits.entry_for(w).and_then(|e| e.limit).is_none() {
                    self.warn(
                        &wk,
                        acct,
                        format!(
                            "watched interface {w} has no daily limit for this account (preset {}), \
                             so only a 45009 report can trigger a clear; add it to [accounts.limits]",
                            preset.as_str()
                        ),
                    );
                }
            }
        }
        Some(Account {
            name,
            appid: a.appid.unwrap_or_default(),
            kind,
            preset,
            secret: secret?,
            clear_via,
            limits,
            policy,
        })
    }

    /// The AppSecret from exactly one of secret_file, secret_env and secret.
    fn secret(
        &mut self,
        a: &AccountFile,
        k: &KeyPath,
        acct: Option<&str>,
        name: &str,
    ) -> Option<Secret> {
        let mut given: Vec<&str> = [
            ("secret_file", a.secret_file.is_some()),
            ("secret_env", a.secret_env.is_some()),
            ("secret", a.secret.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n)
        .collect();
        // In file order, so a conflict points at the source given last.
        given.sort_by_key(|n| self.loc.position(&k.key(n)));
        if given.is_empty() {
            self.error(
                &k.key("secret_file"),
                acct,
                "no AppSecret: expected exactly one of secret_file, secret_env or secret".into(),
            );
            return None;
        }
        if given.len() > 1 {
            self.error(
                &k.key(given[given.len() - 1]),
                acct,
                if given.len() == 2 {
                    format!(
                        "{} and {} are both set; expected exactly one of secret_file, secret_env or secret",
                        given[0], given[1]
                    )
                } else {
                    "secret_file, secret_env and secret are all set; expected exactly one of them".into()
                },
            );
            return None;
        }
        let simulated = |v: &mut Self, key: &KeyPath, why: String| {
            if v.opts.simulate {
                v.warn(
                    key,
                    acct,
                    format!("{why}; using a made-up secret because of --simulate"),
                );
                Some(Secret::new(format!("sim-secret-{name}")))
            } else {
                v.error(key, acct, why);
                None
            }
        };
        if let Some(p) = &a.secret_file {
            let key = k.key("secret_file");
            let p = self.resolve(p);
            return match read_secret_file(&p) {
                Ok(s) => {
                    self.check_private(&p, &key, acct, "secret file");
                    Some(Secret::new(s))
                }
                Err(e) => simulated(
                    self,
                    &key,
                    format!("{e}; expected a readable file holding the AppSecret"),
                ),
            };
        }
        if let Some(var) = &a.secret_env {
            let key = k.key("secret_env");
            return match std::env::var(var) {
                Ok(s) if !s.trim_end().is_empty() => match read::check_secret(s.trim_end()) {
                    Ok(()) => Some(Secret::new(s.trim_end())),
                    Err(why) => simulated(self, &key, format!("environment variable {var} {why}")),
                },
                Ok(_) => simulated(
                    self,
                    &key,
                    format!(
                        "environment variable {var} is empty; expected it to hold the AppSecret"
                    ),
                ),
                Err(_) => simulated(
                    self,
                    &key,
                    format!(
                        "environment variable {var} is not set; expected it to hold the AppSecret"
                    ),
                ),
            };
        }
        let s = a.secret.as_deref().unwrap_or_default();
        let key = k.key("secret");
        if s.trim().is_empty() {
            self.error(&key, acct, "secret is empty; expected the AppSecret".into());
            return None;
        }
        if let Err(why) = read::check_secret(s.trim()) {
            self.error(&key, acct, format!("secret {why}"));
            return None;
        }
        self.warn(
            &key,
            acct,
            "an inline secret is discouraged (the config file is often widely readable); \
             use secret_file or secret_env"
                .into(),
        );
        Some(Secret::new(s.trim()))
    }
}
