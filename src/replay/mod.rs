//! `wxquotad replay` (SPEC §9): a traffic file through the daemon's own engine and
//! policy on a virtual clock, against the simulator's rules, compared with doing
//! nothing and with the best schedule of clears.
//!
//! Layout:
//! - [`traffic`]: the JSON Lines file, parsed strictly (errors name the line);
//! - [`model`]: the minute model (counters, serving, 45009), pure;
//! - [`oracle`]: the best schedule knowing the whole file;
//! - [`output`]: the `--json` document and the per-day table;
//! - [`record`]: `[daemon] traffic_log`, the daemon writing traffic files.

mod driver;
pub mod model;
pub mod oracle;
pub mod output;
pub mod record;
pub mod traffic;

use std::collections::BTreeMap;

use chrono::NaiveDate;

pub use driver::run;
use model::{DayStats, Quota};
use traffic::Minute;

/// How the engine sees the traffic (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Every served call and a 45009 for each rejected interface (the default).
    Reports,
    /// As reports, and calls rejected in a minute with a clear are retried after it.
    Proxy,
    /// Only getApiQuota every `[poll] interval`.
    Poll,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Reports => "reports",
            Source::Proxy => "proxy",
            Source::Poll => "poll",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [Source::Reports, Source::Proxy, Source::Poll]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A clear the daemon made during the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeClear {
    pub minute: Minute,
    /// The interface of a per-interface clear; `None` for an account clear.
    pub api: Option<String>,
    /// The decision's trigger ("45009", "threshold").
    pub trigger: String,
}

/// One account's replay.
#[derive(Debug, Clone)]
pub struct AccountRun {
    pub name: String,
    pub quotas: Vec<Quota>,
    /// With the daemon's engine and policy.
    pub days: BTreeMap<NaiveDate, DayStats>,
    pub clears: Vec<MadeClear>,
    /// With no clears.
    pub none: BTreeMap<NaiveDate, DayStats>,
    pub oracle: oracle::Best,
    /// The naive rule (clear at the first 45009 whenever a budget allows), per day.
    pub naive: BTreeMap<NaiveDate, DayStats>,
}

/// A whole replay.
#[derive(Debug, Clone)]
pub struct Replay {
    pub from: Minute,
    pub to: Minute,
    pub source: Source,
    pub accounts: Vec<AccountRun>,
}

/// `wxquotad replay`: loads the config (secrets need not resolve: replay never uses
/// them), reads the traffic file, replays it and prints the table or, with `json`, the
/// document. Returns the exit code: 0, 1 for an unreadable or malformed traffic file or
/// a failed replay, 78 for an invalid config.
pub fn command(
    config_path: &std::path::Path,
    traffic_path: &std::path::Path,
    source: Source,
    json: bool,
) -> u8 {
    let fail = |message: String, code: u8| {
        eprintln!("wxquotad: {message}");
        if json {
            println!("{}", serde_json::json!({ "error": message }));
        }
        code
    };
    let config = match crate::config::load_with(
        config_path,
        crate::config::LoadOptions { simulate: true },
    ) {
        Ok((c, _warnings)) => c,
        Err(errors) => return fail(format!("{errors}"), 78),
    };
    let text = match std::fs::read_to_string(traffic_path) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", traffic_path.display()), 1),
    };
    let traffic = match traffic::parse(&text) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", traffic_path.display()), 1),
    };
    // One thread: the driver, the engine's clears and the simulator take turns, which
    // costs far fewer wake-ups than handing each minute between threads.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}"), 1),
    };
    let (replay, unknown) = match rt.block_on(run(&config, &traffic, source)) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", traffic_path.display()), 1),
    };
    if !unknown.is_empty() {
        eprintln!(
            "wxquotad: warning: {} names accounts the config does not have, left out: {}",
            traffic_path.display(),
            unknown.join(", ")
        );
    }
    if json {
        match serde_json::to_string_pretty(&output::doc(&replay)) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(format!("cannot write the document: {e}"), 1),
        }
    } else {
        print!("{}", output::table(&replay));
    }
    0
}
