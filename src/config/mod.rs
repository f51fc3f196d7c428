//! Configuration: the TOML file (SPEC §3) loaded into plain runtime types with every
//! default filled in, validated, with secrets resolved. Runtime types hold no `Option`
//! for anything that has a default.

mod file;
mod locate;
mod platforms;
pub mod presets;
mod proxy;
pub mod read;
mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use platforms::{looks_generated, AuthorizerSettings, Platform};
pub use presets::{LimitEntry, LimitSource, LimitTable, PresetName};
pub use proxy::{Cidr, ProxySettings, TlsFiles};
pub use secret::{safe_quote, scrub, Secret};

/// Where the config lives when neither `--config` nor `$WXQUOTAD_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/wxquotad/config.toml";

/// The whole configuration, ready to use.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    pub wechat: WechatSettings,
    pub poll: PollSettings,
    /// `[proxy]`; `None` when the section is absent (the proxy is off).
    pub proxy: Option<ProxySettings>,
    pub alerts: Vec<AlertSettings>,
    pub accounts: Vec<Account>,
    /// `[[platforms]]` (SPEC §8).
    pub platforms: Vec<Platform>,
}

/// `[daemon]`
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Report API, status, metrics, health. Default 127.0.0.1:9477.
    pub listen: SocketAddr,
    /// Holds the state database. Default $STATE_DIRECTORY, else /var/lib/wxquotad.
    pub state_dir: PathBuf,
    /// Bearer token every API call but /healthz needs, read from `api_token_file`.
    pub api_token: Option<Secret>,
    pub api_token_file: Option<PathBuf>,
    /// Decide and log, never call clear_quota. Default false.
    pub dry_run: bool,
    pub log_format: LogFormat,
    /// Extra `Host` names the API answers to, besides the listen address and `localhost`
    /// (SPEC §4: any other Host is refused, against DNS rebinding). Lowercase, without
    /// port or brackets. Default none.
    pub allowed_hosts: Vec<String>,
    /// Where the calls reported (and proxied) are recorded as a traffic file for
    /// `wxquotad replay` (SPEC §9). Default none: not recorded.
    pub traffic_log: Option<PathBuf>,
    /// Past this size (bytes) the traffic log moves to `<file>.1` and a new one
    /// starts. Default 64 MiB; 1 MiB to 4 GiB.
    pub traffic_log_max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[wechat]`
#[derive(Debug, Clone)]
pub struct WechatSettings {
    /// Without a trailing slash. Default https://api.weixin.qq.com.
    pub base_url: String,
    /// Tried in order when nothing could be sent to `base_url` (each without a trailing
    /// slash). Default none.
    pub fallback_urls: Vec<String>,
    /// Per request. Default 10 s; 100 ms to 10 min.
    pub timeout: Duration,
}

/// `[poll]`: WeChat's own counters via getApiQuota.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Zero disables polling. Default 5 min.
    pub interval: Duration,
    /// Paths to poll; empty = the policy's watched interfaces.
    pub apis: Vec<String>,
}

/// `[[alerts]]`
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub kind: AlertKind,
    /// Webhook URL; a WeCom URL carries its key, so it is kept secret.
    pub url: Secret,
    pub events: Vec<AlertEvent>,
    /// Least time between two alerts of one event for one account, so a flapping
    /// condition does not spam. Default 1 h; "0s" sends every one.
    pub repeat_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// WeCom group robot webhook (markdown message).
    Wecom,
    /// Generic JSON POST.
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertEvent {
    Cleared,
    ClearFailed,
    BudgetLow,
    Exhausted,
    AccountError,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 5] = [
        AlertEvent::Cleared,
        AlertEvent::ClearFailed,
        AlertEvent::BudgetLow,
        AlertEvent::Exhausted,
        AlertEvent::AccountError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Cleared => "cleared",
            AlertEvent::ClearFailed => "clear_failed",
            AlertEvent::BudgetLow => "budget_low",
            AlertEvent::Exhausted => "exhausted",
            AlertEvent::AccountError => "account_error",
        }
    }

    pub fn parse(s: &str) -> Option<AlertEvent> {
        AlertEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// WeChat's monthly budget of account clears (`clear_quota`), per account.
pub const WECHAT_MONTHLY_CLEARS: u32 = 10;
/// WeChat's monthly budget of per-interface clears (`clearApiQuota`), per account.
pub const WECHAT_MONTHLY_API_CLEARS: u32 = 50;

/// `[policy]`, merged with an account's `[accounts.policy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Clear when a watched interface reaches this share of its daily limit. (0, 1], default 0.9.
    pub threshold: f64,
    /// Clear when a watched interface is reported blocked (45009). Default true.
    pub clear_on_45009: bool,
    /// Monthly clears never spent automatically. Default 2; < monthly_clears.
    pub reserve: u32,
    /// WeChat's monthly budget per account. Default and at most [`WECHAT_MONTHLY_CLEARS`].
    pub monthly_clears: u32,
    /// Reset only the due interface (clearApiQuota) when one is enough. Default true.
    pub api_clears: bool,
    /// WeChat's monthly budget of per-interface clears per account. Default and at most
    /// [`WECHAT_MONTHLY_API_CLEARS`].
    pub monthly_api_clears: u32,
    /// Per-interface clears never spent automatically. Default 5; < monthly_api_clears.
    pub api_reserve: u32,
    /// Read getApiQuota before spending a clear on a reported 45009. Default true.
    pub confirm_45009: bool,
    /// Least time between two clears of one account. Default 10 min; at most 31 days.
    pub min_interval: Duration,
    /// Default 3.
    pub max_clears_per_day: u32,
    /// No automatic clear this close to the daily reset. Default 30 min.
    pub quiet_before_reset: Duration,
    /// Interfaces that can trigger a clear; empty = every interface with a limit.
    pub watch: Vec<String>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            threshold: 0.9,
            clear_on_45009: true,
            reserve: 2,
            monthly_clears: WECHAT_MONTHLY_CLEARS,
            api_clears: true,
            monthly_api_clears: WECHAT_MONTHLY_API_CLEARS,
            api_reserve: 5,
            confirm_45009: true,
            min_interval: Duration::from_secs(600),
            max_clears_per_day: 3,
            quiet_before_reset: Duration::from_secs(1800),
            watch: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    OfficialAccount,
    MiniProgram,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::OfficialAccount => "official_account",
            AccountKind::MiniProgram => "mini_program",
        }
    }
}

