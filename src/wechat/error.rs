//! WeChat's `{errcode, errmsg}` and transport failures as one typed error, and the one
//! `action()` that says what to do about each (SPEC §5).

/// A failed request to WeChat. Never holds a token, a secret or a URL with a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// A non-2xx HTTP status.
    #[error("WeChat answered HTTP {status}")]
    Http { status: u16 },
    /// No complete answer within the configured timeout.
    #[error("WeChat did not answer within the timeout")]
    Timeout,
    /// An answer that is not the JSON expected.
    #[error("WeChat's answer could not be read: {0}")]
    Unreadable(String),
    /// The request could not be sent at all (connection refused, DNS, TLS set-up).
    #[error("could not reach WeChat: {0}")]
    Connect(String),
}

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient (-1, 5xx, timeout, unreadable body, unreachable): retry with backoff.
    Retry,
    /// The token is invalid or expired (40001, 40014, 42001): get a new one, once.
    RenewToken,
    /// No clears left this month (48006).
    MonthExhausted,
    /// The daily cap of this API itself was hit (45009): no point retrying today.
    /// From the token API this is the "token needs quota" dead end (use v2).
    QuotaExceeded,
    /// A config-level problem (40013, 40125, 40164, 61004, 41002, 41004, 50002): stop
    /// automatic clears for the account until its config changes, and alert.
    Misconfigured,
    /// Anything else: give up this attempt, report it.
    GiveUp,
}

impl WechatError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            WechatError::Api { errcode, .. } => match errcode {
                -1 => Action::Retry,
                40001 | 40014 | 42001 => Action::RenewToken,
                48006 => Action::MonthExhausted,
                45009 => Action::QuotaExceeded,
                40013 | 40125 | 40164 | 61004 | 41002 | 41004 | 50002 => Action::Misconfigured,
                _ => Action::GiveUp,
            },
            WechatError::Http { status } if *status >= 500 => Action::Retry,
            WechatError::Http { .. } => Action::GiveUp,
            WechatError::Timeout | WechatError::Unreadable(_) | WechatError::Connect(_) => {
                Action::Retry
            }
        }
    }

    /// Whether a request that failed this way may still have taken effect at WeChat.
    /// For clear_quota this decides whether the attempt counts as spent: an answer
    /// WeChat itself gave (an errcode) or a request that never left did not; a lost,
    /// cut or unreadable answer might have (SPEC §6: unknown counts as spent).
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            WechatError::Api { .. } | WechatError::Connect(_) => false,
            WechatError::Http { .. } | WechatError::Timeout | WechatError::Unreadable(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64) -> WechatError {
        WechatError::Api {
            errcode: code,
            errmsg: "x".into(),
        }
    }

    #[test]
    fn classifies_by_errcode_as_spec_5_says() {
        assert_eq!(api(-1).action(), Action::Retry);
        for c in [40001, 40014, 42001] {
            assert_eq!(api(c).action(), Action::RenewToken, "{c}");
        }
        assert_eq!(api(48006).action(), Action::MonthExhausted);
        assert_eq!(api(45009).action(), Action::QuotaExceeded);
        for c in [40013, 40125, 40164, 41002, 41004, 50002, 61004] {
            assert_eq!(api(c).action(), Action::Misconfigured, "{c}");
        }
        assert_eq!(api(99999).action(), Action::GiveUp);
        assert_eq!(WechatError::Http { status: 502 }.action(), Action::Retry);
        assert_eq!(WechatError::Http { status: 404 }.action(), Action::GiveUp);
        assert_eq!(WechatError::Timeout.action(), Action::Retry);
        assert_eq!(WechatError::Unreadable("x".into()).action(), Action::Retry);
    }

    #[test]
    fn only_lost_or_unreadable_answers_may_have_taken_effect() {
        assert!(!api(-1).may_have_taken_effect());
        assert!(!WechatError::Connect("refused".into()).may_have_taken_effect());
        assert!(WechatError::Timeout.may_have_taken_effect());
        assert!(WechatError::Http { status: 500 }.may_have_taken_effect());
        assert!(WechatError::Unreadable("eof".into()).may_have_taken_effect());
    }
}
