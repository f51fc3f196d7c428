//! The `wxquotad` binary: command line → subcommand → exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use wxquotad::cli::{Cli, Command};
use wxquotad::config::{self, LoadOptions, PresetName};
use wxquotad::{client, daemon, logging};

/// EX_CONFIG from sysexits.h: the config is invalid.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = config::resolve_path(cli.config.clone());
    match cli.command {
        Command::Presets { name } => {
            let preset = name.as_deref().and_then(PresetName::parse);
            print!("{}", config::presets::render(preset));
            ExitCode::SUCCESS
        }
        Command::Check => match config::load(&path) {
            Ok((config, warnings)) => {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", config::summary(&config));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", path.display(), errors.0.len());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { simulate } => {
            let (config, warnings) = match config::load_with(&path, LoadOptions { simulate }) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            logging::init(config.daemon.log_format);
            for w in warnings {
                tracing::warn!(file = %path.display(), "{w}");
            }
            let rt = runtime();
            match rt.block_on(daemon::run(config, path, simulate)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(f) => {
                    tracing::error!("{}", f.message);
                    eprintln!("wxquotad: {}", f.message);
                    ExitCode::from(f.code)
                }
            }
        }
        Command::Sim { listen } => {
            logging::init_with(config::LogFormat::Text, logging::SIM_FILTER);
            let rt = runtime();
            match rt.block_on(run_sim(&path, listen, cli.config.is_some())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wxquotad sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { json } => client_command(&path, |c| async move {
            let value = c.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let doc: wxquotad::engine::StatusDoc = serde_json::from_value(value)?;
                print!("{}", client::render_status(&doc));
            }
            Ok(())
        }),
        Command::Report {
            account,
            api,
            calls,
            errcode,
        } => client_command(&path, |c| async move {
            let mut item = json!({"account": account, "api": api});
            match (calls, errcode) {
                (Some(n), _) => item["calls"] = json!(n),
                (_, Some(code)) => item["errcode"] = json!(code),
                _ => {}
            }
            let answer = c.report(item).await?;
            println!("{answer}");
            Ok(())
        }),
        Command::Clear {
            account,
            force,
            reason,
        } => client_command(&path, |c| async move {
            let answer = c.clear(&account, force, reason).await?;
            let outcome = answer["outcome"].as_str().unwrap_or("?").to_string();
            println!(
                "{}: {} ({})",
                account,
                outcome,
                answer["reason"].as_str().unwrap_or("")
            );
            if outcome != "cleared" {
                anyhow::bail!("not cleared");
            }
            Ok(())
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a command against the running daemon; exit 1 on any failure.
fn client_command<F, Fut>(path: &std::path::Path, f: F) -> ExitCode
where
    F: FnOnce(client::DaemonClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Secrets are not needed to talk to the daemon; only the address and API token.
    let config = match config::load_with(path, LoadOptions { simulate: true }) {
        Ok((c, _)) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let c = client::DaemonClient::new(&config);
    match runtime().block_on(f(c)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxquotad: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `wxquotad sim`: the simulator on its own, with the config's accounts when there is one.
async fn run_sim(
    path: &std::path::Path,
    listen: std::net::SocketAddr,
    config_given: bool,
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
    println!("wxquotad sim listening on http://{addr}");
    tracing::info!(event = "listening", addr = %addr, "simulator ready");
    sim.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
