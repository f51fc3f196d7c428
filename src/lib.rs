//! wxquotad keeps busy WeChat Official Accounts and Mini Programs from staying blocked
//! by their daily API limits (45009), spending `clear_quota`'s 10-a-month budget only
//! when one is needed and the policy allows it.
//!
//! # Layout
//! - [`config`]: the TOML file → validated runtime types, presets, secrets.
//! - [`time`]: the clock, and WeChat's days and months (UTC+8).
//! - [`apipath`]: one name per interface, whatever form a report uses.
//! - [`platform`]: third-party platforms: push crypto, tickets, authorizers.
//! - [`policy`]: pure decisions: is an account due, may it be cleared now.
//! - [`store`]: the SQLite state file: usage counters and the clear ledger.
//! - [`wechat`]: the WeChat client, token cache, errcode classification.
//! - [`engine`]: the one place that wires state → policy → client → state.
//! - [`api`]: the HTTP API (reports, status, clear, health).
//! - [`proxy`]: the counting proxy: WeChat's API forwarded, counted, tokens served.
//! - [`daemon`]: start-up, the background jobs, signals, shutdown.
//! - [`replay`]: `wxquotad replay`, the engine on a virtual clock over recorded traffic.
//! - [`sim`]: the WeChat simulator used by `run --simulate`, `sim` and the tests.
//! - [`cli`]: the command line, its client of the running daemon, what it prints.
//! - [`logging`]: text or JSON logs.

pub mod alerts;
pub mod api;
pub mod apipath;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod platform;
pub mod policy;
pub mod proxy;
pub mod replay;
pub mod sim;
pub mod store;
pub mod time;
pub mod wechat;
