//! The oracle of `wxquotad replay` (SPEC §9): the fewest rejected calls a schedule of
//! clears could reach knowing the whole traffic, within the monthly budgets less their
//! reserves and `max_clears_per_day`.
//!
//! How (one account):
//! 1. Per WeChat day and limited quota, the best times for k = 0..=max_clears_per_day
//!    clears. Within a day the counter starts at 0 after each clear, so a stretch of
//!    minutes between two clears rejects exactly `max(0, its demand − limit)` calls:
//!    a dynamic programme over "the j-th clear is made right after the t-th minute with
//!    demand", O(k · minutes) per day with a sliding-window minimum.
//! 2. Per day, the clears split between its limited quotas (a small knapsack), then per
//!    month the clears allocated to days (a knapsack over days) within
//!    (monthly_clears − reserve) + (monthly_api_clears − api_reserve when api_clears).
//! 3. Each month's chosen clears, in time order, are per-interface clears while that
//!    budget lasts, then account clears; the schedule is scored by the minute model.
//!
//! With one limited quota (the usual case: one interface runs out) this is exact: any
//! clear resets that quota and the kinds only differ in which budget pays. With several,
//! every clear is planned for one quota, so the result is the score of a real schedule
//! and an upper bound on the true optimum (an account clear that happens to help two
//! quotas at once is credited when scored, not planned for). For the `proxy` source the
//! plan assumes a clear helps from the next minute (the `reports` model) and is scored
//! with retries; the policy can then beat the oracle slightly.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::model::{evaluate, AccountDemand, Clear, ClearKind, DayStats};
use super::traffic::{minute_start, Minute};
use crate::time::{day_of, month_of};

/// Clears the oracle may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Account clears a month, less the reserve.
    pub account: u32,
    /// Per-interface clears a month, less their reserve (0 when `api_clears` is off).
    pub api: u32,
    /// Both kinds together per WeChat day.
    pub per_day: u32,
}

impl Budgets {
    /// The budgets `policy` lets automatic clears spend.
    pub fn of(policy: &crate::config::Policy) -> Budgets {
        Budgets {
            account: policy.monthly_clears.saturating_sub(policy.reserve),
            api: if policy.api_clears {
                policy.monthly_api_clears.saturating_sub(policy.api_reserve)
            } else {
                0
            },
            per_day: policy.max_clears_per_day,
        }
    }
}

/// The oracle's answer for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// The clears, in time order.
    pub schedule: Vec<Clear>,
    /// The schedule scored by the minute model, per day.
    pub days: BTreeMap<NaiveDate, DayStats>,
    /// Whether the result is the proven optimum (at most one limited quota has demand,
    /// `reports`/`poll` model) rather than an upper bound.
    pub exact: bool,
}

const INF: i128 = i128::MAX / 4;

/// The best clear times within one day for one quota: `cost[k]` is the fewest rejected
/// calls with at most k clears and `plan[k]` the minutes of those clears.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub cost: Vec<u64>,
    pub plan: Vec<Vec<Minute>>,
}

