//! `[daemon]`: listen address, state_dir, API token, log format, traffic log.

use super::*;

/// `traffic_log_max` by default, and its bounds (bytes).
const DEFAULT_TRAFFIC_LOG_MAX: u64 = 64 << 20;
const TRAFFIC_LOG_MAX_RANGE: (u64, u64) = (1 << 20, 4 << 30);

const DEFAULT_LISTEN: &str = "127.0.0.1:9477";
const DEFAULT_STATE_DIR: &str = "/var/lib/wxquotad";

/// `$STATE_DIRECTORY` (its first entry: systemd joins several with ':'), else
/// /var/lib/wxquotad.
pub(super) fn default_state_dir(env: Option<OsString>) -> PathBuf {
    let env = env
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match env.split(':').next() {
        Some(first) if !first.is_empty() => PathBuf::from(first),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

impl Validator<'_> {
    pub(super) fn daemon(
        &mut self,
        d: super::file::DaemonFile,
        state_env: Option<OsString>,
    ) -> DaemonSettings {
        let k = KeyPath::root().key("daemon");
        let listen = self.listen_addr(&k.key("listen"), d.listen.as_deref(), DEFAULT_LISTEN);
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
            allowed_hosts: self.allowed_hosts(d.allowed_hosts.unwrap_or_default(), &k),
            traffic_log: match d.traffic_log {
                Some(p) if p.as_os_str().is_empty() => {
                    self.error(
                        &k.key("traffic_log"),
                        None,
                        "traffic_log must be a file path, got an empty string (leave it out to record nothing)".into(),
                    );
                    None
                }
                p => p.map(|p| self.resolve(&p)),
            },
            traffic_log_max: match d.traffic_log_max {
                None => DEFAULT_TRAFFIC_LOG_MAX,
                Some(size) => match super::proxy::byte_size(&size) {
                    Ok(n) if (TRAFFIC_LOG_MAX_RANGE.0..=TRAFFIC_LOG_MAX_RANGE.1).contains(&n) => n,
                    Ok(_) => {
                        self.error(
                            &k.key("traffic_log_max"),
                            None,
                            "traffic_log_max must be from \"1MiB\" to \"4GiB\"".into(),
                        );
                        DEFAULT_TRAFFIC_LOG_MAX
                    }
                    Err(e) => {
                        self.error(&k.key("traffic_log_max"), None, e);
                        DEFAULT_TRAFFIC_LOG_MAX
                    }
                },
            },
        }
    }

    /// Host names (or IP addresses) without a port, lowercased, each once.
    fn allowed_hosts(&mut self, raw: Vec<String>, k: &KeyPath) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let key = k.key("allowed_hosts").index(i);
            let host = h.trim().to_ascii_lowercase();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            let ip_ok = bare.parse::<std::net::IpAddr>().is_ok();
            if !(name_ok || ip_ok) {
                self.error(
                    &key,
                    None,
                    format!(
                        "allowed_hosts entries must be host names or IP addresses without a \
                         port, like \"wxquotad.internal\"; got {h:?}"
                    ),
                );
            } else if out.iter().any(|o| o == bare) {
                self.error(
                    &key,
                    None,
                    format!("{h:?} is listed twice; expected each once"),
                );
            } else {
                out.push(bare.to_string());
            }
        }
        out
    }
}

impl Validator<'_> {
    /// A `listen` key: `value` parsed as an IP address and port, else `default` (which
    /// is also what a bad value falls back to, after the error naming it).
    pub(super) fn listen_addr(
        &mut self,
        key: &KeyPath,
        value: Option<&str>,
        default: &str,
    ) -> SocketAddr {
        let default_addr: SocketAddr = default.parse().expect("valid default");
        let Some(s) = value else {
            return default_addr;
        };
        s.trim().parse().unwrap_or_else(|_| {
            self.error(
                key,
                None,
                format!("listen must be an IP address and port like \"{default}\", got {s:?}"),
            );
            default_addr
        })
    }
}