/// How clears are sent (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearVia {
    /// The token, falling back to the AppSecret variant when no token can be had.
    Auto,
    /// `/cgi-bin/clear_quota` with a stable access token.
    Token,
    /// `/cgi-bin/clear_quota/v2` with the AppSecret.
    AppSecret,
}

/// One `[[accounts]]` entry.
#[derive(Debug, Clone)]
pub struct Account {
    /// Unique; letters, digits, '-' and '_'.
    pub name: String,
    pub appid: String,
    pub kind: AccountKind,
    pub preset: PresetName,
    /// The AppSecret, from secret_file, secret_env or secret.
    pub secret: Secret,
    pub clear_via: ClearVia,
    /// The preset's table with `[accounts.limits]` applied.
    pub limits: LimitTable,
    /// `[policy]` with `[accounts.policy]` applied.
    pub policy: Policy,
}

impl Account {
    /// Changes whenever something that could fix a config-level WeChat error changes
    /// (appid, secret, how clears are sent). An account in `error` leaves it when this
    /// differs from the value recorded with the error. SHA-256 (stable across builds and
    /// releases, unlike std's hasher) over the fields with a domain prefix, cut to 64
    /// bits: enough to notice a change, and no use for recovering the secret.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            "wxquotad account fingerprint v1",
            &self.appid,
            self.secret.expose(),
            self.clear_via.as_str(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The quotas that can trigger a clear: the watch list, or every quota with a limit.
    pub fn watched(&self) -> Vec<&LimitEntry> {
        self.limits
            .entries()
            .iter()
            .filter(|e| e.limit.is_some())
            .filter(|e| {
                self.policy.watch.is_empty()
                    || e.paths.iter().any(|p| self.policy.watch.contains(p))
            })
            .collect()
    }
}

/// Something the config should not do but may (e.g. a world-readable secret file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing wrong with the config, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the spot is known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `accounts[0].policy.threshold`, when known.
    pub key: Option<String>,
    /// The account's name, when the error is in an account.
    pub account: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        f.write_str(": ")?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        if let Some(a) = &self.account {
            write!(f, "account {a:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one file (validation does not stop at the first).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How to load: `simulate` is set by `run --simulate` and `sim`, where a secret that
/// cannot be resolved (a missing secret_file, an unset secret_env) is replaced by a
/// made-up one with a warning, since the simulator needs no real credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub simulate: bool,
}

/// Reads, parses and validates the config at `path`, resolving secrets.
pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    load_with(path, LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(path: &Path, opts: LoadOptions) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    validate::load(path, opts)
}

/// The path to use: `--config`, else `$WXQUOTAD_CONFIG`, else [`DEFAULT_PATH`]
/// (clap fills in the first two).
pub fn resolve_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

impl ClearVia {
    /// The config spelling: "auto", "token" or "appsecret".
    pub fn as_str(self) -> &'static str {
        match self {
            ClearVia::Auto => "auto",
            ClearVia::Token => "token",
            ClearVia::AppSecret => "appsecret",
        }
    }
}

/// A short human summary for `wxquotad check`: the daemon's settings and one line per
/// account. Never holds a secret.
pub fn summary(config: &Config) -> String {
    use std::fmt::Write;
    let d = &config.daemon;
    let mut out = String::new();
    let _ = writeln!(out, "config {}: ok", config.path.display());
    let auth = if d.api_token.is_some() {
        "bearer token required"
    } else {
        "no token"
    };
    let _ = writeln!(out, "listen      {} ({auth})", d.listen);
    let _ = writeln!(out, "state_dir   {}", d.state_dir.display());
    let _ = writeln!(out, "dry_run     {}", d.dry_run);
    if let Some(t) = &d.traffic_log {
        let _ = writeln!(
            out,
            "traffic log {} (at most {} bytes)",
            t.display(),
            d.traffic_log_max
        );
    }
    if !d.allowed_hosts.is_empty() {
        let _ = writeln!(out, "hosts       {}", d.allowed_hosts.join(", "));
    }
    let _ = writeln!(
        out,
        "wechat      {} (timeout {})",
        config.wechat.base_url,
        humantime::format_duration(config.wechat.timeout)
    );
    let poll = if config.poll.interval.is_zero() {
        "disabled".to_string()
    } else if config.poll.apis.is_empty() {
        format!(
            "every {}, the watched interfaces",
            humantime::format_duration(config.poll.interval)
        )
    } else {
        format!(
            "every {}, {} interfaces",
            humantime::format_duration(config.poll.interval),
            config.poll.apis.len()
        )
    };
    let _ = writeln!(out, "poll        {poll}");
    match &config.proxy {
        None => {
            let _ = writeln!(out, "proxy       off");
        }
        Some(p) => {
            let allow: Vec<String> = p.allow.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                out,
                "proxy       {} ({}), allow {}, hold {}, timeout {}, max_retry_body {} bytes",
                p.listen,
                if p.tls.is_some() { "https" } else { "http" },
                allow.join(" "),
                humantime::format_duration(p.hold),
                humantime::format_duration(p.timeout),
                p.max_retry_body
            );
        }
    }
    let _ = writeln!(out, "alerts      {}", config.alerts.len());
    let _ = writeln!(out, "accounts    {}", config.accounts.len());
    for a in &config.accounts {
        let p = &a.policy;
        let _ = writeln!(
            out,
            "  {} {} {} preset={} clear_via={} watched={} threshold={} reserve={} monthly_clears={} \
             api_clears={}",
            a.name,
            a.appid,
            a.kind.as_str(),
            a.preset.as_str(),
            a.clear_via.as_str(),
            a.watched().len(),
            p.threshold,
            p.reserve,
            p.monthly_clears,
            if p.api_clears {
                format!("{} (reserve {})", p.monthly_api_clears, p.api_reserve)
            } else {
                "off".into()
            }
        );
    }
    if !config.platforms.is_empty() {
        let _ = writeln!(out, "platforms   {}", config.platforms.len());
    }
    for p in &config.platforms {
        let discover = if p.discover.is_zero() {
            "pushes only".to_string()
        } else {
            format!("discover every {}", humantime::format_duration(p.discover))
        };
        let _ = writeln!(
            out,
            "  {} {} preset={} {discover} named_authorizers={}",
            p.name,
            p.component_appid,
            p.preset.as_str(),
            p.authorizers.len()
        );
    }
    out
}
