//! `[[alerts]]`: webhooks and the events they receive.

use super::*;

impl Validator<'_> {
    pub(super) fn alert(&mut self, a: AlertFile, k: &KeyPath) -> Option<AlertSettings> {
        let kind = match a.kind.as_deref() {
            None => {
                self.error(
                    &k.key("kind"),
                    None,
                    "kind is missing; expected \"wecom\" or \"webhook\"".into(),
                );
                None
            }
            Some(_) => Some(self.choice(
                a.kind.as_deref(),
                AlertKind::Webhook,
                &[("wecom", AlertKind::Wecom), ("webhook", AlertKind::Webhook)],
                &k.key("kind"),
                None,
            )),
        };
        let url = match a.url {
            None => {
                self.error(
                    &k.key("url"),
                    None,
                    "url is missing; expected an http:// or https:// URL".into(),
                );
                None
            }
            Some(u) => {
                let u = u.trim().to_string();
                let ok = ["https://", "http://"]
                    .iter()
                    .any(|s| u.strip_prefix(s).is_some_and(|h| !h.is_empty()));
                if !ok {
                    // The URL is not echoed: a WeCom URL carries its key.
                    self.error(
                        &k.key("url"),
                        None,
                        "url must be an http:// or https:// URL (value not shown: it may hold a key)".into(),
                    );
                }
                Some(Secret::new(u))
            }
        };
        let events = match a.events {
            None => AlertEvent::ALL.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match AlertEvent::parse(n) {
                        Some(e) if !events.contains(&e) => events.push(e),
                        Some(_) => self.error(
                            &k.key("events").index(i),
                            None,
                            format!("event {n:?} is listed twice; expected each event once"),
                        ),
                        None => {
                            let all: Vec<String> = AlertEvent::ALL
                                .iter()
                                .map(|e| format!("{:?}", e.as_str()))
                                .collect();
                            self.error(
                                &k.key("events").index(i),
                                None,
                                format!("unknown event {n:?}; expected one of {}", all.join(", ")),
                            );
                        }
                    }
                }
                if names.is_empty() {
                    self.warn(
                        &k.key("events"),
                        None,
                        "events is empty, so this alert never fires".into(),
                    );
                }
                events
            }
        };
        let repeat_after = self.duration(
            a.repeat_after.as_deref(),
            HOUR,
            DurationRange::new(Duration::ZERO, 31 * DAY),
            &k.key("repeat_after"),
            None,
        );
        Some(AlertSettings {
            kind: kind?,
            url: url?,
            events,
            repeat_after,
        })
    }
}