/// The per-day dynamic programme for one quota with `limit` and the day's demand
/// `rows` (minute, calls), in time order, for at most `kmax` clears.
pub fn day_curve(rows: &[(Minute, u64)], limit: u64, kmax: usize) -> Curve {
    let n = rows.len();
    let l = limit as i128;
    // p[t]: calls in the first t minutes with demand.
    let mut p = vec![0i128; n + 1];
    for (t, &(_, c)) in rows.iter().enumerate() {
        p[t + 1] = p[t] + c as i128;
    }
    let over = |d: i128| (d - l).max(0);
    // layers[j - 1][t] (1-based t): fewest rejected in minutes 1..=t when the j-th
    // clear is made right after minute t; parents[j - 1][t]: where the clear before it was.
    let first: Vec<i128> = (0..=n)
        .map(|t| if t == 0 { INF } else { over(p[t]) })
        .collect();
    let mut layers: Vec<Vec<i128>> = vec![first];
    let mut parents: Vec<Vec<usize>> = vec![vec![0; n + 1]];
    let mut exact_cost = vec![over(p[n])];
    let mut exact_last = vec![0usize];
    for j in 1..=kmax.min(n) {
        if j >= 2 {
            let (g, parent) = next_layer(&layers[j - 2], &p, l);
            layers.push(g);
            parents.push(parent);
        }
        // With exactly j clears: the j-th after some s, then the rest of the day.
        let g = &layers[j - 1];
        let (mut best, mut last) = (INF, 0);
        for s in 1..=n {
            if g[s] < INF {
                let v = g[s] + over(p[n] - p[s]);
                if v < best {
                    best = v;
                    last = s;
                }
            }
        }
        exact_cost.push(best);
        exact_last.push(last);
    }
    // At most k clears: the best exact count up to k.
    let mut cost = Vec::with_capacity(kmax + 1);
    let mut plan: Vec<Vec<Minute>> = Vec::with_capacity(kmax + 1);
    let mut best_j = 0usize;
    for k in 0..=kmax {
        if k < exact_cost.len() && exact_cost[k] < exact_cost[best_j] {
            best_j = k;
        }
        cost.push(exact_cost[best_j] as u64);
        let mut minutes = Vec::with_capacity(best_j);
        let mut t = exact_last[best_j];
        for j in (1..=best_j).rev() {
            minutes.push(rows[t - 1].0);
            t = parents[j - 1][t];
        }
        minutes.reverse();
        plan.push(minutes);
    }
    Curve { cost, plan }
}

/// One step of the day's programme: from the best costs with the (j−1)-th clear right
/// after each minute (`prev`), the same for the j-th, with where the one before was.
/// For a clear after t and the one before after s < t, minutes s+1..=t reject
/// `max(0, p[t] − p[s] − limit)`: the s that pay an overflow form a prefix (tracked as
/// the least `prev[s] − p[s]`), the others a window [b, t−1] (a monotonic deque).
fn next_layer(prev: &[i128], p: &[i128], l: i128) -> (Vec<i128>, Vec<usize>) {
    let n = prev.len() - 1;
    let mut g = vec![INF; n + 1];
    let mut parent = vec![0usize; n + 1];
    let mut b = 1usize;
    let mut pref: (i128, usize) = (INF, 0);
    let mut window: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for t in 1..=n {
        let s = t - 1;
        if s >= 1 && prev[s] < INF {
            while window.back().is_some_and(|&w| prev[w] >= prev[s]) {
                window.pop_back();
            }
            window.push_back(s);
        }
        while b < t && p[t] - p[b] > l {
            if window.front() == Some(&b) {
                window.pop_front();
            }
            if prev[b] < INF && prev[b] - p[b] < pref.0 {
                pref = (prev[b] - p[b], b);
            }
            b += 1;
        }
        if pref.0 < INF {
            let v = pref.0 + p[t] - l;
            if v < g[t] {
                g[t] = v;
                parent[t] = pref.1;
            }
        }
        if let Some(&w) = window.front() {
            if prev[w] < g[t] {
                g[t] = prev[w];
                parent[t] = w;
            }
        }
    }
    (g, parent)
}

/// Splits up to `kmax` clears between curves: `(cost[k], counts per curve)`.
fn combine(curves: &[Curve], kmax: usize) -> (Vec<u64>, Vec<Vec<usize>>) {
    // best[k] = (cost, counts) using the curves so far with at most k clears.
    let mut best: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); kmax + 1];
    for c in curves {
        let mut next: Vec<(u64, Vec<usize>)> = Vec::with_capacity(kmax + 1);
        for k in 0..=kmax {
            let mut choice: Option<(u64, Vec<usize>)> = None;
            for take in 0..=k {
                let v = best[k - take].0 + c.cost[take];
                if choice.as_ref().is_none_or(|(cv, _)| v < *cv) {
                    let mut counts = best[k - take].1.clone();
                    counts.push(take);
                    choice = Some((v, counts));
                }
            }
            next.push(choice.expect("k ≥ 0"));
        }
        best = next;
    }
    best.into_iter().unzip()
}

