//! Secrets (AppSecrets, access tokens, API tokens) in a type that never prints them, and
//! the scrubber that removes them, in any encoding, from text that came from outside
//! (WeChat's answers) before it is logged, stored or shown.

use std::fmt;

/// A secret string. `Debug` and `Display` print a mask, so a secret that ends up in a
/// log line, an error or a status document shows `***` instead of its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (a request to WeChat).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How far a secret matched at one spot of a text.
enum Found {
    /// The whole secret, ending at this byte offset.
    Whole(usize),
    /// The text ended partway through the secret (a cut snippet's tail).
    Cut,
    No,
}

/// Matches `secret[j..]` in `text` from byte `p`, each secret byte written as itself,
/// percent-encoded (either case, or encoded twice as `%25XX`), `+` for a space, or
/// JSON-escaped (`\"`, `\\`, `\/`, `\uXXXX` including surrogate pairs): every form a
/// secret takes when WeChat quotes a query string or a JSON body back.
fn find(text: &[u8], p: usize, secret: &[u8], j: usize) -> Found {
    if j == secret.len() {
        return Found::Whole(p);
    }
    if p >= text.len() {
        return if j > 0 { Found::Cut } else { Found::No };
    }
    let want = secret[j];
    let mut cut = false;
    if text[p] == want {
        if let Some(e) = step(find(text, p + 1, secret, j + 1), &mut cut) {
            return Found::Whole(e);
        }
    }
    if want == b' ' && text[p] == b'+' {
        if let Some(e) = step(find(text, p + 1, secret, j + 1), &mut cut) {
            return Found::Whole(e);
        }
    }
    if text[p] == b'%' {
        // "%XX", or "%25XX" (percent-encoded twice).
        for (skip, len) in [(1, 3), (3, 5)] {
            if skip == 3 && !text[p..].starts_with(b"%25") {
                continue;
            }
            match hex_byte(text, p + skip) {
                Some(b) if b == want => {
                    if let Some(e) = step(find(text, p + len, secret, j + 1), &mut cut) {
                        return Found::Whole(e);
                    }
                }
                None if p + len > text.len() => cut = true,
                _ => {}
            }
        }
    }
    if text[p] == b'\\' {
        match text.get(p + 1) {
            Some(&c) if (c == b'"' || c == b'\\' || c == b'/') && c == want => {
                if let Some(e) = step(find(text, p + 2, secret, j + 1), &mut cut) {
                    return Found::Whole(e);
                }
            }
            Some(b'u') => match json_unicode(text, p) {
                Some((ch, len)) => {
                    let mut buf = [0u8; 4];
                    let enc = ch.encode_utf8(&mut buf).as_bytes();
                    if secret[j..].starts_with(enc) {
                        if let Some(e) = step(find(text, p + len, secret, j + enc.len()), &mut cut)
                        {
                            return Found::Whole(e);
                        }
                    }
                }
                None if p + 12 > text.len() => cut = true,
                None => {}
            },
            None => cut = true,
            _ => {}
        }
    }
    if cut {
        Found::Cut
    } else {
        Found::No
    }
}

/// A whole match's end; notes a match cut off by the end of the text.
fn step(r: Found, cut: &mut bool) -> Option<usize> {
    match r {
        Found::Whole(e) => Some(e),
        Found::Cut => {
            *cut = true;
            None
        }
        Found::No => None,
    }
}

fn hex_byte(text: &[u8], at: usize) -> Option<u8> {
    let h = text.get(at..at + 2)?;
    let s = std::str::from_utf8(h).ok()?;
    u8::from_str_radix(s, 16).ok()
}

/// The character a JSON `\uXXXX` (or a `\uD8XX\uDCXX` pair) at `p` stands for, and the
/// escape's length in bytes.
fn json_unicode(text: &[u8], p: usize) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        if text.get(at..at + 2)? != b"\\u" {
            return None;
        }
        let s = std::str::from_utf8(text.get(at + 2..at + 6)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    let hi = unit(p)?;
    if (0xD800..0xDC00).contains(&hi) {
        let lo = unit(p + 6)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return Some((char::from_u32(c)?, 12));
    }
    Some((char::from_u32(hi)?, 6))
}

