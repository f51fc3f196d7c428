//! Alerts to people: WeCom group robots and generic JSON webhooks, sent in the
//! background with retries, never blocking a clear, at most one per account and event
//! per `repeat_after` (default 1 h) so a flapping condition does not spam.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{AlertEvent, AlertKind, AlertSettings};
use crate::time::{show, Timestamp};

/// Alerts waiting to be sent; past this, new ones are dropped with a warning.
const QUEUE: usize = 1024;
/// Tries per alert, with 1 s, 2 s between them.
const TRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

struct Outgoing {
    settings: AlertSettings,
    event: AlertEvent,
    account: String,
    message: String,
    at: Timestamp,
}

/// The alert sender. Owned by the engine.
pub struct Alerter {
    settings: Mutex<Vec<AlertSettings>>,
    /// When each (alert index, account, event) was last sent.
    last_sent: Mutex<HashMap<(usize, String, AlertEvent), Timestamp>>,
    tx: Option<mpsc::Sender<Outgoing>>,
}

impl Alerter {
    /// Starts the sending task when called inside a tokio runtime (otherwise alerts
    /// are only logged).
    pub fn new(settings: Vec<AlertSettings>) -> Alerter {
        let tx = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, rx) = mpsc::channel(QUEUE);
            rt.spawn(deliver(rx));
            tx
        });
        Alerter {
            settings: Mutex::new(settings),
            last_sent: Mutex::new(HashMap::new()),
            tx,
        }
    }

    /// New settings at reload; the repeat memory starts afresh.
    pub fn update(&self, settings: Vec<AlertSettings>) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
        self.last_sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Queues `event` for every alert that wants it and has not sent it for this
    /// account within its `repeat_after`.
    pub fn send(&self, event: AlertEvent, account: &str, message: &str, now: Timestamp) {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut last = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in settings.into_iter().enumerate() {
            if !s.events.contains(&event) {
                continue;
            }
            let key = (i, account.to_string(), event);
            if let Some(at) = last.get(&key) {
                if (now - *at).to_std().unwrap_or_default() < s.repeat_after {
                    info!(
                        event = event.as_str(),
                        account, "alert not repeated within repeat_after"
                    );
                    continue;
                }
            }
            last.insert(key, now);
            let Some(tx) = &self.tx else { continue };
            let out = Outgoing {
                settings: s,
                event,
                account: account.to_string(),
                message: message.to_string(),
                at: now,
            };
            if tx.try_send(out).is_err() {
                warn!(
                    event = event.as_str(),
                    account, "alert queue full; alert dropped"
                );
            }
        }
    }
}

/// The body for one alert.
fn body(o: &Outgoing) -> serde_json::Value {
    match o.settings.kind {
        AlertKind::Wecom => json!({
            "msgtype": "markdown",
            "markdown": {"content": format!(
                "**wxquotad** · `{}` · account **{}**\n> {}\n> <font color=\"comment\">{}</font>",
                o.event.as_str(), o.account, o.message, show(o.at)
            )}
        }),
        AlertKind::Webhook => json!({
            "source": "wxquotad",
            "event": o.event.as_str(),
            "account": o.account,
            "message": o.message,
            "at": show(o.at),
        }),
    }
}

async fn deliver(mut rx: mpsc::Receiver<Outgoing>) {
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(_) => return,
    };
    while let Some(o) = rx.recv().await {
        let body = body(&o);
        let mut ok = false;
        for attempt in 1..=TRIES {
            match send_once(&http, &o, &body).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(why) => {
                    warn!(event = o.event.as_str(), account = %o.account, attempt, why, "alert not delivered");
                    if attempt < TRIES {
                        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                    }
                }
            }
        }
        if ok {
            info!(alert = o.event.as_str(), account = %o.account, "alert sent");
        }
    }
}

/// One POST. Errors never include the URL (a WeCom URL holds its key).
async fn send_once(
    http: &reqwest::Client,
    o: &Outgoing,
    body: &serde_json::Value,
) -> Result<(), String> {
    let resp = http
        .post(o.settings.url.expose())
        .json(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if o.settings.kind == AlertKind::Wecom {
        // WeCom answers 200 with {"errcode": N} on failure.
        let v: serde_json::Value = resp.json().await.map_err(|e| e.without_url().to_string())?;
        if v["errcode"].as_i64().unwrap_or(0) != 0 {
            return Err(format!("WeCom errcode {}", v["errcode"]));
        }
    }
    Ok(())
}
