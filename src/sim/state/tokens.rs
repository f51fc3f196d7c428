//! The simulator's token rules: credentials, `/cgi-bin/token` (counted, revokes the
//! previous token after 5 minutes), `/cgi-bin/stable_token` (the same token while it
//! has more than 5 minutes left; `force_refresh` limited), and token checks.

use chrono::Duration;
use serde_json::{json, Value};

use super::{Account, Answer, Request, SimState};
use super::{
    FORCE_REFRESH_GAP_SECS, FORCE_REFRESH_PER_DAY, OVERLAP_SECS, TOKEN_CHARS, TOKEN_LIFETIME_SECS,
};
use crate::time::{day_of, Timestamp};

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) appid: String,
    expires_at: Timestamp,
    /// From this instant the token answers 40001 (replaced, not expired).
    revoked_at: Option<Timestamp>,
}

fn new_token_value() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(TOKEN_CHARS)
        .collect()
}

pub(super) fn seconds(n: i64) -> Duration {
    Duration::seconds(n)
}

impl SimState {
    /// The account of a valid `access_token` query parameter.
    pub(super) fn token_account(&self, req: &Request, now: Timestamp) -> Result<String, Answer> {
        let value = req
            .param("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Answer::err(41001, "access_token missing"))?;
        let token = self.tokens.get(value).ok_or_else(|| {
            Answer::err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        })?;
        if token.revoked_at.is_some_and(|r| r <= now) {
            return Err(Answer::err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            ));
        }
        if token.expires_at <= now {
            return Err(Answer::err(42001, "access_token expired"));
        }
        Ok(token.appid.clone())
    }

    /// The account named by `appid` with `secret` checked: 41002, 41004, 40013, 40125.
    pub(super) fn credentials(
        &mut self,
        appid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<&mut Account, Answer> {
        let appid = appid
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Answer::err(41002, "appid missing"))?;
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Answer::err(41004, "appsecret missing"))?;
        let account = self
            .accounts
            .get_mut(appid)
            .ok_or_else(|| Answer::err(40013, "invalid appid"))?;
        if account.secret != secret {
            return Err(Answer::err(40125, "invalid appsecret"));
        }
        Ok(account)
    }

    fn issue(&mut self, appid: &str, now: Timestamp) -> String {
        let value = new_token_value();
        self.tokens.insert(
            value.clone(),
            Token {
                appid: appid.to_string(),
                expires_at: now + seconds(TOKEN_LIFETIME_SECS),
                revoked_at: None,
            },
        );
        // Forget tokens long dead so the map does not grow without end.
        self.tokens
            .retain(|_, t| t.expires_at + seconds(TOKEN_LIFETIME_SECS) > now);
        value
    }

    fn token_answer(&self, value: &str, now: Timestamp) -> Answer {
        let expires_in = (self.tokens[value].expires_at - now).num_seconds().max(0);
        Answer {
            body: json!({ "access_token": value, "expires_in": expires_in }),
        }
    }

    /// `GET /cgi-bin/token`: counts against its own daily limit, issues a new token
    /// and revokes the previous one 5 minutes later.
    pub(super) fn classic_token(
        &mut self,
        req: &Request,
        now: Timestamp,
    ) -> Result<Answer, Answer> {
        if req.post {
            return Err(Answer::err(43001, "require GET method"));
        }
        if req.param("grant_type") != Some("client_credential") {
            return Err(Answer::err(40002, "invalid grant_type"));
        }
        let path = req.path;
        let account = self.credentials(req.param("appid"), req.param("secret"))?;
        account.check_quota(path, now)?;
        account.count(path, now);
        let previous = account.classic.take();
        let appid = req.param("appid").unwrap_or_default().to_string();
        let value = self.issue(&appid, now);
        if let Some(old) = previous.and_then(|p| self.tokens.get_mut(&p)) {
            let cut = now + seconds(OVERLAP_SECS);
            old.revoked_at = Some(old.revoked_at.map_or(cut, |r| r.min(cut)));
        }
        self.accounts.get_mut(&appid).expect("checked").classic = Some(value.clone());
        Ok(self.token_answer(&value, now))
    }

    /// `POST /cgi-bin/stable_token`: the same token while it has more than 5 minutes
    /// left, else a new one; `force_refresh` at most 20 a day, 30 s apart.
    pub(super) fn stable_token(&mut self, req: &Request, now: Timestamp) -> Result<Answer, Answer> {
        Self::require_post(req)?;
        let body = Self::body_json(req)?;
        let field = |k: &str| body.get(k).and_then(Value::as_str);
        if field("grant_type") != Some("client_credential") {
            return Err(Answer::err(40002, "invalid grant_type"));
        }
        let force = body
            .get("force_refresh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let path = req.path;
        let appid = field("appid").unwrap_or_default().to_string();
        let account = self.credentials(field("appid"), field("secret"))?;
        account.check_own_quota(path, now)?;
        let current = account.stable.clone();
        let live = current.filter(|v| {
            self.tokens.get(v).is_some_and(|t| {
                t.revoked_at.is_none() && t.expires_at - now > seconds(OVERLAP_SECS)
            })
        });
        let account = self.accounts.get_mut(&appid).expect("checked");
        if force {
            let today = day_of(now);
            let forced_today = if account.forced.0 == today {
                account.forced.1
            } else {
                0
            };
            if forced_today >= FORCE_REFRESH_PER_DAY {
                return Err(Answer::err(45009, "reach max api daily quota limit"));
            }
            if account
                .last_forced
                .is_some_and(|t| now - t < seconds(FORCE_REFRESH_GAP_SECS))
            {
                return Err(Answer::err(45011, "api minute-quota reach limit"));
            }
            account.forced = (today, forced_today + 1);
            account.last_forced = Some(now);
        } else if let Some(value) = live {
            account.count_own(path, now);
            return Ok(self.token_answer(&value, now));
        }
        account.count_own(path, now);
        let previous = account.stable.take();
        let value = self.issue(&appid, now);
        if force {
            if let Some(old) = previous.and_then(|p| self.tokens.get_mut(&p)) {
                old.revoked_at = Some(now);
            }
        }
        self.accounts.get_mut(&appid).expect("checked").stable = Some(value.clone());
        Ok(self.token_answer(&value, now))
    }
}
