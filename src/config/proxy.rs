//! `[proxy]` (SPEC §3, §7): the counting proxy's runtime settings, and the client
//! networks (CIDR blocks) its `allow` list is made of.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `[proxy]`, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Where the proxy serves WeChat's API. Default 127.0.0.1:9480.
    pub listen: SocketAddr,
    /// Client networks allowed; others get 403. Default loopback only
    /// (127.0.0.0/8, ::1/128); must be set for a non-loopback listen.
    pub allow: Vec<Cidr>,
    /// Serve HTTPS with this certificate chain and key (PEM), when both are set.
    pub tls: Option<TlsFiles>,
    /// How long a 45009 answer may wait for the clear it triggered, then the retry.
    /// Default 5 s.
    pub hold: Duration,
    /// How long a proxied call waits for WeChat's answer (status and headers).
    /// Default: `[wechat] timeout`.
    pub timeout: Duration,
    /// Request bodies up to this many bytes are kept so the call can be re-sent
    /// (after a clear, with a new token, to a fallback host); larger ones are streamed
    /// and never re-sent. Default 1 MiB.
    pub max_retry_body: u64,
}

/// `tls_cert_file` and `tls_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ProxySettings {
    /// The defaults, listening on `listen`, with `timeout` (the `[wechat]` one).
    pub fn new(listen: SocketAddr, timeout: Duration) -> ProxySettings {
        ProxySettings {
            listen,
            allow: Cidr::loopback(),
            tls: None,
            hold: Duration::from_secs(5),
            timeout,
            max_retry_body: 1024 * 1024,
        }
    }

    /// Whether a client at `ip` may use the proxy.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

/// One network, e.g. `10.0.0.0/8` or `::1/128`. A bare address is a /32 (/128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// 127.0.0.0/8 and ::1/128.
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr::parse("127.0.0.0/8").expect("valid"),
            Cidr::parse("::1/128").expect("valid"),
        ]
    }

    /// Parses `ADDR/PREFIX` or a bare address. The error says what is wrong.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (e.g. \"10.0.0.0/8\")"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network. An IPv4 address seen as IPv6
    /// (`::ffff:10.0.0.1`, a dual-stack listener) is matched as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_their_networks_only() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.9.9")));
        assert!(!net.contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("0 to 128"));
        assert!(Cidr::parse("ten/8")
            .unwrap_err()
            .contains("not an IP network"));
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }

    #[test]
    fn loopback_is_the_default() {
        let s = ProxySettings::new("127.0.0.1:9480".parse().unwrap(), Duration::from_secs(10));
        assert!(s.allows(ip("127.0.0.1")) && s.allows(ip("::1")));
        assert!(!s.allows(ip("10.0.0.1")));
    }
}
