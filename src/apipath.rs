//! API paths: the one name for an interface, whatever form a report gives it in.

/// Normalises an interface name to its path: `/cgi-bin/user/info`, `cgi-bin/user/info`
/// and `https://api.weixin.qq.com/cgi-bin/user/info?access_token=...` all become
/// `/cgi-bin/user/info`. The query and fragment (which may hold an access token) are
/// dropped before anything else sees the string. Returns an error that never repeats the
/// query, so a token cannot leak through it.
pub fn normalize(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    // Drop the query and fragment first: nothing after '?' or '#' is ever kept or echoed.
    let without_query = raw.split(['?', '#']).next().unwrap_or("");
    let path = match without_query.find("://") {
        Some(i) => {
            let after_scheme = &without_query[i + 3..];
            match after_scheme.find('/') {
                Some(j) => &after_scheme[j..],
                None => "/",
            }
        }
        None => without_query,
    };
    let path = path.trim_end_matches('/');
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    check(&path)?;
    Ok(path)
}

/// Whether `path` is a well-formed API path: starts with '/', at least one segment,
/// segments of ASCII letters, digits, '_', '-' and '.', no empty segments, at most 256 bytes.
pub fn check(path: &str) -> Result<(), String> {
    if path.len() > 256 {
        return Err("API path is longer than 256 characters".into());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("API path {path:?} must start with '/'"));
    };
    if rest.is_empty() {
        return Err("API path is empty".into());
    }
    for seg in rest.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "API path {path:?} has an empty or relative segment"
            ));
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "API path {path:?} may hold only letters, digits, '_', '-', '.' and '/'"
            ));
        }
    }
    Ok(())
}

/// Whether WeChat's getApiQuota can report on `path` (it answers 76022 for /sns paths).
pub fn pollable(path: &str) -> bool {
    !path.starts_with("/sns/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_forms_mean_the_same_path() {
        for raw in [
            "/cgi-bin/user/info",
            "cgi-bin/user/info",
            "https://api.weixin.qq.com/cgi-bin/user/info?access_token=SECRET",
            "http://127.0.0.1:9/cgi-bin/user/info/?x=1#frag",
            " /cgi-bin/user/info ",
        ] {
            assert_eq!(normalize(raw).unwrap(), "/cgi-bin/user/info", "{raw}");
        }
    }

    #[test]
    fn bad_paths_are_rejected_without_echoing_the_query() {
        for raw in ["", "/", "https://host", "/a//b", "/a/../b", "/a b", "/中文"] {
            assert!(normalize(raw).is_err(), "{raw}");
        }
        let err = normalize("/bad path?access_token=TOPSECRET").unwrap_err();
        assert!(!err.contains("TOPSECRET"), "{err}");
    }
}
