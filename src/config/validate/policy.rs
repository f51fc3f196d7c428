//! `[policy]` and `[accounts.policy]`: when a clear may be spent.

use super::*;

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
        if let Some(b) = f.api_clears {
            p.api_clears = b;
        }
        if let Some(b) = f.confirm_45009 {
            p.confirm_45009 = b;
        }
        p.reserve = self.count(
            f.reserve,
            p.reserve,
            0..=u32::MAX,
            &k.key("reserve"),
            account,
        );
        p.monthly_clears = self.count(
            f.monthly_clears,
            p.monthly_clears,
            1..=WECHAT_MONTHLY_CLEARS,
            &k.key("monthly_clears"),
            account,
        );
        p.api_reserve = self.count(
            f.api_reserve,
            p.api_reserve,
            0..=u32::MAX,
            &k.key("api_reserve"),
            account,
        );
        p.monthly_api_clears = self.count(
            f.monthly_api_clears,
            p.monthly_api_clears,
            1..=WECHAT_MONTHLY_API_CLEARS,
            &k.key("monthly_api_clears"),
            account,
        );
        p.max_clears_per_day = self.count(
            f.max_clears_per_day,
            p.max_clears_per_day,
            1..=u32::MAX,
            &k.key("max_clears_per_day"),
            account,
        );
        p.min_interval = self.duration(
            f.min_interval.as_deref(),
            p.min_interval,
            DurationRange::new(Duration::ZERO, 31 * DAY),
            &k.key("min_interval"),
            account,
        );
        p.quiet_before_reset = self.duration(
            f.quiet_before_reset.as_deref(),
            p.quiet_before_reset,
            // Shorter than a day, or no automatic clear could ever happen.
            DurationRange::new(Duration::ZERO, DAY - SECOND),
            &k.key("quiet_before_reset"),
            account,
        );
        if let Some(w) = &f.watch {
            p.watch = self.paths(w, &k.key("watch"), account);
        }
        self.reserve_below_budget(
            (f.reserve.is_some(), "reserve", p.reserve),
            (
                f.monthly_clears.is_some(),
                "monthly_clears",
                p.monthly_clears,
            ),
            k,
            account,
        );
        self.reserve_below_budget(
            (f.api_reserve.is_some(), "api_reserve", p.api_reserve),
            (
                f.monthly_api_clears.is_some(),
                "monthly_api_clears",
                p.monthly_api_clears,
            ),
            k,
            account,
        );
        p
    }

    /// A reserve must stay below its budget, or no clear of that kind could ever be spent
    /// automatically. Checked when this table sets either (`(set, key, value)`); the
    /// error points at the reserve when it is set here, else at the budget.
    fn reserve_below_budget(
        &mut self,
        reserve: (bool, &str, u32),
        budget: (bool, &str, u32),
        k: &KeyPath,
        account: Option<&str>,
    ) {
        if !(reserve.0 || budget.0) || reserve.2 < budget.2 {
            return;
        }
        let which = if reserve.0 { reserve.1 } else { budget.1 };
        self.error(
            &k.key(which),
            account,
            format!(
                "{r} must be less than {b} (or no clear could ever be spent \
                 automatically), got {r} = {} and {b} = {}",
                reserve.2,
                budget.2,
                r = reserve.1,
                b = budget.1
            ),
        );
    }
}
