//! Pure decisions on what one try at WeChat came to: may the call be sent again (the
//! "never twice" rule, SPEC §6), and what it counts (SPEC §7).

/// What one try at WeChat came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried {
    /// Nothing reached WeChat: no connection could be made.
    NotSent,
    /// The request was sent (or being sent) and no answer came: a timeout, a reset,
    /// a connection dropped. WeChat may have executed it.
    NoAnswer,
    /// WeChat answered: the HTTP status and, for a JSON answer, its `errcode`.
    Answered { status: u16, errcode: Option<i64> },
}

/// Whether a call may be sent once more, and on what condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Never: WeChat may have executed it (or did), so its answer goes back.
    Never,
    /// To the next host at once: nothing was sent.
    NextHost,
    /// Once, after a clear that worked: WeChat refused it unexecuted (45009).
    AfterClear,
    /// Once, with a new token: WeChat refused a token the proxy handed out (40001, 42001).
    WithNewToken,
}

/// The one "never twice" rule: a call goes to WeChat again only when the first try
/// certainly was not executed. Timeouts, resets, 5xx and any other answer go back.
pub fn resend(tried: Tried, token_is_ours: bool) -> Resend {
    match tried {
        Tried::NotSent => Resend::NextHost,
        Tried::NoAnswer => Resend::Never,
        Tried::Answered {
            status: 200,
            errcode: Some(45009),
        } => Resend::AfterClear,
        Tried::Answered {
            status: 200,
            errcode: Some(40001 | 42001),
        } if token_is_ours => Resend::WithNewToken,
        Tried::Answered { .. } => Resend::Never,
    }
}

/// What a try adds to the account's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// One executed (or possibly executed) call.
    One,
    /// Not executed, and the path is blocked for the day (45009).
    Blocked,
    /// Not executed: nothing was sent, or WeChat refused it for quota or token reasons.
    Nothing,
}

/// SPEC §7: one per forwarded call unless WeChat rejected it for quota or token
/// reasons (45009, 45011, 40001, 40014, 42001); an unknown outcome counts.
pub fn count(tried: Tried) -> Count {
    match tried {
        Tried::NotSent => Count::Nothing,
        Tried::NoAnswer => Count::One,
        Tried::Answered {
            errcode: Some(45009),
            ..
        } => Count::Blocked,
        Tried::Answered {
            errcode: Some(45011 | 40001 | 40014 | 42001),
            ..
        } => Count::Nothing,
        Tried::Answered { .. } => Count::One,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(errcode: i64) -> Tried {
        Tried::Answered {
            status: 200,
            errcode: Some(errcode),
        }
    }

    #[test]
    fn nothing_sent_goes_to_the_next_host() {
        assert_eq!(resend(Tried::NotSent, false), Resend::NextHost);
        assert_eq!(count(Tried::NotSent), Count::Nothing);
    }

    #[test]
    fn a_timeout_or_reset_is_never_resent_and_counts() {
        assert_eq!(resend(Tried::NoAnswer, true), Resend::Never);
        assert_eq!(count(Tried::NoAnswer), Count::One);
    }

    #[test]
    fn a_5xx_is_never_resent_and_counts() {
        for status in [500, 502, 503, 504] {
            let t = Tried::Answered {
                status,
                errcode: None,
            };
            assert_eq!(resend(t, true), Resend::Never, "{status}");
            assert_eq!(count(t), Count::One, "{status}");
        }
    }

    #[test]
    fn system_busy_and_other_errcodes_are_never_resent() {
        for code in [-1, 0, 40003, 45011, 40014, 48001, 45047] {
            assert_eq!(resend(answered(code), true), Resend::Never, "{code}");
        }
        assert_eq!(count(answered(-1)), Count::One);
        assert_eq!(count(answered(40003)), Count::One);
        assert_eq!(count(answered(0)), Count::One);
    }

    #[test]
    fn a_45009_waits_for_a_clear_and_marks_the_path_blocked() {
        assert_eq!(resend(answered(45009), false), Resend::AfterClear);
        assert_eq!(count(answered(45009)), Count::Blocked);
        // Not WeChat's own quota answer: a 45009 inside a 5xx page is not trusted.
        let odd = Tried::Answered {
            status: 500,
            errcode: Some(45009),
        };
        assert_eq!(resend(odd, false), Resend::Never);
    }

    #[test]
    fn a_bad_token_is_resent_only_when_the_proxy_handed_it_out() {
        for code in [40001, 42001] {
            assert_eq!(resend(answered(code), true), Resend::WithNewToken);
            assert_eq!(resend(answered(code), false), Resend::Never);
            assert_eq!(count(answered(code)), Count::Nothing);
        }
    }

    #[test]
    fn quota_and_token_refusals_do_not_count() {
        for code in [45011, 40001, 40014, 42001] {
            assert_eq!(count(answered(code)), Count::Nothing, "{code}");
        }
    }
}
