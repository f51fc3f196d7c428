//! Property tests (issue 5), bounded so they run in seconds:
//! - the policy against a simple model over random sequences of reports, clears and their
//!   outcomes, manual and forced clears, and time jumps across days and months;
//! - path normalisation: idempotent, never keeps a query, always a checked path;
//! - config round-trips: random valid policy values written as TOML load back equal.

use std::time::Duration;

use proptest::prelude::*;
use wxquotad::apipath;
use wxquotad::config::Policy;
use wxquotad::policy::{
    decide, decide_manual, AccountView, ClearHistory, Decision, Plan, QuotaView, Resettable,
};
use wxquotad::time::{day_of, month_of, next_reset, parse, Timestamp};

// ---------------------------------------------------------------------------------------
// Policy against a model
// ---------------------------------------------------------------------------------------

/// What WeChat (or a crash) makes of a clear the policy allowed.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// errcode 0: spent, counters start again (all, or the one interface).
    Ok,
    /// An errcode that did not take effect: not spent; backs off.
    Failed,
    /// Timeout or crash: may have taken effect, so spent; the block stays; backs off.
    Unknown,
    /// 48006: not spent, but none of that kind left this month whatever our count says.
    Exhausted,
    /// WeChat will not clear this path one by one (a per-interface clear only; any
    /// other kind reads it as Failed): not spent, no back-off, remembered.
    Refused,
}

#[derive(Debug, Clone)]
enum Step {
    /// Time passes (seconds), sometimes across the daily reset or a month.
    Wait(u64),
    /// Calls reported on a watched interface (0 or 1).
    Calls(usize, u64),
    /// A 45009 on a watched interface (0 or 1) or the unwatched one (2).
    Blocked(usize),
    /// The check after a clear saw WeChat keep counting watched interface 0 today.
    NotReset,
    /// The engine asks the policy; a clear, if allowed, ends with the outcome.
    Decide(Outcome),
    /// Someone asks for a clear (of the account, or of interface 0).
    Manual {
        force: bool,
        api: bool,
        outcome: Outcome,
    },
    /// Flip the conditions outside the history.
    Flags {
        in_flight: bool,
        in_error: bool,
        dry_run: bool,
    },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Ok),
        2 => Just(Outcome::Failed),
        2 => Just(Outcome::Unknown),
        1 => Just(Outcome::Exhausted),
        1 => Just(Outcome::Refused),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop_oneof![
            0u64..120,
            0u64..7200,
            0u64..(3 * 86_400),
            (20u64..40).prop_map(|d| d * 86_400),
        ]
        .prop_map(Step::Wait),
        3 => (0usize..2, 1u64..300).prop_map(|(q, n)| Step::Calls(q, n)),
        3 => (0usize..3).prop_map(Step::Blocked),
        1 => Just(Step::NotReset),
        6 => outcome().prop_map(Step::Decide),
        2 => (any::<bool>(), any::<bool>(), outcome())
            .prop_map(|(force, api, outcome)| Step::Manual { force, api, outcome }),
        1 => (prop::bool::weighted(0.15), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(in_flight, in_error, dry_run)| Step::Flags { in_flight, in_error, dry_run }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        (1u32..=10, 0u32..6, 1u32..=50, 0u32..8, any::<bool>()),
        1u32..=100,
        prop_oneof![Just(0u64), 1u64..1200, 1u64..86_400],
        1u32..6,
        prop_oneof![Just(0u64), 1u64..7200],
        any::<bool>(),
    )
        .prop_map(
            |(
                (monthly, reserve, api_monthly, api_reserve, api_clears),
                thr,
                min_interval,
                per_day,
                quiet,
                on_45009,
            )| Policy {
                threshold: f64::from(thr) / 100.0,
                clear_on_45009: on_45009,
                reserve: reserve.min(monthly - 1),
                monthly_clears: monthly,
                api_clears,
                monthly_api_clears: api_monthly,
                api_reserve: api_reserve.min(api_monthly - 1),
                confirm_45009: true,
                min_interval: Duration::from_secs(min_interval),
                max_clears_per_day: per_day,
                quiet_before_reset: Duration::from_secs(quiet),
                watch: WATCHED.iter().map(|w| w.to_string()).collect(),
            },
        )
}

const WATCHED: [&str; 2] = ["/cgi-bin/user/get", "/cgi-bin/media/get"];
const UNWATCHED: &str = "/cgi-bin/menu/get";
const LIMIT: u64 = 500;