/// The oracle for one account. `retry`: score with the `proxy` source's retries.
pub fn best(demand: &AccountDemand, budgets: Budgets, retry: bool) -> Best {
    let kday = budgets.per_day as usize;
    let limited = demand.limited();
    // Rows per day per limited quota.
    let mut days: BTreeMap<NaiveDate, BTreeMap<usize, Vec<(Minute, u64)>>> = BTreeMap::new();
    for (&m, row) in &demand.minutes {
        let day = days.entry(day_of(minute_start(m))).or_default();
        for &(q, calls) in row {
            if limited.contains(&q) && calls > 0 {
                day.entry(q).or_default().push((m, calls));
            }
        }
    }
    let quotas_with_demand = days
        .values()
        .flat_map(|d| d.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // Per day: the cost for k clears and the clears (minute, quota) for each k.
    struct Day {
        month: String,
        cost: Vec<u64>,
        clears: Vec<Vec<(Minute, usize)>>,
    }
    let mut planned: Vec<Day> = Vec::new();
    for (day, quotas) in &days {
        let qs: Vec<usize> = quotas.keys().copied().collect();
        let curves: Vec<Curve> = qs
            .iter()
            .map(|q| day_curve(&quotas[q], demand.quotas[*q].limit.expect("limited"), kday))
            .collect();
        let (cost, counts) = combine(&curves, kday);
        let clears = counts
            .iter()
            .map(|per| {
                let mut c: Vec<(Minute, usize)> = per
                    .iter()
                    .enumerate()
                    .flat_map(|(i, &k)| {
                        let q = qs[i];
                        curves[i].plan[k].iter().map(move |&m| (m, q))
                    })
                    .collect();
                c.sort_unstable();
                c
            })
            .collect();
        planned.push(Day {
            month: month_of(crate::time::start_of_day(*day)),
            cost,
            clears,
        });
    }
    // Per month: allocate clears to days.
    let kmonth = (budgets.account + budgets.api) as usize;
    let mut schedule: Vec<Clear> = Vec::new();
    let mut i = 0;
    while i < planned.len() {
        let month = planned[i].month.clone();
        let j = planned[i..]
            .iter()
            .position(|d| d.month != month)
            .map_or(planned.len(), |n| i + n);
        let month_days = &planned[i..j];
        // best[k]: (cost, clears per day) with at most k clears over the days so far.
        let mut best: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); kmonth + 1];
        for d in month_days {
            let mut next = Vec::with_capacity(kmonth + 1);
            for k in 0..=kmonth {
                let mut choice: Option<(u64, Vec<usize>)> = None;
                for take in 0..=k.min(kday) {
                    let v = best[k - take].0 + d.cost[take];
                    if choice.as_ref().is_none_or(|(cv, _)| v < *cv) {
                        let mut per = best[k - take].1.clone();
                        per.push(take);
                        choice = Some((v, per));
                    }
                }
                next.push(choice.expect("k ≥ 0"));
            }
            best = next;
        }
        let mut chosen: Vec<(Minute, usize)> = best[kmonth]
            .1
            .iter()
            .zip(month_days)
            .flat_map(|(&k, d)| d.clears[k].iter().copied())
            .collect();
        chosen.sort_unstable();
        for (n, (minute, q)) in chosen.into_iter().enumerate() {
            let kind = if (n as u32) < budgets.api {
                ClearKind::Api(q)
            } else {
                ClearKind::Account
            };
            schedule.push(Clear { minute, kind });
        }
        i = j;
    }
    let days = evaluate(demand, &schedule, retry);
    Best {
        schedule,
        days,
        exact: quotas_with_demand <= 1 && !retry,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::replay::model::tests::{at, at_day, one};
    use crate::replay::model::{total, Quota};

    fn rejected(days: &BTreeMap<NaiveDate, DayStats>) -> u64 {
        total(days.values()).rejected
    }

    #[test]
    fn one_clear_goes_where_it_saves_most() {
        // Limit 100; 100 at 09:00, 12:00 and 18:00: any single clear saves 100 of the
        // 200 rejected, two save all.
        let d = one(
            100,
            &[(at("09:00"), 100), (at("12:00"), 100), (at("18:00"), 100)],
        );
        let b = best(
            &d,
            Budgets {
                account: 1,
                api: 0,
                per_day: 3,
            },
            false,
        );
        assert_eq!(rejected(&b.days), 100);
        assert_eq!(b.schedule.len(), 1);
        assert!(b.exact);
        // Two clears: after 09:00 and after 12:00, nothing rejected.
        let b = best(
            &d,
            Budgets {
                account: 1,
                api: 1,
                per_day: 3,
            },
            false,
        );
        assert_eq!(rejected(&b.days), 0);
        assert_eq!(
            b.schedule,
            vec![
                Clear {
                    minute: at("09:00"),
                    kind: ClearKind::Api(0)
                },
                Clear {
                    minute: at("12:00"),
                    kind: ClearKind::Account
                }
            ]
        );
    }

    #[test]
    fn the_month_budget_goes_to_the_days_that_need_it_most() {
        // Day 3 overflows by 10, day 4 by 500: one clear belongs to day 4.
        let d = one(
            100,
            &[
                (at_day(3, "09:00"), 100),
                (at_day(3, "10:00"), 10),
                (at_day(4, "09:00"), 100),
                (at_day(4, "10:00"), 400),
            ],
        );
        let b = best(
            &d,
            Budgets {
                account: 1,
                api: 0,
                per_day: 1,
            },
            false,
        );
        assert_eq!(b.schedule.len(), 1);
        assert_eq!(b.schedule[0].minute, at_day(4, "09:00"));
        assert_eq!(rejected(&b.days), 10 + 300);
    }

    #[test]
    fn budgets_are_per_month() {
        // Nov 30 and Dec 1 (UTC+8) each overflow; one clear a month covers both.
        let nov30 = at_day(30, "09:00");
        let dec1 = nov30 + 24 * 60;
        let d = one(
            10,
            &[(nov30, 10), (nov30 + 1, 10), (dec1, 10), (dec1 + 1, 10)],
        );
        let b = best(
            &d,
            Budgets {
                account: 1,
                api: 0,
                per_day: 1,
            },
            false,
        );
        assert_eq!(b.schedule.len(), 2);
        assert_eq!(rejected(&b.days), 0);
    }

    /// Every schedule of clears with at most `per_day` a day and within the budgets,
    /// made at a minute with demand or the minute before one.
    fn brute(d: &AccountDemand, budgets: Budgets) -> u64 {
        let mut cands: Vec<Minute> = d.minutes.keys().flat_map(|&m| [m - 1, m]).collect();
        cands.sort_unstable();
        cands.dedup();
        let mut kinds = vec![ClearKind::Account];
        if budgets.api > 0 {
            kinds.extend((0..d.quotas.len()).map(ClearKind::Api));
        }
        let options: Vec<Clear> = cands
            .iter()
            .flat_map(|&minute| kinds.iter().map(move |&kind| Clear { minute, kind }))
            .collect();
        let mut best = u64::MAX;
        let mut pick: Vec<Clear> = Vec::new();
        fn go(
            d: &AccountDemand,
            b: Budgets,
            options: &[Clear],
            from: usize,
            pick: &mut Vec<Clear>,
            best: &mut u64,
        ) {
            let r = total(evaluate(d, pick, false).values()).rejected;
            *best = (*best).min(r);
            for i in from..options.len() {
                let c = options[i];
                let acct = pick.iter().filter(|p| p.kind == ClearKind::Account).count() as u32
                    + u32::from(c.kind == ClearKind::Account);
                let api = pick.len() as u32 + 1 - acct;
                let day = day_of(minute_start(c.minute));
                let same_day = pick
                    .iter()
                    .filter(|p| day_of(minute_start(p.minute)) == day)
                    .count() as u32;
                if acct > b.account || api > b.api || same_day + 1 > b.per_day {
                    continue;
                }
                pick.push(c);
                go(d, b, options, i + 1, pick, best);
                pick.pop();
            }
        }
        go(d, budgets, &options, 0, &mut pick, &mut best);
        best
    }

    fn tiny() -> impl Strategy<Value = (AccountDemand, Budgets)> {
        let rows = proptest::collection::vec((0usize..2, 0u32..2, 0i64..6, 0u64..25), 1..7);
        (rows, 5u64..30, 5u64..30, 0u32..3, 0u32..3, 1u32..3).prop_map(
            |(rows, l0, l1, account, api, per_day)| {
                let mut d = AccountDemand {
                    quotas: vec![
                        Quota {
                            key: "/a".into(),
                            limit: Some(l0),
                        },
                        Quota {
                            key: "/b".into(),
                            limit: Some(l1),
                        },
                    ],
                    minutes: BTreeMap::new(),
                };
                for (q, day, minute, calls) in rows {
                    let m = at_day(3 + day, "09:00") + minute * 7;
                    let row = d.minutes.entry(m).or_default();
                    match row.iter_mut().find(|(i, _)| *i == q) {
                        Some((_, c)) => *c += calls,
                        None => row.push((q, calls)),
                    }
                }
                (
                    d,
                    Budgets {
                        account,
                        api,
                        per_day,
                    },
                )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn the_day_programme_matches_every_choice_of_clear_minutes(
            calls in proptest::collection::vec(0u64..40, 1..9),
            limit in 5u64..40,
            kmax in 0usize..5,
        ) {
            let rows: Vec<(Minute, u64)> = calls
                .iter()
                .enumerate()
                .map(|(i, &c)| (at("09:00") + i as i64, c))
                .collect();
            let d = one(limit, &rows);
            let curve = day_curve(&rows, limit, kmax);
            // Every subset of the minutes to clear after, by size.
            let n = rows.len();
            let mut best = vec![u64::MAX; kmax + 1];
            for mask in 0u32..(1 << n) {
                let k = mask.count_ones() as usize;
                if k > kmax {
                    continue;
                }
                let schedule: Vec<Clear> = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| Clear { minute: rows[i].0, kind: ClearKind::Account })
                    .collect();
                let r = rejected(&evaluate(&d, &schedule, false));
                for b in best.iter_mut().skip(k) {
                    *b = (*b).min(r);
                }
            }
            prop_assert_eq!(&curve.cost, &best);
            // Each plan reaches its cost with at most k clears.
            for (k, plan) in curve.plan.iter().enumerate() {
                prop_assert!(plan.len() <= k);
                let schedule: Vec<Clear> = plan
                    .iter()
                    .map(|&minute| Clear { minute, kind: ClearKind::Account })
                    .collect();
                prop_assert_eq!(rejected(&evaluate(&d, &schedule, false)), curve.cost[k]);
            }
        }

        #[test]
        fn exact_on_one_quota_and_never_better_than_possible_on_two((d, b) in tiny()) {
            let got = best(&d, b, false);
            let r = rejected(&got.days);
            let truth = brute(&d, b);
            if got.exact {
                prop_assert_eq!(r, truth);
            } else {
                prop_assert!(r >= truth, "oracle {} below the optimum {}", r, truth);
            }
            // The schedule keeps every budget.
            let acct = got.schedule.iter().filter(|c| c.kind == ClearKind::Account).count() as u32;
            prop_assert!(acct <= b.account);
            prop_assert!(got.schedule.len() as u32 - acct <= b.api);
            let mut per_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
            for c in &got.schedule {
                *per_day.entry(day_of(minute_start(c.minute))).or_default() += 1;
            }
            prop_assert!(per_day.values().all(|&n| n <= b.per_day));
        }

        #[test]
        fn one_quota_only_is_exact((mut d, b) in tiny()) {
            for row in d.minutes.values_mut() {
                row.retain(|(q, _)| *q == 0);
            }
            let got = best(&d, b, false);
            prop_assert!(got.exact);
            prop_assert_eq!(rejected(&got.days), brute(&d, b));
        }
    }
}
