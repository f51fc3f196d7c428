//! Which account a proxied call belongs to (SPEC §7): an `/a/{account}/` prefix, an
//! access token the proxy handed out, or a configured `appid` in the query or JSON body.
//! Also the query edits that go with it (adding or replacing `access_token`).

use crate::config::Config;

/// A configured account, as the proxy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub appid: String,
}

pub fn by_name(config: &Config, name: &str) -> Option<Account> {
    config
        .accounts
        .iter()
        .find(|a| a.name == name)
        .map(|a| Account {
            name: a.name.clone(),
            appid: a.appid.clone(),
        })
}

pub fn by_appid(config: &Config, appid: &str) -> Option<Account> {
    config
        .accounts
        .iter()
        .find(|a| a.appid == appid)
        .map(|a| Account {
            name: a.name.clone(),
            appid: a.appid.clone(),
        })
}

/// `/a/{account}/rest` → `Some(("account", "/rest"))`; any other path → `None`.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/a/")?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "/")),
    }
}

/// The decoded value of query parameter `name`.
pub fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `appid` a call names: in the query, else in a JSON object body.
pub fn named_appid(query: &str, body: Option<&[u8]>) -> Option<String> {
    param(query, "appid").or_else(|| {
        let v: serde_json::Value = serde_json::from_slice(body?).ok()?;
        v.get("appid")?.as_str().map(str::to_string)
    })
}

/// `query` with `access_token` set to `token`: an existing one replaced in place (the
/// other parameters byte for byte as they were), else one added at the end.
pub fn with_token(query: &str, token: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let mut found = false;
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p == "access_token" || p.starts_with("access_token=") {
                found = true;
                format!("access_token={encoded}")
            } else {
                p.to_string()
            }
        })
        .collect();
    if !found {
        parts.push(format!("access_token={encoded}"));
    }
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_names_the_account_and_is_removed() {
        assert_eq!(
            split_prefix("/a/shop/cgi-bin/user/get"),
            Some(("shop", "/cgi-bin/user/get"))
        );
        assert_eq!(split_prefix("/a/shop"), Some(("shop", "/")));
        assert_eq!(split_prefix("/cgi-bin/user/get"), None);
        assert_eq!(split_prefix("/about"), None);
    }

    #[test]
    fn tokens_are_replaced_in_place_or_added() {
        assert_eq!(
            with_token("a=1&access_token=OLD&b=x%20y", "NEW"),
            "a=1&access_token=NEW&b=x%20y"
        );
        assert_eq!(with_token("", "T+/="), "access_token=T%2B%2F%3D");
        assert_eq!(with_token("type=image", "T"), "type=image&access_token=T");
    }

    #[test]
    fn appid_from_query_or_json_body() {
        assert_eq!(named_appid("appid=wx1&x=2", None).as_deref(), Some("wx1"));
        assert_eq!(
            named_appid("", Some(br#"{"appid":"wx2"}"#)).as_deref(),
            Some("wx2")
        );
        assert_eq!(named_appid("", Some(b"\x89PNG")), None);
        assert_eq!(param("a=x%20y", "a").as_deref(), Some("x y"));
    }
}