/// The model: plain lists of spent attempts of each kind and the account's usage.
struct Model {
    now: Timestamp,
    /// Start times of spent account clears (ok or unknown).
    spent: Vec<Timestamp>,
    /// Start times of spent per-interface clears.
    api_spent: Vec<Timestamp>,
    /// The months WeChat answered 48006 in, per kind.
    exhausted_month: Option<String>,
    api_exhausted_month: Option<String>,
    /// (month, path) WeChat refused to clear one by one.
    refused: Vec<(String, String)>,
    used: [u64; 2],
    blocked: [bool; 2],
    unwatched_blocked: bool,
    /// Watched interface 0 was not reset by a clear today.
    not_reset: bool,
    /// Failed decisions in a row, and the back-off they earned.
    failures: u32,
    backoff_until: Option<Timestamp>,
    in_flight: bool,
    in_error: bool,
    dry_run: bool,
}

/// The model's plan: the whole account, or one interface.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Account,
    Api(&'static str),
}

impl Model {
    fn count(list: &[Timestamp], f: impl Fn(&Timestamp) -> bool) -> u32 {
        list.iter().filter(|t| f(t)).count() as u32
    }

    fn spent_month(&self) -> u32 {
        let m = month_of(self.now);
        Model::count(&self.spent, |t| month_of(*t) == m)
    }

    fn api_spent_month(&self) -> u32 {
        let m = month_of(self.now);
        Model::count(&self.api_spent, |t| month_of(*t) == m)
    }

    fn spent_today(&self) -> u32 {
        let d = day_of(self.now);
        Model::count(&self.spent, |t| day_of(*t) == d)
            + Model::count(&self.api_spent, |t| day_of(*t) == d)
    }

    fn history(&self) -> ClearHistory {
        let month = month_of(self.now);
        let all = self.spent.iter().chain(&self.api_spent);
        ClearHistory {
            spent_month: self.spent_month(),
            spent_today: self.spent_today(),
            last_spent_at: all.max().copied(),
            month_exhausted: self.exhausted_month.as_deref() == Some(&month),
            api_spent_month: self.api_spent_month(),
            api_month_exhausted: self.api_exhausted_month.as_deref() == Some(&month),
            api_refused: self
                .refused
                .iter()
                .filter(|(m, _)| *m == month)
                .map(|(_, p)| p.clone())
                .collect(),
            latest_attempt_at: None,
        }
    }

