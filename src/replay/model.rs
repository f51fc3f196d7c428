//! The minute model of `wxquotad replay` (SPEC §9), pure: every counter is 0 at 00:00
//! UTC+8; in each minute each quota serves `min(calls, limit − used)` and rejects the
//! rest (45009); a clear made in minute m resets from minute m + 1 (with `proxy`, the
//! calls it rejected in m are retried after the clear). Used for the "no clears" line,
//! to score the oracle's schedules, and by the driver for each minute it serves.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::traffic::{minute_start, Minute};
use crate::config::LimitTable;
use crate::time::day_of;

/// One quota of an account: the path naming it (the first of the paths sharing one
/// limit, as in the presets) and its daily limit (`None`: never rejects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub key: String,
    pub limit: Option<u64>,
}

/// An account's demand at quota granularity: calls per minute per quota index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDemand {
    pub quotas: Vec<Quota>,
    /// Minute → (quota index, calls), each quota at most once per minute.
    pub minutes: BTreeMap<Minute, Vec<(usize, u64)>>,
}

impl AccountDemand {
    /// Groups `by_path` (calls per minute per API path) by the quotas of `limits`;
    /// paths sharing one limit (e.g. the two mass-send paths) add up.
    pub fn new(limits: &LimitTable, by_path: &BTreeMap<Minute, BTreeMap<String, u64>>) -> Self {
        let mut d = AccountDemand::default();
        for (&minute, paths) in by_path {
            let mut row: Vec<(usize, u64)> = Vec::new();
            for (path, &calls) in paths {
                let (key, limit) = match limits.entry_for(path) {
                    Some(e) => (e.key().to_string(), e.limit),
                    None => (path.clone(), None),
                };
                let q = match d.quotas.iter().position(|q| q.key == key) {
                    Some(q) => q,
                    None => {
                        d.quotas.push(Quota { key, limit });
                        d.quotas.len() - 1
                    }
                };
                match row.iter_mut().find(|(i, _)| *i == q) {
                    Some((_, c)) => *c = c.saturating_add(calls),
                    None => row.push((q, calls)),
                }
            }
            d.minutes.insert(minute, row);
        }
        d
    }

    /// The indices of quotas with a limit that some minute's demand reaches.
    pub fn limited(&self) -> Vec<usize> {
        (0..self.quotas.len())
            .filter(|&q| self.quotas[q].limit.is_some())
            .collect()
    }
}

/// What a clear resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClearKind {
    /// clear_quota: every counter of the account.
    Account,
    /// clearApiQuota: one quota (by index).
    Api(usize),
}

/// One clear: made in `minute`, effective from the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clear {
    pub minute: Minute,
    pub kind: ClearKind,
}

/// One WeChat day of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayStats {
    pub wanted: u64,
    pub served: u64,
    pub rejected: u64,
    /// Minutes with at least one rejected call.
    pub blocked_minutes: u64,
    pub clears: u32,
}

impl DayStats {
    pub fn add(&mut self, o: &DayStats) {
        self.wanted += o.wanted;
        self.served += o.served;
        self.rejected += o.rejected;
        self.blocked_minutes += o.blocked_minutes;
        self.clears += o.clears;
    }
}

/// Sums days into one line.
pub fn total<'a>(days: impl IntoIterator<Item = &'a DayStats>) -> DayStats {
    let mut t = DayStats::default();
    for d in days {
        t.add(d);
    }
    t
}

/// Serves `calls` against a counter at `used` under `limit`: returns the calls served
/// (the rest are rejected) and moves the counter.
pub fn serve(used: &mut u64, limit: Option<u64>, calls: u64) -> u64 {
    let served = match limit {
        Some(l) => calls.min(l.saturating_sub(*used)),
        None => calls,
    };
    *used = used.saturating_add(served);
    served
}

/// The counters of one account for one WeChat day.
#[derive(Debug, Clone)]
pub struct Counters {
    day: Option<NaiveDate>,
    used: Vec<u64>,
}

impl Counters {
    pub fn new(quotas: usize) -> Counters {
        Counters {
            day: None,
            used: vec![0; quotas],
        }
    }

    /// Starts the day of `minute` (all counters 0) if it is a new one.
    pub fn roll(&mut self, minute: Minute) {
        let day = day_of(minute_start(minute));
        if self.day != Some(day) {
            self.day = Some(day);
            self.used.iter_mut().for_each(|u| *u = 0);
        }
    }

    pub fn used(&self, q: usize) -> u64 {
        self.used[q]
    }

    pub fn used_mut(&mut self, q: usize) -> &mut u64 {
        &mut self.used[q]
    }

