//! The latest decision events (SPEC §5, §11), kept in memory for
//! `GET /v1/decisions` and the status page: the same fields as the log's
//! `event=decision` lines, a bounded ring so memory stays flat however busy the daemon.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::policy::{self, Decision};
use crate::time::{show, Timestamp};

/// Decision events kept: enough for a page's worth and an incident's first minutes.
pub const CAPACITY: usize = 500;

/// One decision, as logged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionEvent {
    /// When it was decided, on the daemon's clock (UTC+8).
    pub timestamp: String,
    /// The log line's message.
    pub message: String,
    /// Always "decision".
    pub event: &'static str,
    pub account: String,
    /// The interface that triggered it, "-" for a manual clear.
    pub api: String,
    /// "threshold", "45009", "manual" or "forced".
    pub trigger: &'static str,
    /// "clear", "hold" or "dry_run".
    pub outcome: &'static str,
    /// For a clear: "account" (clear_quota) or "api" (clearApiQuota, one interface).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// For a hold: the closed gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<&'static str>,
    pub reason: String,
    /// Clears left this month when it was decided.
    pub clears_left: u32,
    /// Per-interface clears left this month when it was decided.
    pub api_clears_left: u32,
}

impl DecisionEvent {
    /// The event for `decision`, with (clears, per-interface clears) left; `None` for
    /// "not due", which is no event.
    pub fn new(
        account: &str,
        decision: &Decision,
        (clears_left, api_clears_left): (u32, u32),
        now: Timestamp,
    ) -> Option<DecisionEvent> {
        let (trigger, kind, outcome, gate, reason, message) = match decision {
            Decision::NotDue => return None,
            Decision::Clear(t, plan) => (
                t,
                Some(plan.kind().as_str()),
                "clear",
                None,
                t.to_string(),
                "clear decided".into(),
            ),
            Decision::Hold(t, hold) => (
                t,
                None,
                if matches!(hold, policy::Hold::DryRun) {
                    "dry_run"
                } else {
                    "hold"
                },
                Some(hold.kind()),
                hold.to_string(),
                format!("clear held: {t}"),
            ),
        };
        Some(DecisionEvent {
            timestamp: show(now),
            message,
            event: "decision",
            account: account.to_string(),
            api: trigger.api().unwrap_or("-").to_string(),
            trigger: trigger.kind(),
            outcome,
            kind,
            gate,
            reason,
            clears_left,
            api_clears_left,
        })
    }
}

/// The ring of the latest [`CAPACITY`] decision events.
#[derive(Debug, Default)]
pub struct DecisionLog {
    /// A std mutex: pushes and copies are short and never await.
    ring: Mutex<VecDeque<DecisionEvent>>,
}

impl DecisionLog {
    pub fn push(&self, event: DecisionEvent) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// At most `limit` events, newest first.
    pub fn latest(&self, limit: usize) -> Vec<DecisionEvent> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Trigger;

    fn event(n: u32) -> DecisionEvent {
        let t = Trigger::Manual {
            force: false,
            reason: Some(format!("#{n}")),
        };
        DecisionEvent::new(
            "shop",
            &Decision::Clear(t, crate::policy::Plan::Account),
            (n, 50),
            crate::time::parse("2026-11-18T12:00:00+08:00").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn newest_first_and_bounded() {
        let log = DecisionLog::default();
        for n in 0..(CAPACITY as u32 + 10) {
            log.push(event(n));
        }
        let all = log.latest(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].clears_left, CAPACITY as u32 + 9);
        assert_eq!(all[CAPACITY - 1].clears_left, 10);
        let two = log.latest(2);
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].clears_left, CAPACITY as u32 + 8);
    }

    #[test]
    fn not_due_is_no_event() {
        assert!(
            DecisionEvent::new("shop", &Decision::NotDue, (3, 50), chrono::Utc::now()).is_none()
        );
    }
}
