//! Loading and validation: reads the file, parses it into the `file` types, checks every
//! rule of SPEC §3 (collecting all errors, each located), resolves secrets and builds
//! the runtime [`Config`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::file::{AccountFile, AlertFile, FileConfig, PolicyFile};
use super::locate::{self, line_col, KeyPath, Locator};
use super::*;

const DEFAULT_LISTEN: &str = "127.0.0.1:9477";
const DEFAULT_STATE_DIR: &str = "/var/lib/wxquotad";
const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
const DAY: Duration = Duration::from_secs(86_400);

pub(super) fn load(path: &Path, opts: LoadOptions) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let bare = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        account: None,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![bare(format!("cannot read the config file: {e}"))]))?;
    let loc = Locator::new(&text);
    let file: FileConfig = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => return Err(ConfigErrors(vec![parse_error(path, &text, &loc, &e)])),
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut v = Validator {
        file: path,
        dir,
        opts,
        loc,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    // The config file is usually 0644 (a DynamicUser service reads it as "others");
    // that only matters when it holds a secret itself.
    if file.accounts.iter().any(|a| a.secret.is_some()) {
        v.check_private(
            path,
            &KeyPath::root(),
            None,
            "config file (it holds a secret)",
        );
    }
    let config = v.config(file, std::env::var_os("STATE_DIRECTORY"));
    if v.errors.is_empty() {
        Ok((config, v.warnings))
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// A syntax error, an unknown key or a value of the wrong type, located by the span
/// toml gives. Values are not echoed for keys that hold secrets.
fn parse_error(file: &Path, text: &str, loc: &Locator, e: &toml::de::Error) -> ConfigError {
    let start = e.span().map(|s| s.start);
    let pos = start.map(|o| line_col(text, o));
    let key = start.and_then(|o| loc.path_at(o));
    let account = key.as_ref().and_then(|k| match k.segs() {
        [locate::Seg::Key(a), locate::Seg::Index(i), ..] if a == "accounts" => loc.account_name(*i),
        _ => None,
    });
    let key = key.map(|k| k.to_string());
    let secret_key = key
        .as_deref()
        .is_some_and(|k| k.ends_with(".secret") || k.ends_with(".url"));
    let message = if secret_key {
        "invalid value: expected a string (value not shown: it may be secret)".to_string()
    } else {
        let m = e.message().trim().replace('\n', "; ");
        if !loc.parsed() {
            format!("invalid TOML: {m}")
        } else {
            m.replacen("unknown field", "unknown key", 1)
        }
    };
    ConfigError {
        file: file.to_path_buf(),
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        key,
        account,
        message,
    }
}

/// `$STATE_DIRECTORY` (its first entry: systemd joins several with ':'), else
/// /var/lib/wxquotad.
fn default_state_dir(env: Option<OsString>) -> PathBuf {
    let env = env
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match env.split(':').next() {
        Some(first) if !first.is_empty() => PathBuf::from(first),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// Whether `appid` looks like one: "wx" and 16 lowercase hex digits.
fn is_appid(appid: &str) -> bool {
    appid.len() == 18
        && appid.starts_with("wx")
        && appid[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The name part of the last key of `key`, for messages ("threshold must ...").
fn leaf(key: &KeyPath) -> String {
    match key.segs().last() {
        Some(locate::Seg::Key(k)) => k.clone(),
        _ => key.to_string(),
    }
}

struct Validator<'a> {
    file: &'a Path,
    /// The config file's directory, absolute: relative paths in the file start here.
    dir: PathBuf,
    opts: LoadOptions,
    loc: Locator<'a>,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Validator<'_> {
    fn located(&self, key: &KeyPath, account: Option<&str>, message: String) -> ConfigError {
        let pos = self.loc.position(key);
        ConfigError {
            file: self.file.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            key: (!key.is_root()).then(|| key.to_string()),
            account: account.map(str::to_string),
            message,
        }
    }

    fn error(&mut self, key: &KeyPath, account: Option<&str>, message: String) {
        let e = self.located(key, account, message);
        self.errors.push(e);
    }

    fn warn(&mut self, key: &KeyPath, account: Option<&str>, message: String) {
        let w = Warning(self.located(key, account, message).to_string());
        self.warnings.push(w);
    }

    /// A path from the file, relative to the config file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        self.dir.join(p)
    }

    /// Warns when `path` is readable or writable by group or others.
    fn check_private(&mut self, path: &Path, key: &KeyPath, account: Option<&str>, what: &str) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    let msg = format!(
                        "{what} {} is accessible by group or others (mode {mode:04o}); \
                         expected mode 0600 (chmod 600 it)",
                        path.display()
                    );
                    self.warn(key, account, msg);
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (path, key, account, what);
    }

    fn config(&mut self, f: FileConfig, state_env: Option<OsString>) -> Config {
        let r = KeyPath::root();
        let daemon = self.daemon(f.daemon, state_env);
        let wechat = self.wechat(f.wechat);
        let policy = self.policy(&Policy::default(), &f.policy, &r.key("policy"), None);
        let poll = self.poll(f.poll);
        let alerts = f
            .alerts
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| self.alert(a, &r.key("alerts").index(i)))
            .collect();
        let accounts = self.accounts(
            f.accounts,
            &policy,
            !f.policy.watch.unwrap_or_default().is_empty(),
        );
        Config {
            path: self.file.to_path_buf(),
            daemon,
            wechat,
            poll,
            alerts,
            accounts,
        }
    }

    fn daemon(
        &mut self,
        d: super::file::DaemonFile,
        state_env: Option<OsString>,
    ) -> DaemonSettings {
        let k = KeyPath::root().key("daemon");
        let default_listen: SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
        let listen = match d.listen.as_deref() {
            None => default_listen,
            Some(s) => s.trim().parse().unwrap_or_else(|_| {
                self.error(
                    &k.key("listen"),
                    None,
                    format!(
                        "listen must be an IP address and port like \"127.0.0.1:9477\", got {s:?}"
                    ),
                );
                default_listen
            }),
        };
        let state_dir = match d.state_dir {
            None => default_state_dir(state_env),
            Some(p) if p.as_os_str().is_empty() => {
                self.error(
                    &k.key("state_dir"),
                    None,
                    "state_dir must be a directory path, got an empty string".into(),
                );
                PathBuf::new()
            }
            Some(p) => self.resolve(&p),
        };
        let mut api_token = None;
        let api_token_file = d.api_token_file.map(|p| self.resolve(&p));
        if let Some(p) = &api_token_file {
            let key = k.key("api_token_file");
            match read_secret_file(p) {
                Ok(t) => {
                    api_token = Some(Secret::new(t));
                    self.check_private(p, &key, None, "API token file");
                }
                Err(e) => self.error(
                    &key,
                    None,
                    format!("{e}; expected a readable file holding the API bearer token"),
                ),
            }
        } else if !listen.ip().is_loopback() {
            self.error(
                &k.key("listen"),
                None,
                format!(
                    "listen address {listen} is not loopback, so api_token_file must be set \
                     (then every API call needs the bearer token); or listen on 127.0.0.1"
                ),
            );
        }
        let log_format = self.choice(
            d.log_format.as_deref(),
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            &k.key("log_format"),
            None,
        );
        DaemonSettings {
            listen,
            state_dir,
            api_token,
            api_token_file,
            dry_run: d.dry_run.unwrap_or(false),
            log_format,
        }
    }

    fn wechat(&mut self, w: super::file::WechatFile) -> WechatSettings {
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
        WechatSettings {
            base_url,
            timeout,
            fallback_urls: Vec::new(),
        }
    }

    fn poll(&mut self, p: super::file::PollFile) -> PollSettings {
        let k = KeyPath::root().key("poll");
        let interval = self.duration(
            p.interval.as_deref(),
            DEFAULT_POLL_INTERVAL,
            &k.key("interval"),
            None,
            true,
        );
        let apis = self.paths(&p.apis.unwrap_or_default(), &k.key("apis"), None);
        for (i, api) in apis.iter().enumerate() {
            if !crate::apipath::pollable(api) {
                self.error(
                    &k.key("apis").index(i),
                    None,
                    format!(
                        "{api} cannot be polled: getApiQuota does not report /sns/ interfaces; \
                         expected a path such as /cgi-bin/user/info"
                    ),
                );
            }
        }
        PollSettings { interval, apis }
    }

    fn alert(&mut self, a: AlertFile, k: &KeyPath) -> Option<AlertSettings> {
        let kind = match a.kind.as_deref() {
            None => {
                self.error(
                    &k.key("kind"),
                    None,
                    "kind is missing; expected \"wecom\" or \"webhook\"".into(),
                );
                None
            }
            Some(_) => Some(self.choice(
                a.kind.as_deref(),
                AlertKind::Webhook,
                &[("wecom", AlertKind::Wecom), ("webhook", AlertKind::Webhook)],
                &k.key("kind"),
                None,
            )),
        };
        let url = match a.url {
            None => {
                self.error(
                    &k.key("url"),
                    None,
                    "url is missing; expected an http:// or https:// URL".into(),
                );
                None
            }
            Some(u) => {
                let u = u.trim().to_string();
                let ok = ["https://", "http://"]
                    .iter()
                    .any(|s| u.strip_prefix(s).is_some_and(|h| !h.is_empty()));
                if !ok {
                    // The URL is not echoed: a WeCom URL carries its key.
                    self.error(
                        &k.key("url"),
                        None,
                        "url must be an http:// or https:// URL (value not shown: it may hold a key)".into(),
                    );
                }
                Some(Secret::new(u))
            }
        };
        let events = match a.events {
            None => AlertEvent::ALL.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match AlertEvent::parse(n) {
                        Some(e) if !events.contains(&e) => events.push(e),
                        Some(_) => self.error(
                            &k.key("events").index(i),
                            None,
                            format!("event {n:?} is listed twice; expected each event once"),
                        ),
                        None => {
                            let all: Vec<String> = AlertEvent::ALL
                                .iter()
                                .map(|e| format!("{:?}", e.as_str()))
                                .collect();
                            self.error(
                                &k.key("events").index(i),
                                None,
                                format!("unknown event {n:?}; expected one of {}", all.join(", ")),
                            );
                        }
                    }
                }
                if names.is_empty() {
                    self.warn(
                        &k.key("events"),
                        None,
                        "events is empty, so this alert never fires".into(),
                    );
                }
                events
            }
        };
        let repeat_after = self.duration(
            a.repeat_after.as_deref(),
            Duration::from_secs(3600),
            &k.key("repeat_after"),
            None,
            true,
        );
        Some(AlertSettings {
            kind: kind?,
            url: url?,
            events,
            repeat_after,
        })
    }

    /// `base` with the keys `f` sets applied, each checked; an invalid value keeps
    /// `base`'s. `k` is the table's key path (`policy` or `accounts[i].policy`).
    fn policy(
        &mut self,
        base: &Policy,
        f: &PolicyFile,
        k: &KeyPath,
        account: Option<&str>,
    ) -> Policy {
        let mut p = base.clone();
        if let Some(t) = f.threshold {
            if t.is_finite() && t > 0.0 && t <= 1.0 {
                p.threshold = t;
            } else {
                self.error(
                    &k.key("threshold"),
                    account,
                    format!(
                        "threshold must be a share of the daily limit in (0, 1], e.g. 0.9; got {t}"
                    ),
                );
            }
        }
        if let Some(b) = f.clear_on_45009 {
            p.clear_on_45009 = b;
        }
        p.reserve = self.count(f.reserve, p.reserve, 0, &k.key("reserve"), account);
        p.monthly_clears = self.count(
            f.monthly_clears,
            p.monthly_clears,
            1,
            &k.key("monthly_clears"),
            account,
        );
        p.max_clears_per_day = self.count(
            f.max_clears_per_day,
            p.max_clears_per_day,
            1,
            &k.key("max_clears_per_day"),
            account,
        );
        p.min_interval = self.duration(
            f.min_interval.as_deref(),
            p.min_interval,
            &k.key("min_interval"),
            account,
            true,
        );
        let quiet = self.duration(
            f.quiet_before_reset.as_deref(),
            p.quiet_before_reset,
            &k.key("quiet_before_reset"),
            account,
            true,
        );
        if quiet < DAY {
            p.quiet_before_reset = quiet;
        } else {
            self.error(
                &k.key("quiet_before_reset"),
                account,
                format!(
                    "quiet_before_reset must be shorter than a day (or no automatic clear could \
                     ever happen), got {}",
                    humantime::format_duration(quiet)
                ),
            );
        }
        if let Some(w) = &f.watch {
            p.watch = self.paths(w, &k.key("watch"), account);
        }
        if (f.reserve.is_some() || f.monthly_clears.is_some()) && p.reserve >= p.monthly_clears {
            let which = if f.reserve.is_some() {
                "reserve"
            } else {
                "monthly_clears"
            };
            self.error(
                &k.key(which),
                account,
                format!(
                    "reserve must be less than monthly_clears (or no clear could ever be spent \
                     automatically), got reserve = {} and monthly_clears = {}",
                    p.reserve, p.monthly_clears
                ),
            );
        }
        p
    }

    fn accounts(
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
                Ok(s) if !s.trim_end().is_empty() => Some(Secret::new(s.trim_end())),
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
        self.warn(
            &key,
            acct,
            "an inline secret is discouraged (the config file is often widely readable); \
             use secret_file or secret_env"
                .into(),
        );
        Some(Secret::new(s.trim()))
    }

    /// One of the `options`, or `default` when absent.
    fn choice<T: Copy>(
        &mut self,
        raw: Option<&str>,
        default: T,
        options: &[(&str, T)],
        key: &KeyPath,
        account: Option<&str>,
    ) -> T {
        let Some(raw) = raw else { return default };
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == raw) {
            return *v;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
        self.error(
            key,
            account,
            format!(
                "{} must be one of {}, got {raw:?}",
                leaf(key),
                names.join(", ")
            ),
        );
        default
    }

    /// A count: at least `min`, at most u32::MAX; `current` when absent or invalid.
    fn count(
        &mut self,
        raw: Option<i64>,
        current: u32,
        min: u32,
        key: &KeyPath,
        account: Option<&str>,
    ) -> u32 {
        let Some(n) = raw else { return current };
        match u32::try_from(n) {
            Ok(v) if v >= min => v,
            _ => {
                self.error(
                    key,
                    account,
                    format!(
                        "{} must be a whole number of at least {min}, got {n}",
                        leaf(key)
                    ),
                );
                current
            }
        }
    }

    /// A duration like "30s", "10m" or "2h"; `default` when absent or invalid.
    fn duration(
        &mut self,
        raw: Option<&str>,
        default: Duration,
        key: &KeyPath,
        account: Option<&str>,
        zero_ok: bool,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.trim()) {
            Ok(d) if zero_ok || !d.is_zero() => d,
            Ok(_) => {
                self.error(
                    key,
                    account,
                    format!(
                        "{} must be longer than zero, e.g. \"10s\"; got {raw:?}",
                        leaf(key)
                    ),
                );
                default
            }
            Err(e) => {
                self.error(
                    key,
                    account,
                    format!(
                        "{} must be a duration like \"30s\", \"10m\" or \"2h\", got {raw:?} ({e})",
                        leaf(key)
                    ),
                );
                default
            }
        }
    }

    /// An API path in any form `apipath::normalize` accepts, normalised.
    fn api_path(&mut self, raw: &str, key: &KeyPath, account: Option<&str>) -> Option<String> {
        match crate::apipath::normalize(raw) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(
                    key,
                    account,
                    format!("{e}; expected an API path like \"/cgi-bin/user/info\""),
                );
                None
            }
        }
    }

    /// A list of API paths, normalised, each at most once.
    fn paths(&mut self, raw: &[String], key: &KeyPath, account: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let k = key.index(i);
            if let Some(p) = self.api_path(r, &k, account) {
                if out.contains(&p) {
                    self.error(
                        &k,
                        account,
                        format!("{p} is listed twice; expected each path once"),
                    );
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// A secret or token from a file: its content without trailing whitespace; an error
/// (never holding the content) when unreadable or empty.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let s = s.trim_end();
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A valid account with an inline secret (a warning, never an error).
    const ACCOUNT: &str = "[[accounts]]\nname = \"shop\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"TOPSECRETVALUE\"\n";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    }

    fn load_text(
        text: &str,
        opts: LoadOptions,
    ) -> (
        tempfile::TempDir,
        Result<(Config, Vec<Warning>), ConfigErrors>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.toml", text, 0o600);
        let r = load(&path, opts);
        (dir, r)
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match load_text(text, LoadOptions::default()).1 {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.0,
        }
    }

    fn ok(text: &str) -> (Config, Vec<Warning>) {
        match load_text(text, LoadOptions::default()).1 {
            Ok(c) => c,
            Err(e) => panic!("expected no errors, got:\n{e}"),
        }
    }

    #[test]
    fn each_rule_names_key_line_and_what_is_expected() {
        // (config text, key path, message fragment, line)
        let cases: &[(&str, &str, &str, usize)] = &[
            ("[policy]\nthreshold = 1.5\n", "policy.threshold", "in (0, 1], e.g. 0.9; got 1.5", 2),
            ("[policy]\nthreshold = 0\n", "policy.threshold", "(0, 1]", 2),
            ("[policy]\nreserve = 10\n", "policy.reserve", "less than monthly_clears", 2),
            ("[policy]\nmonthly_clears = 0\n", "policy.monthly_clears", "at least 1, got 0", 2),
            ("[policy]\nmax_clears_per_day = 0\n", "policy.max_clears_per_day", "at least 1", 2),
            ("[policy]\nreserve = -1\n", "policy.reserve", "at least 0, got -1", 2),
            ("[policy]\nmin_interval = \"ten\"\n", "policy.min_interval", "duration like \"30s\"", 2),
            ("[policy]\nquiet_before_reset = \"25h\"\n", "policy.quiet_before_reset", "shorter than a day", 2),
            ("[policy]\nwatch = [\"/ok\", \"/a b\"]\n", "policy.watch[1]", "expected an API path", 2),
            ("[policy]\nwatch = [\"/a\", \"a\"]\n", "policy.watch[1]", "listed twice", 2),
            ("[daemon]\nlisten = \"localhost\"\n", "daemon.listen", "IP address and port", 2),
            ("[daemon]\nlisten = \"0.0.0.0:9477\"\n", "daemon.listen", "api_token_file must be set", 2),
            ("[daemon]\napi_token_file = \"missing-token\"\n", "daemon.api_token_file", "cannot read", 2),
            ("[daemon]\nlog_format = \"xml\"\n", "daemon.log_format", "one of \"text\", \"json\", got \"xml\"", 2),
            ("[daemon]\nstate_dir = \"\"\n", "daemon.state_dir", "empty", 2),
            ("[wechat]\nbase_url = \"ftp://x\"\n", "wechat.base_url", "http:// or https://", 2),
            ("[wechat]\ntimeout = \"0s\"\n", "wechat.timeout", "longer than zero", 2),
            ("[poll]\ninterval = \"5\"\n", "poll.interval", "duration", 2),
            ("[poll]\napis = [\"/sns/userinfo\"]\n", "poll.apis[0]", "cannot be polled", 2),
            ("[[alerts]]\nkind = \"email\"\nurl = \"https://x\"\n", "alerts[0].kind", "\"wecom\", \"webhook\"", 2),
            ("[[alerts]]\nkind = \"wecom\"\nurl = \"ftp://x?key=K\"\n", "alerts[0].url", "http:// or https://", 3),
            ("[[alerts]]\nkind = \"wecom\"\n", "alerts[0].url", "missing", 1),
            ("[[alerts]]\nkind = \"wecom\"\nurl = \"https://x\"\nevents = [\"boom\"]\n", "alerts[0].events[0]", "unknown event \"boom\"", 4),
            ("[[accounts]]\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n", "accounts[0].name", "missing", 1),
            ("[[accounts]]\nname = \"a b\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n", "accounts[0].name", "letters, digits", 2),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448F04719CD48F69\"\nsecret = \"s\"\n", "accounts[0].appid", "16 lowercase hex", 3),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx1\"\nsecret = \"s\"\n", "accounts[0].appid", "like \"wx448f04719cd48f69\"", 3),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\n", "accounts[0].secret_file", "exactly one of", 1),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nsecret_env = \"X\"\n", "accounts[0].secret_env", "both set", 5),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"nope.secret\"\n", "accounts[0].secret_file", "cannot read", 4),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_env = \"WXQUOTAD_TEST_UNSET_VAR\"\n", "accounts[0].secret_env", "not set", 4),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nkind = \"app\"\n", "accounts[0].kind", "\"official_account\", \"mini_program\"", 5),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\npreset = \"big\"\n", "accounts[0].preset", "\"normal\", \"test\", \"none\"", 5),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nclear_via = \"v3\"\n", "accounts[0].clear_via", "\"auto\", \"token\", \"appsecret\"", 5),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.limits]\n\"/x\" = 0\n", "accounts[0].limits.\"/x\"", "at least 1 call, got 0", 6),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.limits]\n\"/a//b\" = 5\n", "accounts[0].limits.\"/a//b\"", "empty or relative segment", 6),
            ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.policy]\nthreshold = 2.0\n", "accounts[0].policy.threshold", "got 2", 6),
            ("[policy]\nreserve = 5\n[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\npolicy.monthly_clears = 5\n", "accounts[0].policy.monthly_clears", "reserve = 5 and monthly_clears = 5", 7),
        ];
        for (text, key, fragment, line) in cases {
            let errs = errors(text);
            assert_eq!(errs.len(), 1, "{text}\n{}", ConfigErrors(errs.clone()));
            let e = &errs[0];
            assert_eq!(e.key.as_deref(), Some(*key), "{text}\n{e}");
            assert!(
                e.message.contains(fragment),
                "{text}\n{e}\nwant: {fragment}"
            );
            assert_eq!(e.line, Some(*line), "{text}\n{e}");
            assert!(e.column.is_some(), "{e}");
        }
    }

    #[test]
    fn duplicates_point_at_the_second_account() {
        let text = format!("{ACCOUNT}{ACCOUNT}");
        let errs = errors(&text);
        let keys: Vec<_> = errs.iter().map(|e| e.key.clone().unwrap()).collect();
        assert_eq!(
            keys,
            ["accounts[1].name", "accounts[1].appid"],
            "{}",
            ConfigErrors(errs.clone())
        );
        assert!(errs[0].message.contains("already used by accounts[0]"));
        assert_eq!(errs[0].line, Some(6));
        assert_eq!(errs[0].account.as_deref(), Some("shop"));
    }

    #[test]
    fn unknown_keys_are_located() {
        let cases = [
            (
                "[daemon]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
                "daemon.lisen",
                3,
                1,
            ),
            ("colour = 1\n", "colour", 1, 1),
            (
                &*format!("{ACCOUNT}  secrets = \"x\"\n"),
                "accounts[0].secrets",
                5,
                3,
            ),
            (
                &*format!("{ACCOUNT}[accounts.policy]\nthreshhold = 0.5\n"),
                "accounts[0].policy.threshhold",
                6,
                1,
            ),
        ];
        for (text, key, line, col) in cases {
            let errs = errors(text);
            assert_eq!(errs.len(), 1);
            let e = &errs[0];
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert_eq!((e.line, e.column), (Some(line), Some(col)), "{e}");
            assert!(e.message.contains("unknown"), "{e}");
        }
        let e = &errors(&format!("{ACCOUNT}  secrets = \"x\"\n"))[0];
        assert_eq!(e.account.as_deref(), Some("shop"));
        assert!(
            e.to_string()
                .contains(":5:3: accounts[0].secrets: account \"shop\": unknown"),
            "{e}"
        );
    }

    #[test]
    fn syntax_and_type_errors_are_located() {
        let e = &errors("[daemon]\nlisten = \"127.0.0.1\n")[0];
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.starts_with("invalid TOML: "), "{e}");
        let e = &errors("[policy]\nreserve = \"two\"\n")[0];
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("policy.reserve"), Some(2)),
            "{e}"
        );
    }

    #[test]
    fn all_errors_are_collected() {
        let text = format!(
            "[policy]\nthreshold = 7\nmax_clears_per_day = 0\n{ACCOUNT}appid_extra_line = 0\n"
        );
        // An unknown key stops parsing: only that one is reported.
        assert_eq!(errors(&text).len(), 1);
        let text = "[policy]\nthreshold = 7\nmax_clears_per_day = 0\n[[accounts]]\nname = \"x y\"\nappid = \"nope\"\n";
        let keys: Vec<_> = errors(text).into_iter().map(|e| e.key.unwrap()).collect();
        assert_eq!(
            keys,
            [
                "policy.threshold",
                "policy.max_clears_per_day",
                "accounts[0].name",
                "accounts[0].appid",
                "accounts[0].secret_file"
            ]
        );
    }

    #[test]
    fn account_errors_name_the_account() {
        let text = format!("{ACCOUNT}preset = \"huge\"\n");
        let e = &errors(&text)[0];
        assert_eq!(e.account.as_deref(), Some("shop"));
        assert!(e.to_string().contains("account \"shop\""), "{e}");
    }

    #[test]
    fn secrets_never_show() {
        let (config, warnings) = ok(ACCOUNT);
        let debug = format!("{config:?} {warnings:?}");
        assert!(!debug.contains("TOPSECRETVALUE"), "{debug}");
        assert_eq!(config.accounts[0].secret.expose(), "TOPSECRETVALUE");
        assert!(
            warnings.iter().any(|w| w.0.contains("discouraged")),
            "{warnings:?}"
        );
        // Errors about secrets, or with a secret in the account, never echo it.
        for text in [
            format!("{ACCOUNT}secret_env = \"X\"\n"),
            "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = 12345678\n"
                .into(),
            "[[alerts]]\nkind = \"wecom\"\nurl = \"ftp://host/?key=TOPSECRETVALUE\"\n".into(),
            "[[alerts]]\nkind = \"wecom\"\nurl = 12345678\n".into(),
        ] {
            let errs = ConfigErrors(errors(&text));
            let shown = format!("{errs} {errs:?}");
            assert!(
                !shown.contains("TOPSECRETVALUE") && !shown.contains("12345678"),
                "{shown}"
            );
        }
    }

    #[test]
    fn secret_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "open.secret", "FILESECRET\n", 0o644);
        write(dir.path(), "closed.secret", "FILESECRET2 \n", 0o600);
        write(dir.path(), "empty.secret", "\n", 0o600);
        std::env::set_var("WXQUOTAD_TEST_SECRET_ENV", "ENVSECRET");
        let text = "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"open.secret\"\n\
                    [[accounts]]\nname = \"b\"\nappid = \"wx448f04719cd48f6a\"\nsecret_file = \"closed.secret\"\n\
                    [[accounts]]\nname = \"c\"\nappid = \"wx448f04719cd48f6b\"\nsecret_env = \"WXQUOTAD_TEST_SECRET_ENV\"\n";
        let path = write(dir.path(), "config.toml", text, 0o600);
        let (config, warnings) = load(&path, LoadOptions::default()).unwrap();
        let secrets: Vec<_> = config.accounts.iter().map(|a| a.secret.expose()).collect();
        assert_eq!(secrets, ["FILESECRET", "FILESECRET2", "ENVSECRET"]);
        #[cfg(unix)]
        {
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].0.contains("open.secret") && warnings[0].0.contains("0644"),
                "{warnings:?}"
            );
            // A world-readable config file is fine without secrets in it...
            write(dir.path(), "config.toml", text, 0o644);
            let (_, warnings) = load(&path, LoadOptions::default()).unwrap();
            assert!(
                !warnings.iter().any(|w| w.0.contains("config file")),
                "{warnings:?}"
            );
            // ...and a warning when it holds one inline.
            let inline = format!("{text}[[accounts]]\nname = \"d\"\nappid = \"wx448f04719cd48f6c\"\nsecret = \"INLINE\"\n");
            write(dir.path(), "config.toml", &inline, 0o644);
            let (_, warnings) = load(&path, LoadOptions::default()).unwrap();
            assert!(
                warnings.iter().any(|w| w.0.contains("config file")),
                "{warnings:?}"
            );
        }
        let path = write(dir.path(), "config.toml", "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"empty.secret\"\n", 0o600);
        let errs = load(&path, LoadOptions::default()).unwrap_err();
        assert!(errs.0[0].message.contains("is empty"), "{errs}");
    }

    #[test]
    fn simulate_tolerates_missing_secrets_only() {
        let text = "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"/nonexistent/a.secret\"\n\
                    [[accounts]]\nname = \"b\"\nappid = \"wx448f04719cd48f6a\"\nsecret_env = \"WXQUOTAD_TEST_UNSET_VAR\"\n";
        let sim = LoadOptions { simulate: true };
        let (_dir, r) = load_text(text, sim);
        let (config, warnings) = r.unwrap();
        assert_eq!(config.accounts[0].secret.expose(), "sim-secret-a");
        assert_eq!(config.accounts[1].secret.expose(), "sim-secret-b");
        assert_eq!(
            warnings
                .iter()
                .filter(|w| w.0.contains("made-up secret"))
                .count(),
            2
        );
        // Other rules still apply.
        let (_dir, r) = load_text(&format!("{text}[policy]\nthreshold = 3\n"), sim);
        assert_eq!(r.unwrap_err().0.len(), 1);
        // Without simulate both are errors.
        assert_eq!(errors(text).len(), 2);
    }

    #[test]
    fn defaults_and_paths() {
        let (config, warnings) = ok("[daemon]\nstate_dir = \"state\"\n");
        let dir = config.path.parent().unwrap();
        assert_eq!(
            config.daemon.state_dir,
            std::path::absolute(dir).unwrap().join("state")
        );
        assert!(warnings.iter().any(|w| w.0.contains("no [[accounts]]")));
        assert_eq!(config.daemon.listen, "127.0.0.1:9477".parse().unwrap());
        assert_eq!(config.daemon.log_format, LogFormat::Text);
        assert!(!config.daemon.dry_run);
        assert_eq!(config.wechat.base_url, "https://api.weixin.qq.com");
        assert_eq!(config.wechat.timeout, Duration::from_secs(10));
        assert_eq!(config.poll.interval, Duration::from_secs(300));
        let (config, _) = ok("[daemon]\nstate_dir = \"/abs/state\"\n[wechat]\nbase_url = \"http://127.0.0.1:8080/\"\n[poll]\ninterval = \"0s\"\napis = [\"https://h/cgi-bin/user/get?access_token=T\"]\n");
        assert_eq!(config.daemon.state_dir, PathBuf::from("/abs/state"));
        assert_eq!(config.wechat.base_url, "http://127.0.0.1:8080");
        assert_eq!(config.poll.interval, Duration::ZERO);
        assert_eq!(config.poll.apis, ["/cgi-bin/user/get"]);

        assert_eq!(default_state_dir(None), PathBuf::from("/var/lib/wxquotad"));
        assert_eq!(
            default_state_dir(Some("".into())),
            PathBuf::from("/var/lib/wxquotad")
        );
        assert_eq!(
            default_state_dir(Some("/var/lib/wxquotad:/x".into())),
            PathBuf::from("/var/lib/wxquotad")
        );
        assert_eq!(
            default_state_dir(Some("/srv/s".into())),
            PathBuf::from("/srv/s")
        );
    }

    #[test]
    fn token_file_and_loopback() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "token", "TOKENVALUE\n", 0o600);
        let path = write(
            dir.path(),
            "config.toml",
            "[daemon]\nlisten = \"0.0.0.0:9477\"\napi_token_file = \"token\"\n",
            0o600,
        );
        let (config, _) = load(&path, LoadOptions::default()).unwrap();
        assert_eq!(
            config.daemon.api_token.as_ref().unwrap().expose(),
            "TOKENVALUE"
        );
        assert!(!format!("{config:?}").contains("TOKENVALUE"));
        ok("[daemon]\nlisten = \"[::1]:9477\"\n");
    }

    #[test]
    fn account_policy_overrides_key_by_key() {
        let text = format!(
            "[policy]\nthreshold = 0.8\nreserve = 1\nwatch = [\"/cgi-bin/user/get\"]\n\
             {ACCOUNT}kind = \"mini_program\"\n[accounts.limits]\n\"cgi-bin/user/get\" = 50\n\
             [accounts.policy]\nthreshold = 0.5\nmin_interval = \"1h\"\n"
        );
        let (config, _) = ok(&text);
        let a = &config.accounts[0];
        let want = Policy {
            threshold: 0.5,
            reserve: 1,
            min_interval: Duration::from_secs(3600),
            watch: vec!["/cgi-bin/user/get".into()],
            ..Policy::default()
        };
        assert_eq!(a.policy, want);
        assert_eq!(a.kind, AccountKind::MiniProgram);
        assert_eq!(a.preset, PresetName::None);
        assert_eq!(a.clear_via, ClearVia::Auto);
        let e = a.limits.entry_for("/cgi-bin/user/get").unwrap();
        assert_eq!((e.limit, e.source), (Some(50), LimitSource::Config));
        assert_eq!(a.watched().len(), 1);
    }

    #[test]
    fn watching_an_interface_without_a_limit_warns() {
        let text = format!("[policy]\nwatch = [\"/cgi-bin/nolimit\"]\n{ACCOUNT}");
        let (_, warnings) = ok(&text);
        assert!(
            warnings
                .iter()
                .any(|w| w.0.contains("/cgi-bin/nolimit has no daily limit")),
            "{warnings:?}"
        );
    }

    #[test]
    fn unreadable_config_names_the_file() {
        let errs = load(
            Path::new("/nonexistent/wxquotad.toml"),
            LoadOptions::default(),
        )
        .unwrap_err();
        assert!(
            errs.to_string()
                .starts_with("/nonexistent/wxquotad.toml: cannot read"),
            "{errs}"
        );
    }
}
