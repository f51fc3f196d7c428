//! The command line (SPEC §2).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand};

/// Keeps WeChat accounts from staying blocked by their daily API limits, spending
/// clear_quota's monthly budget only when needed.
#[derive(Debug, Parser)]
#[command(name = "wxquotad", version)]
pub struct Cli {
    /// Config file [default: $WXQUOTAD_CONFIG, else /etc/wxquotad/config.toml]
    #[arg(short, long, env = "WXQUOTAD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (what systemd starts)
    Run {
        /// Start the built-in WeChat simulator in-process and point the daemon at it
        #[arg(long)]
        simulate: bool,
    },
    /// Validate the config and print a summary
    Check,
    /// Print the built-in daily-limit tables
    Presets {
        /// normal or test (both when omitted)
        #[arg(value_parser = ["normal", "test"])]
        name: Option<String>,
    },
    /// Ask the running daemon for accounts, usage and budgets
    Status {
        /// Print the raw JSON document
        #[arg(long)]
        json: bool,
    },
    /// Send one report to the running daemon
    #[command(group(ArgGroup::new("what").required(true).args(["calls", "errcode"])))]
    Report {
        #[arg(long)]
        account: String,
        /// API path, e.g. /cgi-bin/user/info
        #[arg(long)]
        api: String,
        /// Calls made
        #[arg(long)]
        calls: Option<u64>,
        /// A WeChat errcode seen (45009 can trigger a clear)
        #[arg(long, allow_negative_numbers = true)]
        errcode: Option<i64>,
    },
    /// Ask the running daemon to clear one account now
    Clear {
        account: String,
        /// Skip the reserve, min_interval and quiet window (never the monthly budget)
        #[arg(long)]
        force: bool,
        /// Recorded in the ledger
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run the WeChat quota API simulator on its own
    Sim {
        #[arg(long, default_value = "127.0.0.1:9478")]
        listen: SocketAddr,
    },
}