    fn quotas(&self) -> Vec<QuotaView<'static>> {
        let mut q: Vec<QuotaView<'static>> = (0..2)
            .map(|i| QuotaView {
                api: WATCHED[i],
                used: self.used[i],
                limit: Some(LIMIT),
                blocked: self.blocked[i],
                watched: true,
                resettable: if i == 0 && self.not_reset {
                    Resettable::NotReset
                } else {
                    Resettable::Yes
                },
                room_after_block: false,
                rate: None,
                since: None,
            })
            .collect();
        q.push(QuotaView {
            api: UNWATCHED,
            used: 0,
            limit: Some(LIMIT),
            blocked: self.unwatched_blocked,
            watched: false,
            resettable: Resettable::Yes,
            room_after_block: false,
            rate: None,
            since: None,
        });
        q
    }

    /// Watched interfaces a clear could fix that are due, by the model's reading of §5.
    fn due(&self, p: &Policy) -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                (p.clear_on_45009 && self.blocked[i])
                    || self.used[i] as f64 / LIMIT as f64 >= p.threshold
            })
            .filter(|&i| !(i == 0 && self.not_reset))
            .collect()
    }

    /// Whether some interface is due, fixable or not.
    fn due_at_all(&self, p: &Policy) -> bool {
        (0..2).any(|i| {
            (p.clear_on_45009 && self.blocked[i])
                || self.used[i] as f64 / LIMIT as f64 >= p.threshold
        })
    }

    /// The clear for the due interfaces: one alone by clearApiQuota when allowed.
    fn plan(&self, p: &Policy, due: &[usize]) -> Kind {
        let h = self.history();
        let api_left = if h.api_month_exhausted {
            0
        } else {
            p.monthly_api_clears.saturating_sub(h.api_spent_month)
        };
        match due {
            [one]
                if p.api_clears
                    && !h.api_refused.iter().any(|r| r == WATCHED[*one])
                    && api_left > p.api_reserve =>
            {
                Kind::Api(WATCHED[*one])
            }
            _ => Kind::Account,
        }
    }

    /// Whether a clear of `kind` may go now, by the model's reading of SPEC §4 and §5.
    fn allowed(&self, p: &Policy, kind: &Kind, force: bool) -> bool {
        let h = self.history();
        let last_ok = match h.last_spent_at {
            None => true,
            Some(t) => (self.now - t).to_std().unwrap_or_default() >= p.min_interval,
        };
        let backoff_ok = self.backoff_until.is_none_or(|u| u <= self.now);
        let until_reset = (next_reset(self.now) - self.now).to_std().unwrap();
        let (exhausted, spent, monthly, reserve) = match kind {
            Kind::Account => (
                h.month_exhausted,
                h.spent_month,
                p.monthly_clears,
                p.reserve,
            ),
            Kind::Api(_) => (
                h.api_month_exhausted,
                h.api_spent_month,
                p.monthly_api_clears,
                p.api_reserve,
            ),
        };
        let budget = if force { monthly } else { monthly - reserve };
        !exhausted
            && spent < budget
            && h.spent_today < p.max_clears_per_day
            && !self.in_flight
            && !self.dry_run
            && !self.in_error
            && (force || last_ok)
            && (force || backoff_ok)
            && (force || until_reset > p.quiet_before_reset)
    }

    fn settle(&mut self, at: Timestamp, kind: &Kind, outcome: Outcome) {
        let api = matches!(kind, Kind::Api(_));
        match outcome {
            Outcome::Ok => {
                if let Kind::Api(path) = kind {
                    self.api_spent.push(at);
                    let i = WATCHED.iter().position(|w| w == path).unwrap();
                    self.used[i] = 0;
                    self.blocked[i] = false;
                } else {
                    self.spent.push(at);
                    self.used = [0, 0];
                    self.blocked = [false, false];
                    self.unwatched_blocked = false;
                }
                self.failures = 0;
                self.backoff_until = None;
            }
            Outcome::Unknown | Outcome::Failed => {
                if matches!(outcome, Outcome::Unknown) {
                    if api {
                        self.api_spent.push(at);
                    } else {
                        self.spent.push(at);
                    }
                }
                self.failures += 1;
                let wait = (60u64 << (self.failures - 1).min(6)).min(3600);
                self.backoff_until = Some(at + chrono::Duration::seconds(wait as i64));
            }
            Outcome::Exhausted if api => self.api_exhausted_month = Some(month_of(at)),
            Outcome::Exhausted => self.exhausted_month = Some(month_of(at)),
            Outcome::Refused => match kind {
                Kind::Api(path) => self.refused.push((month_of(at), path.to_string())),
                Kind::Account => self.settle(at, kind, Outcome::Failed),
            },
        }
    }

    fn wait(&mut self, secs: u64) {
        let before = day_of(self.now);
        self.now += chrono::Duration::seconds(secs as i64);
        if day_of(self.now) != before {
            // A new WeChat day: counters start again; not-reset paths may trigger again.
            self.used = [0, 0];
            self.blocked = [false, false];
            self.unwatched_blocked = false;
            self.not_reset = false;
        }
    }

    fn view<'a>(&self, policy: &'a Policy, quotas: &'a [QuotaView<'a>]) -> AccountView<'a> {
        AccountView {
            policy,
            quotas,
            history: self.history(),
            in_flight: self.in_flight,
            in_error: self.in_error,
            dry_run: self.dry_run,
            backoff_until: self.backoff_until,
        }
    }
}

fn kind_of(plan: &Plan) -> Kind {
    match plan {
        Plan::Account => Kind::Account,
        Plan::Api(p) => Kind::Api(WATCHED.iter().find(|w| *w == p).expect("a watched path")),
    }
}

