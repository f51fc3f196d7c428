//! `[poll]`: polling WeChat's own counters.

use super::*;

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);

impl Validator<'_> {
    pub(super) fn poll(&mut self, p: super::file::PollFile) -> PollSettings {
        let k = KeyPath::root().key("poll");
        let interval = self.duration(
            p.interval.as_deref(),
            DEFAULT_POLL_INTERVAL,
            DurationRange::off_or(SECOND, DAY),
            &k.key("interval"),
            None,
        );
        let apis = self.paths(&p.apis.unwrap_or_default(), &k.key("apis"), None);
        for (i, api) in apis.iter().enumerate() {
            if !crate::apipath::pollable(api) {
                self.error(
                    &k.key("apis").index(i),
                    None,
                    format!(
                        "{api} cannot be polled: getApiQuota does not report /sns/ interfaces; \
                         expected a path such as /cgi-bin/user/info"
                    ),
                );
            }
        }
        PollSettings { interval, apis }
    }
}
