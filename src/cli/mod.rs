//! The command line (SPEC §2): the arguments ([`Cli`]), the client of the running
//! daemon ([`daemon_client`]) and what each command prints ([`output`]).
//!
//! Every command prints a short human answer on stdout, or with `--json` one JSON
//! document; errors go to stderr as `wxquotad: ...` (with `--json`, also as
//! `{"error": "..."}` on stdout), and the exit code says how it went.

pub mod daemon_client;
pub mod output;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand};

/// The exit codes, shown at the end of every `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   runtime failure (cannot listen, state unreadable, daemon not reachable,
      clear refused or failed)
  2   bad command-line usage
  78  invalid config (EX_CONFIG); every error names file, line and column";

/// Keeps WeChat accounts from staying blocked by their daily API limits, spending
/// clear_quota's monthly budget only when needed.
#[derive(Debug, Parser)]
#[command(name = "wxquotad", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Config file [default: $WXQUOTAD_CONFIG, else /etc/wxquotad/config.toml]
    #[arg(
        short,
        long,
        env = "WXQUOTAD_CONFIG",
        global = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (what systemd starts)
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Start the built-in WeChat simulator in-process and point the daemon at it
        /// (no credentials needed; state kept in a temporary directory)
        #[arg(long)]
        simulate: bool,
        /// Listen on ADDR (IP:port) instead of [daemon] listen; kept across reloads
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Decide and log, never clear, whatever [daemon] dry_run says; kept across reloads
        #[arg(long)]
        dry_run: bool,
        /// Log JSON lines, whatever [daemon] log_format says
        #[arg(long)]
        json: bool,
    },
    /// Validate the config and print a summary (like `nginx -t`)
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Check as `run --simulate` would load it: a secret file that is missing or an
        /// environment variable that is unset is a warning, not an error
        #[arg(long)]
        simulate: bool,
        /// Print the result as JSON: {"ok", "file", "warnings", "errors", ...}
        #[arg(long)]
        json: bool,
    },
    /// Print the built-in daily-limit tables (calls per API path per WeChat day)
    #[command(after_help = EXIT_CODES)]
    Presets {
        /// Which table: normal or test [default: both]
        #[arg(value_parser = ["normal", "test"])]
        name: Option<String>,
        /// Print the tables as JSON: {"normal": {"/cgi-bin/...": limit, ...}, ...}
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon for accounts, usage and budgets, as a table
    #[command(after_help = EXIT_CODES)]
    Status {
        /// Print the daemon's status document (GET /v1/status) as JSON
        #[arg(long)]
        json: bool,
        /// Only this platform's own account and its authorizers
        #[arg(long)]
        platform: Option<String>,
        /// Only accounts in this state: ok, exhausted or error
        #[arg(long)]
        state: Option<String>,
        /// Only accounts whose name or appid contains this text
        #[arg(long)]
        account: Option<String>,
    },
    /// Send one report to the running daemon (calls made, or an errcode seen)
    #[command(
        group(ArgGroup::new("what").required(true).args(["calls", "errcode"])),
        after_help = EXIT_CODES
    )]
    Report {
        /// The account's name in the config
        #[arg(long, value_name = "NAME")]
        account: String,
        /// API path, e.g. /cgi-bin/user/info (a full URL works; its query is dropped)
        #[arg(long, value_name = "PATH")]
        api: String,
        /// Calls made (1 to 1,000,000,000)
        #[arg(long, value_name = "N")]
        calls: Option<u64>,
        /// A WeChat errcode seen (45009 can trigger a clear)
        #[arg(long, allow_negative_numbers = true, value_name = "CODE")]
        errcode: Option<i64>,
        /// Print the daemon's answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to clear one account now
    #[command(after_help = EXIT_CODES)]
    Clear {
        /// The account's name in the config
        account: String,
        /// Skip the reserve, min_interval and quiet window (never the monthly budget)
        #[arg(long)]
        force: bool,
        /// Why, in your words (at most 200 characters); recorded in the ledger and log
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Reset only this interface (clearApiQuota, one of the 50 a month), e.g.
        /// /cgi-bin/user/get; without it the whole account (one of the 10)
        #[arg(long, value_name = "PATH")]
        api: Option<String>,
        /// Print the daemon's answer as JSON: {"outcome", "reason"}
        #[arg(long)]
        json: bool,
    },
    /// Replay a traffic file through the daemon's own engine and policy on a virtual
    /// clock against the simulator's rules, and compare with no clears, the naive rule
    /// and the best schedule of clears (no network, no state_dir; a malformed traffic
    /// file exits 1 naming its line)
    #[command(after_help = EXIT_CODES)]
    Replay {
        /// JSON Lines, one {"t", "account", "api", "calls"} per account, interface and
        /// minute of demand, sorted by time (what [daemon] traffic_log records)
        #[arg(long, value_name = "FILE")]
        traffic: PathBuf,
        /// How the engine sees the traffic: reports (served calls and 45009s), proxy
        /// (the same, and calls rejected in a minute with a clear are retried after
        /// it) or poll (only getApiQuota every [poll] interval)
        #[arg(long, default_value = "reports", value_parser = ["reports", "proxy", "poll"], value_name = "SOURCE")]
        source: String,
        /// Print the result as JSON (SPEC §9) instead of a table per account and day
        #[arg(long)]
        json: bool,
    },
    /// Run the WeChat quota API simulator on its own (with the config's accounts)
    #[command(after_help = EXIT_CODES)]
    Sim {
        /// Address (IP:port) to listen on
        #[arg(long, default_value = "127.0.0.1:9478", value_name = "ADDR")]
        listen: SocketAddr,
        /// Print the listening address as JSON ({"url": ...}) and log JSON lines
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_argument_has_help_and_every_command_its_exit_codes() {
        let cli = Cli::command();
        let mut commands = vec![&cli];
        commands.extend(cli.get_subcommands());
        for cmd in commands {
            assert!(
                cmd.get_after_help()
                    .is_some_and(|h| h.to_string().contains("78")),
                "{}: no exit codes in --help",
                cmd.get_name()
            );
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
                    "{} {id}: no help text",
                    cmd.get_name()
                );
            }
            if cmd.get_name() != "wxquotad" {
                assert!(
                    cmd.get_arguments().any(|a| a.get_id() == "json"),
                    "{}: no --json",
                    cmd.get_name()
                );
            }
        }
    }
}
