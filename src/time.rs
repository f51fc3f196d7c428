//! Time: the clock the daemon reads, and WeChat's days and months (00:00 UTC+8).
//!
//! Everything else takes `now` as an argument; only the edges (the engine's
//! entry points, the simulator) ask a [`Clock`]. Days and months are derived
//! from timestamps here, never from the machine's time zone.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};

/// A point in time. Stored and compared in UTC; shown in UTC+8.
pub type Timestamp = DateTime<Utc>;

/// Environment variable that starts the clock at a given RFC 3339 instant and lets it
/// run from there in real time. For tests of debug builds only (day and month rollover
/// without waiting for midnight); a release build refuses to start with it set.
pub const FAKE_NOW_ENV: &str = "WXQUOTAD_FAKE_NOW";

/// Whether this build honours [`FAKE_NOW_ENV`]: debug builds (tests) only.
pub const FAKE_NOW_HONOURED: bool = cfg!(debug_assertions);

/// WeChat's time zone: UTC+8 (Beijing), no daylight saving.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The WeChat day (UTC+8 calendar date) that `t` falls in.
pub fn day_of(t: Timestamp) -> NaiveDate {
    t.with_timezone(&beijing()).date_naive()
}

/// The WeChat month of `t`, as "YYYY-MM" (UTC+8).
pub fn month_of(t: Timestamp) -> String {
    let local = t.with_timezone(&beijing());
    format!("{:04}-{:02}", local.year(), local.month())
}