    pub fn apply(&mut self, kind: ClearKind) {
        match kind {
            ClearKind::Account => self.used.iter_mut().for_each(|u| *u = 0),
            ClearKind::Api(q) => self.used[q] = 0,
        }
    }
}

/// Runs the model over `demand` with the clears of `schedule` (sorted by minute) and
/// returns each day's figures. `retry`: the `proxy` source, where calls rejected in a
/// minute with a clear are retried after it.
pub fn evaluate(
    demand: &AccountDemand,
    schedule: &[Clear],
    retry: bool,
) -> BTreeMap<NaiveDate, DayStats> {
    let mut days: BTreeMap<NaiveDate, DayStats> = BTreeMap::new();
    let mut counters = Counters::new(demand.quotas.len());
    let mut clears = schedule.iter().peekable();
    // Clears in minutes without demand still reset: walk both in time order.
    let mut minutes: Vec<Minute> = demand.minutes.keys().copied().collect();
    minutes.extend(schedule.iter().map(|c| c.minute));
    minutes.sort_unstable();
    minutes.dedup();
    let empty = Vec::new();
    for m in minutes {
        counters.roll(m);
        let day = days.entry(day_of(minute_start(m))).or_default();
        let row = demand.minutes.get(&m).unwrap_or(&empty);
        let mut rejected: Vec<(usize, u64)> = Vec::new();
        for &(q, calls) in row {
            let served = serve(counters.used_mut(q), demand.quotas[q].limit, calls);
            day.wanted += calls;
            day.served += served;
            if served < calls {
                rejected.push((q, calls - served));
            }
        }
        let mut cleared = false;
        while let Some(c) = clears.next_if(|c| c.minute <= m) {
            counters.apply(c.kind);
            day.clears += 1;
            cleared = true;
        }
        if retry && cleared {
            for r in rejected.iter_mut() {
                let served = serve(counters.used_mut(r.0), demand.quotas[r.0].limit, r.1);
                day.served += served;
                r.1 -= served;
            }
        }
        let lost: u64 = rejected.iter().map(|r| r.1).sum();
        day.rejected += lost;
        if lost > 0 {
            day.blocked_minutes += 1;
        }
    }
    days
}

