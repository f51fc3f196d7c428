//! The `wxquotad` binary: command line → subcommand → exit code.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde_json::{json, Value};

use wxquotad::cli::{daemon_client::DaemonClient, output, Cli, Command};
use wxquotad::config::{self, LoadOptions, LogFormat, PresetName};
use wxquotad::{daemon, logging};

/// EX_CONFIG from sysexits.h: the config is invalid.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = config::resolve_path(cli.config.clone());
    match cli.command {
        Command::Presets { name, json } => {
            let preset = name.as_deref().and_then(PresetName::parse);
            if json {
                print_json(&output::presets_json(preset));
            } else {
                print!("{}", config::presets::render(preset));
            }
            ExitCode::SUCCESS
        }
        Command::Check { simulate, json } => check(&path, simulate, json),
        Command::Run {
            simulate,
            listen,
            dry_run,
            json,
        } => {
            let overrides = daemon::Overrides { listen, dry_run };
            run(&path, simulate, overrides, json)
        }
        Command::Replay {
            traffic,
            source,
            json,
        } => {
            let source = wxquotad::replay::Source::parse(&source).expect("clap checked it");
            ExitCode::from(wxquotad::replay::command(&path, &traffic, source, json))
        }
        Command::Sim { listen, json } => {
            let format = if json {
                LogFormat::Json
            } else {
                LogFormat::Text
            };
            logging::init_with(format, logging::SIM_FILTER);
            match runtime().block_on(run_sim(&path, listen, cli.config.is_some(), json)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(json, &format!("sim: {e:#}"), ExitCode::FAILURE),
            }
        }
        Command::Status {
            json,
            platform,
            state,
            account,
        } => client_command(&path, json, |c| async move {
            let filters: Vec<(&str, &str)> = [
                ("platform", platform.as_deref()),
                ("state", state.as_deref()),
                ("account", account.as_deref()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let value = c.status_filtered(&filters).await?;
            if json {
                print_json(&value);
            } else {
                let doc: wxquotad::engine::StatusDoc = serde_json::from_value(value)?;
                print!("{}", output::render_status(&doc));
            }
            Ok(())
        }),
        Command::Report {
            account,
            api,
            calls,
            errcode,
            json,
        } => client_command(&path, json, |c| async move {
            let mut item = json!({"account": account, "api": api});
            match (calls, errcode) {
                (Some(n), _) => item["calls"] = json!(n),
                (_, Some(code)) => item["errcode"] = json!(code),
                _ => {}
            }
            let answer = c.report(item).await?;
            if json {
                print_json(&answer);
            } else {
                print!(
                    "{}",
                    output::report_line(&account, &api, calls, errcode, &answer)
                );
            }
            Ok(())
        }),
        Command::Clear {
            account,
            force,
            reason,
            api,
            json,
        } => client_command(&path, json, |c| async move {
            let answer = c.clear(&account, force, reason, api).await?;
            if json {
                print_json(&answer);
            } else {
                print!("{}", output::clear_lines(&account, &answer));
            }
            let outcome = answer["outcome"].as_str().unwrap_or("unknown");
            if outcome != "cleared" {
                // Already said on stdout; the exit code tells scripts.
                return Err(Quiet(format!("{account} was not cleared ({outcome})")).into());
            }
            Ok(())
        }),
    }
}

/// `check`: validate and summarise; 78 with every error when invalid.
fn check(path: &Path, simulate: bool, json: bool) -> ExitCode {
    match config::load_with(path, LoadOptions { simulate }) {
        Ok((config, warnings)) => {
            if json {
                print_json(&output::check_json(&config, &warnings));
            } else {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", config::summary(&config));
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            if json {
                print_json(&output::check_errors_json(path, &errors));
            }
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `run`: load, apply the command line's overrides, log, serve until SIGTERM.
fn run(path: &Path, simulate: bool, overrides: daemon::Overrides, json: bool) -> ExitCode {
    let (mut config, warnings) = match config::load_with(path, LoadOptions { simulate }) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    overrides.apply(&mut config);
    if let Some(listen) = overrides.listen {
        // The same rule the config's own `listen` obeys (SPEC §3).
        if !listen.ip().is_loopback() && config.daemon.api_token.is_none() {
            eprintln!(
                "--listen {listen}: a non-loopback address requires [daemon] api_token_file in {}",
                path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    if json {
        config.daemon.log_format = LogFormat::Json;
    }
    logging::init(config.daemon.log_format);
    for w in warnings {
        tracing::warn!(file = %path.display(), "{w}");
    }
    match runtime().block_on(daemon::run(config, path.to_path_buf(), simulate, overrides)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            tracing::error!("{}", f.message);
            eprintln!("wxquotad: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A failure whose explanation is already on stdout: only the exit code is left to give.
#[derive(Debug)]
struct Quiet(String);

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Quiet {}

/// Reports a failure: `wxquotad: ...` on stderr, and with `--json` `{"error": ...}` on
/// stdout so a script reading stdout always gets a JSON document.
fn fail(json: bool, message: &str, code: ExitCode) -> ExitCode {
    if json {
        print_json(&json!({ "error": message }));
    }
    eprintln!("wxquotad: {message}");
    code
}

/// Runs a command against the running daemon; exit 1 on any failure.
fn client_command<F, Fut>(path: &Path, json: bool, f: F) -> ExitCode
where
    F: FnOnce(DaemonClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Secrets are not needed to talk to the daemon; only the address and API token.
    let config = match config::load_with(path, LoadOptions { simulate: true }) {
        Ok((c, _)) => c,
        Err(errors) => {
            let message = errors.to_string();
            if json {
                print_json(&output::check_errors_json(path, &errors));
            }
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let c = DaemonClient::new(&config);
    match runtime().block_on(f(c)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Quiet>() => {
            eprintln!("wxquotad: {e}");
            ExitCode::FAILURE
        }
        Err(e) => fail(json, &format!("{e:#}"), ExitCode::FAILURE),
    }
}

/// `wxquotad sim`: the simulator on its own, with the config's accounts when there is one.
async fn run_sim(
    path: &Path,
    listen: std::net::SocketAddr,
    config_given: bool,
    json: bool,
) -> anyhow::Result<()> {
    let clock = wxquotad::time::Clock::from_env().map_err(anyhow::Error::msg)?;
    let sim = wxquotad::sim::Simulator::new(clock);
    if config_given || path.exists() {
        let (config, _) = config::load_with(path, LoadOptions { simulate: true })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for a in &config.accounts {
            sim.add_account(&a.appid, a.secret.expose(), a.limits.clone());
            tracing::info!(account = %a.name, appid = %a.appid, "simulated account");
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    if json {
        println!("{}", json!({ "url": format!("http://{addr}") }));
    } else {
        println!("wxquotad sim: listening on http://{addr}");
    }
    tracing::info!(event = "listening", addr = %addr, "simulator ready");
    sim.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
