//! The real daemon's log lines: text logs parse as strict logfmt and carry exactly the
//! fields of the JSON logs; a value with control characters (a clear's reason) never
//! breaks or forges a line; the simulator's request lines stay at debug.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One parsed logfmt value: its text, and whether it was written bare.
#[derive(Debug, Clone, PartialEq)]
struct Logfmt {
    text: String,
    bare: bool,
}

/// Parses one line as strict logfmt: `key=value` pairs separated by one space; a value
/// is bare (no space, `=`, `"`, `\` or control character) or quoted with `\"`, `\\`,
/// `\n`, `\r`, `\t` and `\uXXXX` escapes. Any other shape is an error.
fn parse_logfmt(line: &str) -> Result<Vec<(String, Logfmt)>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            if c.is_whitespace() || c.is_control() || c == '"' {
                return Err(format!("bad character {c:?} in key after {out:?}"));
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            return Err(format!("expected key=value after {out:?}"));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote for {key}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => text.push('"'),
                        Some('\\') => text.push('\\'),
                        Some('n') => text.push('\n'),
                        Some('r') => text.push('\r'),
                        Some('t') => text.push('\t'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let unit = u16::from_str_radix(&hex, 16)
                                .map_err(|_| format!("bad \\u escape in {key}"))?;
                            text.push(char::from_u32(unit.into()).ok_or("surrogate")?);
                        }
                        other => return Err(format!("bad escape {other:?} in {key}")),
                    },
                    Some(c) if c.is_control() => {
                        return Err(format!("raw control character {c:?} in {key}"))
                    }
                    Some(c) => text.push(c),
                }
            }
            Logfmt { text, bare: false }
        } else {
            let mut text = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\') {
                    return Err(format!("bad character {c:?} in bare value of {key}"));
                }
                text.push(c);
                chars.next();
            }
            if text.is_empty() {
                return Err(format!("empty bare value for {key}"));
            }
            Logfmt { text, bare: true }
        };
        out.push((key, value));
        match chars.next() {
            None => return Ok(out),
            Some(' ') => {}
            Some(c) => return Err(format!("expected a space, got {c:?}")),
        }
    }
}