/// The naive rule, as a baseline: clear at the first rejected call whenever a budget
/// allows (the per-interface one when one quota is blocked and it has clears left, else
/// the account's), at most `per_day` a day, no other gate. Budgets are per month and
/// already less their reserves. Returns the schedule (score it with [`evaluate`]).
pub fn naive(demand: &AccountDemand, account: u32, api: u32, per_day: u32) -> Vec<Clear> {
    let mut schedule = Vec::new();
    let mut counters = Counters::new(demand.quotas.len());
    let (mut month, mut day) = (String::new(), None);
    let (mut spent_account, mut spent_api, mut today) = (0u32, 0u32, 0u32);
    for (&m, row) in &demand.minutes {
        counters.roll(m);
        let t = minute_start(m);
        if crate::time::month_of(t) != month {
            month = crate::time::month_of(t);
            (spent_account, spent_api) = (0, 0);
        }
        if day != Some(day_of(t)) {
            day = Some(day_of(t));
            today = 0;
        }
        let mut blocked: Vec<usize> = Vec::new();
        for &(q, calls) in row {
            if serve(counters.used_mut(q), demand.quotas[q].limit, calls) < calls {
                blocked.push(q);
            }
        }
        if blocked.is_empty() || today >= per_day {
            continue;
        }
        let kind = if blocked.len() == 1 && spent_api < api {
            ClearKind::Api(blocked[0])
        } else if spent_account < account {
            ClearKind::Account
        } else if spent_api < api {
            ClearKind::Api(blocked[0])
        } else {
            continue;
        };
        match kind {
            ClearKind::Account => spent_account += 1,
            ClearKind::Api(_) => spent_api += 1,
        }
        today += 1;
        counters.apply(kind);
        schedule.push(Clear { minute: m, kind });
    }
    schedule
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::time::parse;

    /// Minute of a UTC+8 wall-clock time on 2026-11-03 ("09:15").
    pub fn at(hm: &str) -> Minute {
        at_day(3, hm)
    }

    pub fn at_day(day: u32, hm: &str) -> Minute {
        let t = parse(&format!("2026-11-{day:02}T{hm}:00+08:00")).unwrap();
        super::super::traffic::minute_of(t)
    }

    /// One quota with `limit` and demand `(minute, calls)`.
    pub fn one(limit: u64, rows: &[(Minute, u64)]) -> AccountDemand {
        AccountDemand {
            quotas: vec![Quota {
                key: "/cgi-bin/user/get".into(),
                limit: Some(limit),
            }],
            minutes: rows.iter().map(|&(m, c)| (m, vec![(0, c)])).collect(),
        }
    }

    #[test]
    fn hand_checked_day_without_clears() {
        // Limit 100: 60 + 30 served, then 10 of 30 served and 20 rejected, then 50 rejected.
        let d = one(
            100,
            &[
                (at("09:00"), 60),
                (at("09:01"), 30),
                (at("09:02"), 30),
                (at("10:00"), 50),
            ],
        );
        let days = evaluate(&d, &[], false);
        let day = &days[&NaiveDate::from_ymd_opt(2026, 11, 3).unwrap()];
        assert_eq!(
            *day,
            DayStats {
                wanted: 170,
                served: 100,
                rejected: 70,
                blocked_minutes: 2,
                clears: 0
            }
        );
    }

    #[test]
    fn a_clear_helps_from_the_next_minute_and_with_proxy_retries_its_own() {
        let d = one(
            100,
            &[(at("09:00"), 80), (at("09:01"), 50), (at("09:02"), 50)],
        );
        let clear = [Clear {
            minute: at("09:01"),
            kind: ClearKind::Account,
        }];
        // reports: 09:01 serves 20 and loses 30; after the clear 09:02 serves 50.
        let r = total(evaluate(&d, &clear, false).values());
        assert_eq!(
            (r.served, r.rejected, r.blocked_minutes, r.clears),
            (150, 30, 1, 1)
        );
        // proxy: the 30 of 09:01 are retried after the clear, then 09:02 serves 50.
        let p = total(evaluate(&d, &clear, true).values());
        assert_eq!((p.served, p.rejected, p.blocked_minutes), (180, 0, 0));
    }

    #[test]
    fn naive_clears_at_the_first_rejection_until_the_budgets_run_out() {
        // Limit 10, 15 a minute: every minute overflows. One api and one account clear,
        // at most 3 a day: the first two blocked minutes get them, then nothing.
        let d = one(
            10,
            &[
                (at("09:00"), 15),
                (at("09:01"), 15),
                (at("09:02"), 15),
                (at("09:03"), 15),
            ],
        );
        let s = naive(&d, 1, 1, 3);
        assert_eq!(
            s,
            vec![
                Clear {
                    minute: at("09:00"),
                    kind: ClearKind::Api(0)
                },
                Clear {
                    minute: at("09:01"),
                    kind: ClearKind::Account
                },
            ]
        );
        let r = total(evaluate(&d, &s, false).values());
        // 09:00 10 served; 09:01 10; 09:02 10; 09:03 0.
        assert_eq!((r.served, r.rejected), (30, 30));
        assert_eq!(naive(&d, 5, 5, 1).len(), 1, "max_clears_per_day");
    }

    #[test]
    fn counters_start_again_at_midnight_utc8() {
        // 23:59 on the 3rd and 00:00 on the 4th are different WeChat days.
        let d = one(10, &[(at_day(3, "23:59"), 15), (at_day(4, "00:00"), 15)]);
        let days = evaluate(&d, &[], false);
        assert_eq!(days.len(), 2);
        assert!(days.values().all(|s| s.served == 10 && s.rejected == 5));
    }

    #[test]
    fn paths_sharing_a_limit_share_a_counter_and_unlimited_paths_never_reject() {
        let limits = LimitTable::from_preset(crate::config::PresetName::Normal);
        let mut by_path: BTreeMap<Minute, BTreeMap<String, u64>> = BTreeMap::new();
        let m = at("09:00");
        by_path
            .entry(m)
            .or_default()
            .insert("/cgi-bin/message/mass/sendall".into(), 80);
        by_path
            .entry(m)
            .or_default()
            .insert("/cgi-bin/message/mass/send".into(), 80);
        by_path
            .entry(m)
            .or_default()
            .insert("/sns/userinfo".into(), 1_000_000);
        let d = AccountDemand::new(&limits, &by_path);
        assert_eq!(d.quotas.len(), 2);
        let r = total(evaluate(&d, &[], false).values());
        assert_eq!(
            r.rejected, 60,
            "mass send's 100 a day is shared by both paths"
        );
        // An api clear resets only its quota.
        let q = d.quotas.iter().position(|q| q.limit == Some(100)).unwrap();
        let mut c = Counters::new(2);
        c.roll(m);
        *c.used_mut(0) = 5;
        *c.used_mut(1) = 7;
        c.apply(ClearKind::Api(q));
        assert_eq!(c.used(q), 0);
        assert_ne!(c.used(1 - q), 0);
    }
}