/// The first instant of WeChat day `day` (00:00 UTC+8), in UTC.
pub fn start_of_day(day: NaiveDate) -> Timestamp {
    beijing()
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// The next daily reset strictly after `t`: the coming 00:00 UTC+8.
pub fn next_reset(t: Timestamp) -> Timestamp {
    start_of_day(day_of(t) + Duration::days(1))
}

/// The first instant of `t`'s WeChat month (the 1st, 00:00 UTC+8).
pub fn start_of_month(t: Timestamp) -> Timestamp {
    let day = day_of(t);
    start_of_day(day.with_day(1).expect("every month has a 1st"))
}

/// Formats `t` in UTC+8 with seconds, e.g. "2026-11-22T10:00:00+08:00".
pub fn show(t: Timestamp) -> String {
    t.with_timezone(&beijing())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Parses an RFC 3339 timestamp (any offset).
pub fn parse(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Where "now" comes from. Cheap to clone; clones share one clock.
#[derive(Clone)]
pub struct Clock {
    source: Arc<Source>,
}

enum Source {
    System,
    /// Real time shifted by a fixed amount (see [`FAKE_NOW_ENV`]).
    Shifted(Duration),
    /// Time that moves only when told to (in-process tests).
    Manual(Mutex<Timestamp>),
    /// Like `Manual`, and waiting takes no time: replay's clock, where the driver
    /// alone moves time, a minute at a time, and the engine's short pauses (between
    /// polls, before the check after a clear) fall within the minute.
    Virtual(Mutex<Timestamp>),
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Clock {
        Clock {
            source: Arc::new(Source::System),
        }
    }

    /// A clock that reads `start` now and then runs in real time.
    pub fn starting_at(start: Timestamp) -> Clock {
        Clock {
            source: Arc::new(Source::Shifted(start - Utc::now())),
        }
    }

    /// A clock that stays at `start` until [`Clock::advance`] or [`Clock::set`].
    pub fn manual(start: Timestamp) -> Clock {
        Clock {
            source: Arc::new(Source::Manual(Mutex::new(start))),
        }
    }

    /// A clock that stays at `start` until [`Clock::set`] or [`Clock::advance`], and
    /// whose [`Clock::sleep`] returns at once.
    pub fn virtual_at(start: Timestamp) -> Clock {
        Clock {
            source: Arc::new(Source::Virtual(Mutex::new(start))),
        }
    }

    /// Waits `d` of this clock's time: real time, except on a virtual clock, where it
    /// only yields (time there moves when the driver says).
    pub async fn sleep(&self, d: std::time::Duration) {
        match &*self.source {
            Source::Virtual(_) => tokio::task::yield_now().await,
            _ => tokio::time::sleep(d).await,
        }
    }

    /// The system clock, or a shifted one when [`FAKE_NOW_ENV`] is set — in debug
    /// builds only (what the tests run). A release build, what users run, never lets
    /// an environment variable move its clock: the variable set there is an error
    /// naming it, so nobody believes it took effect. An unparsable value is an error
    /// naming the variable.
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var(FAKE_NOW_ENV) {
            Ok(v) if !v.is_empty() => {
                if !FAKE_NOW_HONOURED {
                    return Err(format!(
                        "{FAKE_NOW_ENV} is set, but this is a release build, whose clock is always the system's; unset it (it is for tests of debug builds)"
                    ));
                }
                parse(&v)
                    .map(Clock::starting_at)
                    .ok_or_else(|| format!("{FAKE_NOW_ENV}={v:?} is not an RFC 3339 timestamp"))
            }
            _ => Ok(Clock::system()),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &*self.source {
            Source::System => Utc::now(),
            Source::Shifted(by) => Utc::now() + *by,
            Source::Manual(t) | Source::Virtual(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Moves a manual or virtual clock forward. No effect on the other kinds.
    pub fn advance(&self, by: std::time::Duration) {
        if let Source::Manual(t) | Source::Virtual(t) = &*self.source {
            let mut t = t.lock().expect("clock lock");
            *t += Duration::from_std(by).expect("duration in range");
        }
    }

    /// Sets a manual or virtual clock. No effect on the other kinds.
    pub fn set(&self, to: Timestamp) {
        if let Source::Manual(t) | Source::Virtual(t) = &*self.source {
            *t.lock().expect("clock lock") = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        parse(s).unwrap()
    }

    #[test]
    fn days_and_months_follow_utc8() {
        // 15:59:59 UTC is 23:59:59 in Beijing; one second later is the next day.
        assert_eq!(day_of(at("2026-11-22T15:59:59Z")).to_string(), "2026-11-22");
        assert_eq!(day_of(at("2026-11-22T16:00:00Z")).to_string(), "2026-11-23");
        assert_eq!(month_of(at("2026-11-30T15:59:59Z")), "2026-11");
        assert_eq!(month_of(at("2026-11-30T16:00:00Z")), "2026-12");
        assert_eq!(month_of(at("2026-12-31T16:00:00Z")), "2027-01");
    }

    #[test]
    fn next_reset_is_the_coming_midnight_in_beijing() {
        assert_eq!(
            next_reset(at("2026-11-22T10:00:00+08:00")),
            at("2026-11-23T00:00:00+08:00")
        );
        // Exactly at midnight the next reset is a day later.
        assert_eq!(
            next_reset(at("2026-11-23T00:00:00+08:00")),
            at("2026-11-24T00:00:00+08:00")
        );
        assert_eq!(
            start_of_month(at("2026-11-22T10:00:00+08:00")),
            at("2026-11-01T00:00:00+08:00")
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual(at("2026-11-22T10:00:00+08:00"));
        assert_eq!(c.now(), at("2026-11-22T10:00:00+08:00"));
        c.advance(std::time::Duration::from_secs(60));
        assert_eq!(show(c.now()), "2026-11-22T10:01:00+08:00");
    }

    #[tokio::test]
    async fn a_virtual_clock_moves_only_when_told_and_its_sleeps_take_no_time() {
        let c = Clock::virtual_at(at("2026-11-22T10:00:00+08:00"));
        // An hour's sleep returns at once (the test's own limit would catch a real one).
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            c.sleep(std::time::Duration::from_secs(3600)),
        )
        .await
        .expect("a virtual sleep returns at once");
        assert_eq!(show(c.now()), "2026-11-22T10:00:00+08:00");
        c.set(at("2026-11-22T10:05:00+08:00"));
        assert_eq!(show(c.now()), "2026-11-22T10:05:00+08:00");
    }
}