/// The daemon (`run --simulate` on the test config) with its stderr lines collected.
struct Run {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Run {
    fn start(config: &Path) -> Run {
        let mut child = bin()
            .arg("-c")
            .arg(config)
            .args(["run", "--simulate"])
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env(wxquotad::time::FAKE_NOW_ENV, clock().now().to_rfc3339())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wxquotad starts");
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Run { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `f`.
    fn wait_line(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| f(l)) {
                return l;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {what} in:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> Vec<String> {
        signal(self.child.id(), "TERM");
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(30), "did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread takes the last lines at end of file.
        let start = Instant::now();
        while !self.lines().iter().any(|l| l.contains("stopped")) {
            assert!(start.elapsed() < Duration::from_secs(10), "no last line");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reason crafted to forge a log line if control characters were written raw.
const FORGING_REASON: &str =
    "ops ticket 7\n2026-11-18T04:00:00Z level=ERROR event=forged \"x=1\"\r\t\u{1b}[31m";

/// Runs the same scenario with `log_format`: a threshold clear, then a forced clear with
/// [`FORGING_REASON`]. Returns the log lines, every one read to the end.
async fn scenario(log_format: &str) -> Vec<String> {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    setup.edit(
        "log_format = \"json\"",
        &format!("log_format = \"{log_format}\""),
    );
    let addr = setup.use_free_port();
    let run = Run::start(&setup.config);
    run.wait_line("listening event", |l| l.contains("listening"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{addr}/v1/report"))
        .body(r#"{"account":"shop","api":"/cgi-bin/user/get","calls":480}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    run.wait_line("first cleared event", |l| l.contains("cleared via"));
    let r = http
        .post(format!("http://{addr}/v1/accounts/shop/clear"))
        .body(serde_json::json!({"force": true, "reason": FORGING_REASON}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["outcome"], "cleared", "{answer}");
    run.terminate()
}

/// Every line as an ordered key → value list, strings for comparison.
type Parsed = Vec<(String, String)>;

fn events<'a>(parsed: &'a [Parsed], event: &str) -> Vec<&'a Parsed> {
    parsed
        .iter()
        .filter(|p| p.iter().any(|(k, v)| k == "event" && v == event))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_are_logfmt_with_the_json_fields_and_cannot_be_forged() {
    limited(async {
        let text = scenario("text").await;
        let json = scenario("json").await;

        // Every text line is strict logfmt; numbers are bare.
        let mut text_parsed: Vec<Parsed> = Vec::new();
        for line in &text {
            let fields = parse_logfmt(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            for (k, v) in &fields {
                if k == "clears_left" || k == "accounts" || k == "rows" {
                    assert!(v.bare && v.text.parse::<u64>().is_ok(), "{k}: {line}");
                }
            }
            text_parsed.push(fields.into_iter().map(|(k, v)| (k, v.text)).collect());
        }
        let json_parsed: Vec<Parsed> = json
            .iter()
            .map(|line| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                let obj = v.as_object().expect("an object per line");
                obj.iter()
                    .map(|(k, v)| {
                        let s = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect()
            })
            .collect();

        // Same events, same fields, same values (timestamps and ports aside).
        // (Decisions to clear only: a tick that lands while a clear is in flight adds a
        // "hold" decision in one run and not the other.)
        let clearing = |p: &&Parsed| {
            !p.iter().any(|(k, v)| k == "event" && v == "decision")
                || p.iter().any(|(k, v)| k == "outcome" && v == "clear")
        };
        for event in ["listening", "decision", "cleared"] {
            let t: Vec<&Parsed> = events(&text_parsed, event)
                .into_iter()
                .filter(clearing)
                .collect();
            let j: Vec<&Parsed> = events(&json_parsed, event)
                .into_iter()
                .filter(clearing)
                .collect();
            assert!(
                !t.is_empty(),
                "no {event} in the text log:\n{}",
                text.join("\n")
            );
            assert_eq!(t.len(), j.len(), "{event} count");
            for (t, j) in t.iter().zip(&j) {
                let t: BTreeMap<_, _> = t.iter().cloned().collect();
                let j: BTreeMap<_, _> = j.iter().cloned().collect();
                assert_eq!(
                    t.keys().collect::<Vec<_>>(),
                    j.keys().collect::<Vec<_>>(),
                    "{event} fields"
                );
                for (k, v) in &t {
                    if !matches!(k.as_str(), "timestamp" | "addr") {
                        assert_eq!(Some(v), j.get(k), "{event}.{k}");
                    }
                }
            }
        }
        // The timestamp, level and message lead every text line.
        for p in &text_parsed {
            let keys: Vec<&str> = p.iter().take(3).map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["timestamp", "level", "message"], "{p:?}");
        }

        // The forged line exists only inside a quoted value, read back exactly.
        assert!(!text_parsed
            .iter()
            .any(|p| p.iter().any(|(k, v)| k == "level" && v == "ERROR")));
        assert!(events(&text_parsed, "forged").is_empty());
        let forced = events(&text_parsed, "cleared")
            .into_iter()
            .find(|p| p.iter().any(|(k, v)| k == "trigger" && v == "forced"))
            .expect("the forced clear's event");
        let reason = &forced.iter().find(|(k, _)| k == "reason").unwrap().1;
        assert!(reason.ends_with(FORGING_REASON), "{reason:?}");

        // The simulator's own request lines are debug: not in an info log.
        for lines in [&text, &json] {
            assert!(
                !lines.iter().any(|l| l.contains("sim request")),
                "simulator request lines at info:\n{}",
                lines.join("\n")
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_on_its_own_shows_its_debug_request_lines() {
    limited(async {
        let setup = Setup::new("http://127.0.0.1:9", "", "");
        let mut child = bin()
            .arg("-c")
            .arg(&setup.config)
            .args(["sim", "--listen", "127.0.0.1:0", "--json"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wxquotad sim starts");
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let url = serde_json::from_str::<Value>(&first).expect("sim --json prints its URL")["url"]
            .as_str()
            .unwrap()
            .to_string();
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let r = reqwest::Client::new()
            .post(format!("{url}/cgi-bin/stable_token"))
            .body(format!(
                r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"{SECRET}"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let line = wait_for("the request line", Duration::from_secs(20), || async {
            lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("sim request"))
                .cloned()
        })
        .await;
        // --json: JSON lines; the request is there at debug, by default for `sim`.
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(v["level"], "DEBUG");
        assert_eq!(v["endpoint"], "/cgi-bin/stable_token");
        assert!(!lines.lock().unwrap().iter().any(|l| l.contains(SECRET)));
        signal(child.id(), "INT");
        let _ = child.wait();
    })
    .await;
}
