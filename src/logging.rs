//! Structured logs: one line per event on stderr, as logfmt (`log_format = "text"`) or as
//! a JSON object (`"json"`), or straight to the journal under systemd. Level from
//! `RUST_LOG` (default `info`).
//!
//! Both line formats carry the same fields, in the same order: `timestamp`, `level`,
//! `message`, then the event's own fields (`event`, `account`, `api`, `trigger`,
//! `outcome`, `reason`, `clears_left`, …; in the journal `EVENT=`, `ACCOUNT=`, … as
//! journal fields). In logfmt a value is bare when it is a number, a boolean or a plain
//! word, and quoted otherwise with `\"`, `\\`, `\n`, `\r`, `\t` and `\uXXXX` escapes, so a
//! value (a clear's reason, say) can never break a line or forge another one.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
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

/// The level filter when `RUST_LOG` is unset: the daemon at info; the simulator's own
/// request lines (target `wxquotad::sim`) are debug and so hidden by `run --simulate`.
pub const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn";

/// For `wxquotad sim` on its own, where the requests are the point: show them.
pub const SIM_FILTER: &str = "info,tokio_cron_scheduler=warn,wxquotad::sim=debug";

/// Installs the global subscriber with [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) -> Sink {
    init_with(format, DEFAULT_FILTER)
}

/// Installs the global subscriber. With `log_format = "text"` and stderr connected to
/// the journal (`$JOURNAL_STREAM`, set by systemd), events go to journald natively so
/// their fields can be queried (`journalctl -u wxquotad EVENT=decision`).
/// `log_format = "json"` always writes JSON lines to stderr. `default_filter` applies
/// when `RUST_LOG` is unset.
pub fn init_with(format: LogFormat, default_filter: &str) -> Sink {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
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
    let sink = match format {
        LogFormat::Json => Sink::Json,
        LogFormat::Text => Sink::Text,
    };
    let _ = tracing_subscriber::registry()
        .with(
            LineLayer {
                json: sink == Sink::Json,
            }
            .with_filter(filter()),
        )
        .try_init();
    sink
}

/// Writes each event as one line on stderr.
struct LineLayer {
    json: bool,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let level = event.metadata().level().as_str();
        let mut all = Vec::with_capacity(fields.rest.len() + 3);
        all.push(("timestamp", Value::Str(timestamp)));
        all.push(("level", Value::Str(level.to_string())));
        all.push(("message", fields.message.unwrap_or_default()));
        all.extend(fields.rest);
        let line = if self.json {
            json_line(&all)
        } else {
            logfmt_line(&all)
        };
        // One write per line so lines from concurrent tasks never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// A field's value, typed as the event recorded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Default for Value {
    fn default() -> Value {
        Value::Str(String::new())
    }
}

/// An event's fields in the order they were written, the message apart.
#[derive(Default)]
struct Fields {
    message: Option<Value>,
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(value);
        } else if !name.starts_with("log.") {
            // `log.*` are the `log` crate's source locations, not part of an event.
            self.rest.push((name, value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Str(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::Str(format!("{value:?}")));
    }
}

/// One logfmt line: `key=value ...\n`.
pub fn logfmt_line(fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(256);
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        match value {
            Value::Str(s) => push_logfmt_str(&mut out, s),
            Value::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::F64(x) if x.is_finite() => {
                let _ = write!(out, "{x}");
            }
            Value::F64(x) => push_logfmt_str(&mut out, &x.to_string()),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push('\n');
    out
}

/// A string value: bare when it is a non-empty run of printable characters without
/// spaces, `=`, `"` or `\\`; quoted and escaped otherwise.
fn push_logfmt_str(out: &mut String, s: &str) {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '=' | '"' | '\\'));
    if bare {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Other control characters, and line or paragraph separators that some
            // viewers break lines at: escaped, never written raw.
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object per line, keys in the same order as the logfmt line.
pub fn json_line(fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*key).to_string());
        out.push(':');
        let v = match value {
            Value::Str(s) => serde_json::Value::from(s.as_str()),
            Value::I64(n) => serde_json::Value::from(*n),
            Value::U64(n) => serde_json::Value::from(*n),
            // serde_json writes a non-finite float as null; keep what it was.
            Value::F64(x) if x.is_finite() => serde_json::Value::from(*x),
            Value::F64(x) => serde_json::Value::from(x.to_string()),
            Value::Bool(b) => serde_json::Value::from(*b),
        };
        out.push_str(&v.to_string());
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: &str) -> String {
        logfmt_line(&[("k", Value::Str(v.to_string()))])
    }

    #[test]
    fn plain_words_are_bare_and_the_rest_quoted() {
        assert_eq!(line("shop"), "k=shop\n");
        assert_eq!(line("/cgi-bin/user/get"), "k=/cgi-bin/user/get\n");
        assert_eq!(line(""), "k=\"\"\n");
        assert_eq!(line("threshold /a 96%"), "k=\"threshold /a 96%\"\n");
        assert_eq!(line("a=b"), "k=\"a=b\"\n");
        assert_eq!(line("say \"hi\" \\o/"), "k=\"say \\\"hi\\\" \\\\o/\"\n");
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let forged = "x\n2026-01-01T00:00:00Z level=ERROR event=forged\r\u{1b}[31m\u{2028}";
        let out = line(forged);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(
            out.contains("\\n2026") && out.contains("\\r\\u001b[31m\\u2028"),
            "{out}"
        );
    }

    #[test]
    fn numbers_and_booleans_are_bare_in_both_formats() {
        let fields = [
            ("n", Value::U64(7)),
            ("i", Value::I64(-1)),
            ("x", Value::F64(0.95)),
            ("b", Value::Bool(true)),
        ];
        assert_eq!(logfmt_line(&fields), "n=7 i=-1 x=0.95 b=true\n");
        assert_eq!(
            json_line(&fields),
            "{\"n\":7,\"i\":-1,\"x\":0.95,\"b\":true}\n"
        );
    }
}
