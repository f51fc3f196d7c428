//! `[policy]` and `[accounts.policy]`: when a clear may be spent.

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

impl Validator<'_> {
    /// `base` with the keys `f` sets applied, each checked; an invalid value keeps
    /// `base`'s. `k` is the table's key path (`policy` or `accounts[i].policy`).
    pub(super) fn policy(
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
}
