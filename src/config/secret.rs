//! Secrets (AppSecrets, access tokens, API tokens) in a type that never prints them.

use std::fmt;

/// A secret string. `Debug` and `Display` print a mask, so a secret that ends up in a
/// log line, an error or a status document shows `***` instead of its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (a request to WeChat).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("abc123secret");
        assert!(!format!("{s:?} {s}").contains("abc123secret"));
        assert_eq!(s.expose(), "abc123secret");
    }
}