fn start_time() -> impl Strategy<Value = Timestamp> {
    // Any second of 2026, with a bias towards the last minutes before a reset.
    let base = parse("2026-01-01T00:00:00+08:00").unwrap();
    prop_oneof![
        (0i64..365 * 86_400).prop_map(move |s| base + chrono::Duration::seconds(s)),
        (0i64..365, 0i64..3600)
            .prop_map(move |(d, s)| base + chrono::Duration::seconds((d + 1) * 86_400 - s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn policy_matches_the_model(
        policy in policy(),
        start in start_time(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut m = Model {
            now: start,
            spent: Vec::new(),
            api_spent: Vec::new(),
            exhausted_month: None,
            api_exhausted_month: None,
            refused: Vec::new(),
            used: [0, 0],
            blocked: [false, false],
            unwatched_blocked: false,
            not_reset: false,
            failures: 0,
            backoff_until: None,
            in_flight: false,
            in_error: false,
            dry_run: false,
        };
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Wait(s) => m.wait(s),
                Step::Calls(q, n) => m.used[q] += n,
                Step::Blocked(2) => m.unwatched_blocked = true,
                Step::Blocked(q) => m.blocked[q] = true,
                Step::NotReset => m.not_reset = true,
                Step::Flags { in_flight, in_error, dry_run } => {
                    m.in_flight = in_flight;
                    m.in_error = in_error;
                    m.dry_run = dry_run;
                }
                Step::Decide(outcome) => {
                    let quotas = m.quotas();
                    let d = decide(&m.view(&policy, &quotas), m.now);
                    let due = m.due(&policy);
                    match &d {
                        Decision::NotDue => prop_assert!(!m.due_at_all(&policy), "step {i}: due but NotDue"),
                        Decision::Hold(_, hold) => {
                            if due.is_empty() {
                                // Due only by what a clear cannot fix.
                                prop_assert!(m.due_at_all(&policy), "step {i}: {d:?}");
                                prop_assert_eq!(hold.kind(), "not_reset", "step {}", i);
                            } else {
                                let kind = m.plan(&policy, &due);
                                prop_assert!(!m.allowed(&policy, &kind, false), "step {i}: {kind:?} {d:?}");
                            }
                        }
                        Decision::Clear(_, plan) => {
                            let kind = m.plan(&policy, &due);
                            prop_assert!(!due.is_empty(), "step {i}: {d:?}");
                            prop_assert_eq!(&kind_of(plan), &kind, "step {}", i);
                            prop_assert!(m.allowed(&policy, &kind, false), "step {i}: {d:?}");
                            // The gates in plain words, the budgets first.
                            let h = m.history();
                            match kind {
                                Kind::Account => prop_assert!(h.spent_month < policy.monthly_clears - policy.reserve),
                                Kind::Api(_) => prop_assert!(h.api_spent_month < policy.monthly_api_clears - policy.api_reserve),
                            }
                            prop_assert!(h.spent_today < policy.max_clears_per_day);
                            prop_assert!(m.backoff_until.is_none_or(|u| u <= m.now));
                            let until = (next_reset(m.now) - m.now).to_std().unwrap();
                            prop_assert!(until > policy.quiet_before_reset);
                            m.settle(m.now, &kind, outcome);
                        }
                    }
                }
                Step::Manual { force, api, outcome } => {
                    let quotas = m.quotas();
                    let asked = api.then_some(WATCHED[0]);
                    let d = decide_manual(&m.view(&policy, &quotas), force, None, asked, m.now);
                    let kind = if api { Kind::Api(WATCHED[0]) } else { Kind::Account };
                    let allowed = m.allowed(&policy, &kind, force);
                    match &d {
                        Decision::Clear(_, plan) => {
                            prop_assert!(allowed, "step {i}: force={force} {d:?}");
                            prop_assert_eq!(&kind_of(plan), &kind);
                            match kind {
                                Kind::Account => prop_assert!(m.spent_month() < policy.monthly_clears),
                                Kind::Api(_) => prop_assert!(m.api_spent_month() < policy.monthly_api_clears),
                            }
                            m.settle(m.now, &kind, outcome);
                        }
                        Decision::Hold(..) => prop_assert!(!allowed, "step {i}: force={force} {d:?}"),
                        Decision::NotDue => prop_assert!(false, "a manual clear is never NotDue"),
                    }
                }
            }
            // Whatever happened, the budgets hold: per month of each kind and per day.
            prop_assert!(m.spent_month() <= policy.monthly_clears);
            prop_assert!(m.api_spent_month() <= policy.monthly_api_clears);
            prop_assert!(m.spent_today() <= policy.max_clears_per_day);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Path normalisation
// ---------------------------------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,15}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn valid_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn normalize_is_idempotent_and_checked(raw in any::<String>()) {
        if let Ok(p) = apipath::normalize(&raw) {
            prop_assert!(apipath::check(&p).is_ok(), "{raw:?} -> {p:?}");
            prop_assert_eq!(apipath::normalize(&p), Ok(p.clone()));
            prop_assert!(!p.contains('?') && !p.contains('#'));
        }
    }

    #[test]
    fn normalize_of_path_like_strings(raw in "[ a-z/:.?#=&_-]{0,40}") {
        if let Ok(p) = apipath::normalize(&raw) {
            prop_assert!(apipath::check(&p).is_ok());
            prop_assert_eq!(apipath::normalize(&p), Ok(p.clone()));
            let before_query = raw.split(['?', '#']).next().unwrap();
            prop_assert!(before_query.contains(p.trim_start_matches('/')), "{raw:?} -> {p:?}");
        }
    }

    #[test]
    fn every_form_of_a_path_means_that_path(
        path in valid_path(),
        query in "[A-Za-z0-9=&_%-]{0,40}",
        host in "(https?://)[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{1,5})?",
        slash in any::<bool>(),
    ) {
        // Only paths the checker accepts are interesting here.
        prop_assume!(apipath::check(&path).is_ok());
        let tail = if slash { "/" } else { "" };
        for raw in [
            path.clone(),
            path[1..].to_string(),
            format!("{path}{tail}?{query}"),
            format!("{host}{path}{tail}?access_token={query}"),
            format!("  {path}#{query}  "),
        ] {
            prop_assert_eq!(apipath::normalize(&raw), Ok(path.clone()), "{:?}", raw);
        }
    }

    #[test]
    fn errors_never_repeat_the_query(
        bad in "[ %!*]{1,5}",
        secret in "[A-Za-z0-9]{12,24}",
    ) {
        let raw = format!("/cgi-bin/{bad}/x?access_token=TOK{secret}");
        let err = apipath::normalize(&raw).unwrap_err();
        prop_assert!(!err.contains(&secret), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Config round-trips
// ---------------------------------------------------------------------------------------

/// A duration and how a person might write it.
fn duration(max_secs: u64) -> impl Strategy<Value = (Duration, String)> {
    prop_oneof![
        (0..=max_secs).prop_map(|s| (Duration::from_secs(s), format!("{s}s"))),
        (0..=max_secs / 60).prop_map(|m| (Duration::from_secs(m * 60), format!("{m}m"))),
        (0..=max_secs / 3600).prop_map(|h| (Duration::from_secs(h * 3600), format!("{h}h"))),
    ]
}

#[derive(Debug, Clone)]
struct PolicyToml {
    policy: Policy,
    min_interval: String,
    quiet: String,
}

fn policy_toml() -> impl Strategy<Value = PolicyToml> {
    let watchable = [
        "/cgi-bin/user/get",
        "/cgi-bin/menu/get",
        "/cgi-bin/message/custom/send",
    ];
    (
        1u32..=1000,
        1u32..=10,
        0u32..10,
        1u32..=100,
        duration(3 * 86_400),
        duration(86_399),
        any::<bool>(),
        prop::sample::subsequence(watchable.to_vec(), 0..=3),
    )
        .prop_map(
            |(thr, monthly, reserve, per_day, (mi, mi_s), (q, q_s), on_45009, watch)| PolicyToml {
                policy: Policy {
                    threshold: f64::from(thr) / 1000.0,
                    clear_on_45009: on_45009,
                    reserve: reserve.min(monthly - 1),
                    monthly_clears: monthly,
                    min_interval: mi,
                    max_clears_per_day: per_day,
                    quiet_before_reset: q,
                    watch: watch.iter().map(|s| s.to_string()).collect(),
                    ..Policy::default()
                },
                min_interval: mi_s,
                quiet: q_s,
            },
        )
}

fn policy_body(p: &PolicyToml) -> String {
    let watch: Vec<String> = p.policy.watch.iter().map(|w| format!("{w:?}")).collect();
    format!(
        "threshold = {}\nclear_on_45009 = {}\nreserve = {}\nmonthly_clears = {}\n\
         min_interval = \"{}\"\nmax_clears_per_day = {}\nquiet_before_reset = \"{}\"\nwatch = [{}]\n",
        p.policy.threshold,
        p.policy.clear_on_45009,
        p.policy.reserve,
        p.policy.monthly_clears,
        p.min_interval,
        p.policy.max_clears_per_day,
        p.quiet,
        watch.join(", "),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn config_policy_round_trips(
        global in policy_toml(),
        own in prop::option::of(policy_toml()),
        timeout in duration(600).prop_filter("positive", |(d, _)| !d.is_zero()),
        dry_run in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let own_table = own
            .as_ref()
            .map(|p| format!("[accounts.policy]\n{}", policy_body(p)))
            .unwrap_or_default();
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:9477\"\nstate_dir = {state:?}\ndry_run = {dry_run}\n\n\
             [wechat]\ntimeout = \"{t}\"\n\n[policy]\n{global}\n\
             [[accounts]]\nname = \"shop\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s3cret\"\n{own_table}",
            state = dir.path().join("state").display().to_string(),
            t = timeout.1,
            global = policy_body(&global),
        );
        std::fs::write(&path, &text).unwrap();
        let (config, _warnings) = match wxquotad::config::load(&path) {
            Ok(c) => c,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n---\n{text}"))),
        };
        let expected = own.as_ref().unwrap_or(&global);
        prop_assert_eq!(&config.accounts[0].policy, &expected.policy, "{}", text);
        prop_assert_eq!(config.wechat.timeout, timeout.0);
        prop_assert_eq!(config.daemon.dry_run, dry_run);
    }
}
