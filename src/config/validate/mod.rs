//! Loading and validation: reads the file, parses it into the `file` types, checks every
//! rule of SPEC §3 (collecting all errors, each located), resolves secrets and builds
//! the runtime [`Config`]. One file per config section (each adds its own method to
//! [`Validator`]); this one holds the shared checks (choices, counts, durations, paths).

mod accounts;
mod alerts;
mod daemon;
mod parse;
mod platforms;
mod policy;
mod poll;
mod proxy;
#[cfg(test)]
mod tests;
mod wechat;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::file::{AccountFile, AlertFile, FileConfig, PolicyFile};
use super::locate::{self, line_col, KeyPath, Locator};
use super::read::{self, read_secret_file};
use super::*;
pub(super) use accounts::is_appid;

pub(super) fn load(path: &Path, opts: LoadOptions) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let bare = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        account: None,
        message,
    };
    let bytes = read::read_regular(path, read::MAX_CONFIG_BYTES)
        .map_err(|e| ConfigErrors(vec![bare(e)]))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigErrors(vec![bare("the config file is not UTF-8 text".into())]))?;
    let loc = Locator::new(&text);
    let file: FileConfig = parse::parse(path, &text, &loc).map_err(ConfigErrors)?;
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

/// The name part of the last key of `key`, for messages ("threshold must ...").
fn leaf(key: &KeyPath) -> String {
    match key.segs().last() {
        Some(locate::Seg::Key(k)) => k.clone(),
        _ => key.to_string(),
    }
}

/// The values a duration key accepts: from `min` to `max`, and zero too when `zero_ok`
/// (where "0s" means "off" or "none").
#[derive(Clone, Copy)]
struct DurationRange {
    min: Duration,
    max: Duration,
    zero_ok: bool,
}

impl DurationRange {
    const fn new(min: Duration, max: Duration) -> DurationRange {
        DurationRange {
            min,
            max,
            zero_ok: min.is_zero(),
        }
    }

    /// Zero (off), or from `min` to `max`.
    const fn off_or(min: Duration, max: Duration) -> DurationRange {
        DurationRange {
            min,
            max,
            zero_ok: true,
        }
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

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
        let proxy = f
            .proxy
            .map(|p| self.proxy(p, daemon.listen, wechat.timeout));
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
        let platforms = self.platforms(f.platforms, &policy, &accounts);
        Config {
            path: self.file.to_path_buf(),
            daemon,
            wechat,
            poll,
            proxy,
            alerts,
            accounts,
            platforms,
        }
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

    /// A count in `range`; `current` when absent or invalid.
    fn count(
        &mut self,
        raw: Option<i64>,
        current: u32,
        range: std::ops::RangeInclusive<u32>,
        key: &KeyPath,
        account: Option<&str>,
    ) -> u32 {
        let Some(n) = raw else { return current };
        match u32::try_from(n) {
            Ok(v) if range.contains(&v) => v,
            _ => {
                let (min, max) = (range.start(), range.end());
                let want = if *max == u32::MAX {
                    format!("a whole number of at least {min}")
                } else {
                    format!("a whole number from {min} to {max}")
                };
                self.error(
                    key,
                    account,
                    format!("{} must be {want}, got {n}", leaf(key)),
                );
                current
            }
        }
    }

    /// A duration like "30s", "10m" or "2h" within `range` (every duration has one, so an
    /// absurd value such as "60000000000000d" is refused here, not found by an overflow
    /// later); `default` when absent or invalid.
    fn duration(
        &mut self,
        raw: Option<&str>,
        default: Duration,
        range: DurationRange,
        key: &KeyPath,
        account: Option<&str>,
    ) -> Duration {
        let Some(raw) = raw else { return default };
        let d = match humantime::parse_duration(raw.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    key,
                    account,
                    format!(
                        "{} must be a duration like \"30s\", \"10m\" or \"2h\", got {raw:?} ({e})",
                        leaf(key)
                    ),
                );
                return default;
            }
        };
        if d.is_zero() && range.zero_ok {
            return d;
        }
        if d.is_zero() && !range.zero_ok && range.min > Duration::ZERO {
            self.error(
                key,
                account,
                format!(
                    "{} must be longer than zero, e.g. \"10s\"; got {raw:?}",
                    leaf(key)
                ),
            );
            return default;
        }
        if d < range.min || d > range.max {
            let off = if range.zero_ok && !range.min.is_zero() {
                " (or \"0s\")"
            } else {
                ""
            };
            self.error(
                key,
                account,
                format!(
                    "{} must be from {} to {}{off}, got {raw:?}",
                    leaf(key),
                    config_duration(range.min),
                    config_duration(range.max)
                ),
            );
            return default;
        }
        d
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

/// A duration as the config would write it, in its largest whole unit ("31d", "100ms")
/// when there is one; humantime's own format says "1month 13h 26m 24s" for 31 days.
fn config_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        // A whole number of a unit, short enough to read ("86399s" is not).
        if ms >= size && ms % size == 0 && ms / size < 1000 {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(d).to_string()
}
