//! `[proxy]`: the counting proxy's listen address, client networks, TLS files, hold,
//! timeout and the largest body kept for a retry.

use std::net::SocketAddr;

use super::file::{ByteSize, ProxyFile};
use super::*;

const DEFAULT_LISTEN: &str = "127.0.0.1:9480";
/// Largest `max_retry_body`: bodies kept for a retry are held in memory.
const MAX_RETRY_BODY_LIMIT: u64 = 64 * 1024 * 1024;

impl Validator<'_> {
    pub(super) fn proxy(
        &mut self,
        p: ProxyFile,
        api_listen: SocketAddr,
        wechat_timeout: Duration,
    ) -> ProxySettings {
        let k = KeyPath::root().key("proxy");
        let listen = self.listen_addr(&k.key("listen"), p.listen.as_deref(), DEFAULT_LISTEN);
        if listen == api_listen && listen.port() != 0 {
            self.error(
                &k.key("listen"),
                None,
                format!("listen {listen} is also [daemon] listen; expected a port of its own"),
            );
        }
        let mut settings = ProxySettings::new(listen, wechat_timeout);
        match p.allow {
            None if !listen.ip().is_loopback() => self.error(
                &k.key("listen"),
                None,
                format!(
                    "listen address {listen} is not loopback, so allow must list the client \
                     networks (e.g. allow = [\"10.0.0.0/8\"])"
                ),
            ),
            None => {}
            Some(list) => {
                settings.allow.clear();
                for (i, raw) in list.iter().enumerate() {
                    match Cidr::parse(raw) {
                        Ok(c) => settings.allow.push(c),
                        Err(e) => self.error(&k.key("allow").index(i), None, e),
                    }
                }
            }
        }
        settings.tls = match (p.tls_cert_file, p.tls_key_file) {
            (None, None) => None,
            (Some(_), None) => {
                self.error(
                    &k.key("tls_cert_file"),
                    None,
                    "tls_cert_file is set but tls_key_file is not; set both to serve HTTPS".into(),
                );
                None
            }
            (None, Some(_)) => {
                self.error(
                    &k.key("tls_key_file"),
                    None,
                    "tls_key_file is set but tls_cert_file is not; set both to serve HTTPS".into(),
                );
                None
            }
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: self.resolve(&cert),
                    key: self.resolve(&key),
                };
                for (name, path) in [("tls_cert_file", &files.cert), ("tls_key_file", &files.key)] {
                    // A regular file, read without blocking (a FIFO would hang
                    // `check` and start-up) and bounded: PEM files are a few KiB.
                    if let Err(e) = read::read_regular(path, read::MAX_PEM_BYTES) {
                        self.error(&k.key(name), None, e);
                    }
                }
                self.check_private(&files.key, &k.key("tls_key_file"), None, "TLS key file");
                Some(files)
            }
        };
        if settings.tls.is_none() && !listen.ip().is_loopback() {
            self.warn(
                &k.key("listen"),
                None,
                format!(
                    "the proxy serves plain HTTP on {listen}: access tokens and AppSecrets \
                     cross the network unencrypted; set tls_cert_file and tls_key_file"
                ),
            );
        }
        settings.hold = self.duration(
            p.hold.as_deref(),
            settings.hold,
            DurationRange::new(Duration::ZERO, 5 * MINUTE),
            &k.key("hold"),
            None,
        );
        settings.timeout = self.duration(
            p.timeout.as_deref(),
            wechat_timeout,
            DurationRange::new(Duration::from_millis(100), 10 * MINUTE),
            &k.key("timeout"),
            None,
        );
        if let Some(size) = p.max_retry_body {
            let key = k.key("max_retry_body");
            match byte_size(&size) {
                Ok(n) if n <= MAX_RETRY_BODY_LIMIT => settings.max_retry_body = n,
                Ok(_) => self.error(
                    &key,
                    None,
                    "max_retry_body must be at most \"64MiB\" (kept bodies are held in memory)"
                        .into(),
                ),
                Err(e) => self.error(&key, None, e),
            }
        }
        settings
    }
}

/// "1MiB", "512KiB", "10MB", "2048" or 2048 → bytes.
pub(super) fn byte_size(size: &ByteSize) -> Result<u64, String> {
    let text = match size {
        ByteSize::Bytes(n) => {
            return u64::try_from(*n)
                .map_err(|_| format!("max_retry_body must not be negative, got {n}"))
        }
        ByteSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => u64::MAX,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| unit_bytes != u64::MAX)
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| {
            format!(
                "max_retry_body must be a size like \"1MiB\", \"512KiB\" or 65536, got {text:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_units_or_bytes() {
        let t = |s: &str| byte_size(&ByteSize::Text(s.into()));
        assert_eq!(t("1MiB"), Ok(1 << 20));
        assert_eq!(t("512KiB"), Ok(512 << 10));
        assert_eq!(t("10MB"), Ok(10_000_000));
        assert_eq!(t("2048"), Ok(2048));
        assert_eq!(byte_size(&ByteSize::Bytes(7)), Ok(7));
        assert!(t("1 parsec").unwrap_err().contains("like \"1MiB\""));
        assert!(t("MiB").is_err());
        assert!(byte_size(&ByteSize::Bytes(-1)).is_err());
    }
}
