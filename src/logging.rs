//! Structured logs: text or one JSON object per line (`log_format`) on stderr, or
//! straight to the journal under systemd. Level from `RUST_LOG` (default `info`).
//! Field names are stable: `event`, `account`, `api`, `trigger`, `outcome`, `reason`,
//! `clears_left` (in the journal: `EVENT=`, `ACCOUNT=`, … as journal fields).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Where the logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Text,
    Json,
    Journal,
}

/// Installs the global subscriber. With `log_format = "text"` and stderr connected to
/// the journal (`$JOURNAL_STREAM`, set by systemd), events go to journald natively so
/// their fields can be queried (`journalctl -u wxquotad EVENT=decision`).
/// `log_format = "json"` always writes JSON lines to stderr.
pub fn init(format: LogFormat) -> Sink {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,tokio_cron_scheduler=warn"))
    };
    if format == LogFormat::Text && std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal
                .with_syslog_identifier("wxquotad".into())
                .with_field_prefix(None);
            if tracing_subscriber::registry()
                .with(journal.with_filter(filter()))
                .try_init()
                .is_ok()
            {
                return Sink::Journal;
            }
        }
    }
    // Colours only for a person at a terminal, never for files or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let (layer, sink) = match format {
        LogFormat::Json => (
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_filter(filter())
                .boxed(),
            Sink::Json,
        ),
        LogFormat::Text => (fmt.with_filter(filter()).boxed(), Sink::Text),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    sink
}