/// `text` with every occurrence of every secret, in any of the encodings [`find`]
/// knows, replaced by `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let bytes = text.as_bytes();
    let secrets: Vec<&[u8]> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes())
        .collect();
    let mut out = Vec::with_capacity(bytes.len());
    let mut p = 0;
    while p < bytes.len() {
        let end = secrets
            .iter()
            .filter_map(|s| match find(bytes, p, s, 0) {
                Found::Whole(e) => Some(e),
                _ => None,
            })
            .max();
        match end {
            Some(e) => {
                out.extend_from_slice(b"***");
                p = e;
            }
            None => {
                out.push(bytes[p]);
                p += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A short, safe quote of outside text (an answer from WeChat) for errors, logs, alerts
/// and the ledger: control characters dropped (so none can split a secret, or forge a
/// log line), every secret scrubbed in any encoding, at most `max_chars` characters,
/// and a tail that could be the start of a cut-off secret replaced by `***` too.
pub fn safe_quote(raw: &[u8], secrets: &[&str], max_chars: usize) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let scrubbed = scrub(&text, secrets);
    if scrubbed.chars().count() <= max_chars {
        return scrubbed;
    }
    let cut: String = scrubbed.chars().take(max_chars).collect();
    let bytes = cut.as_bytes();
    for p in 0..bytes.len() {
        if !cut.is_char_boundary(p) {
            continue;
        }
        let partial = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .any(|s| matches!(find(bytes, p, s.as_bytes(), 0), Found::Cut));
        if partial {
            return format!("{}***", &cut[..p]);
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 item 10: a secret with URL-special characters, as WeChat may quote it
    /// back (a query string, a JSON body), in every form.
    #[test]
    fn every_encoding_is_scrubbed() {
        let secret = "a+b/c=d&e%f\"g\\h 清";
        let forms = [
            secret.to_string(),
            // form-urlencoded, as reqwest's query() sends it.
            "a%2Bb%2Fc%3Dd%26e%25f%22g%5Ch+%E6%B8%85".to_string(),
            "a%2bb%2fc%3dd%26e%25f%22g%5ch%20%e6%b8%85".to_string(),
            // encoded twice
            "a%252Bb%252Fc%253Dd%2526e%2525f%2522g%255Ch%2520%25E6%25B8%2585".to_string(),
            // JSON-escaped, plain and ASCII-only
            serde_json::to_string(secret)
                .unwrap()
                .trim_matches('"')
                .to_string(),
            "a+b\\/c=d&e%f\\\"g\\\\h \\u6e05".to_string(),
            "\\u0061\\u002b\\u0062/c=d&e%f\\\"g\\\\h\\u0020\\u6E05".to_string(),
        ];
        for form in forms {
            let text = format!("invalid appsecret, hint: [secret={form}] rid: 1");
            let out = scrub(&text, &[secret]);
            assert_eq!(
                out, "invalid appsecret, hint: [secret=***] rid: 1",
                "{form}"
            );
        }
        // A secret cut off at the end of a short quote does not leak its start.
        let text = format!("errmsg: appsecret={secret} more text after it");
        let q = safe_quote(text.as_bytes(), &[secret], 21);
        assert_eq!(q, "errmsg: appsecret=***", "{q}");
        let enc = "errmsg: appsecret=a%2Bb%2Fc%3Dd and so on";
        let q = safe_quote(enc.as_bytes(), &[secret], 27);
        assert_eq!(q, "errmsg: appsecret=***", "{q}");
        // Control characters cannot split a secret to hide it.
        let split = "x=a+b/c=d&e%f\"g\\h\u{1} 清";
        let q = safe_quote(split.as_bytes(), &[secret], 80);
        assert_eq!(q, "x=***", "{q}");
        // Text without a secret is left alone (short texts are kept whole).
        assert_eq!(
            safe_quote(b"api freq out of limit", &[secret], 80),
            "api freq out of limit"
        );
        assert_eq!(scrub("100% + 50%", &[secret]), "100% + 50%");
    }

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("abc123secret");
        assert!(!format!("{s:?} {s}").contains("abc123secret"));
        assert_eq!(s.expose(), "abc123secret");
    }
}
