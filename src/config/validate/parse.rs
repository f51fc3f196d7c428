//! From text to the `file` types, reporting every unknown key and every value of the
//! wrong type, not only the first serde stops at: each offending key is removed and the
//! rest parsed again.

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::*;
use locate::Seg;

/// Most errors reported from one file before giving up (each costs a parse).
const MAX_PARSE_ERRORS: usize = 100;

/// The file's contents as the `file` types, or every unknown key and wrongly typed value
/// (or the one syntax error), each located in the original text.
pub(super) fn parse(
    path: &Path,
    text: &str,
    loc: &Locator,
) -> Result<FileConfig, Vec<ConfigError>> {
    let first = match toml::from_str::<FileConfig>(text) {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    let mut errors = vec![parse_error(path, text, loc, &first)];
    // A syntax error leaves nothing to go on.
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Err(errors);
    };
    let mut last = first;
    while errors.len() < MAX_PARSE_ERRORS {
        // Drop the key that failed (up to its last key segment: removing an array
        // element would renumber the ones after it), then parse again.
        let current = doc.to_string();
        let Some(key) = last
            .span()
            .and_then(|s| Locator::new(&current).path_at(s.start))
            .map(|k| up_to_last_key(&k))
        else {
            break;
        };
        if key.is_root() || !remove(doc.as_item_mut(), key.segs()) {
            break;
        }
        let next = doc.to_string();
        match toml::from_str::<FileConfig>(&next) {
            Ok(_) => break,
            Err(e) => {
                // Located in the original text by its key path (lines have moved).
                let mut err = parse_error(path, &next, &Locator::new(&next), &e);
                let here = e.span().and_then(|s| Locator::new(&next).path_at(s.start));
                let pos = here.as_ref().and_then(|k| loc.position(k));
                err.line = pos.map(|p| p.0);
                err.column = pos.map(|p| p.1);
                errors.push(err);
                last = e;
            }
        }
    }
    Err(errors)
}

/// `path` cut after its last key: `policy.watch[1]` → `policy.watch`.
fn up_to_last_key(path: &KeyPath) -> KeyPath {
    let segs = path.segs();
    let end = segs
        .iter()
        .rposition(|s| matches!(s, Seg::Key(_)))
        .map_or(0, |i| i + 1);
    let mut out = KeyPath::root();
    for s in &segs[..end] {
        out = match s {
            Seg::Key(k) => out.key(k),
            Seg::Index(i) => out.index(*i),
        };
    }
    out
}

/// Removes the item at `segs` (ending with a key); whether it was there.
fn remove(item: &mut Item, segs: &[Seg]) -> bool {
    match segs.first() {
        Some(Seg::Key(_)) => item
            .as_table_like_mut()
            .is_some_and(|t| remove_in_table(t, segs)),
        Some(Seg::Index(i)) => match item {
            Item::ArrayOfTables(a) => a
                .get_mut(*i)
                .is_some_and(|t| remove_in_table(t, &segs[1..])),
            Item::Value(v) => remove_in_value(v, segs),
            _ => false,
        },
        None => false,
    }
}

fn remove_in_table(t: &mut dyn TableLike, segs: &[Seg]) -> bool {
    match segs {
        [Seg::Key(k)] => t.remove(k).is_some(),
        [Seg::Key(k), rest @ ..] => t.get_mut(k).is_some_and(|i| remove(i, rest)),
        _ => false,
    }
}

fn remove_in_value(v: &mut Value, segs: &[Seg]) -> bool {
    match (segs, v) {
        ([Seg::Index(i), rest @ ..], Value::Array(a)) if !rest.is_empty() => {
            a.get_mut(*i).is_some_and(|v| remove_in_value(v, rest))
        }
        ([Seg::Key(_), ..], Value::InlineTable(t)) => remove_in_table(t, segs),
        _ => false,
    }
}

/// A syntax error, an unknown key or a value of the wrong type, located by the span
/// toml gives. Values are not echoed for keys that hold secrets.
fn parse_error(file: &Path, text: &str, loc: &Locator, e: &toml::de::Error) -> ConfigError {
    let start = e.span().map(|s| s.start);
    let pos = start.map(|o| line_col(text, o));
    let key = start.and_then(|o| loc.path_at(o));
    let account = key.as_ref().and_then(|k| match k.segs() {
        [locate::Seg::Key(a), locate::Seg::Index(i), ..] if a == "accounts" => loc.account_name(*i),
        _ => None,
    });
    let key = key.map(|k| k.to_string());
    let secret_key = key
        .as_deref()
        .is_some_and(|k| k.ends_with(".secret") || k.ends_with(".url"));
    let message = if secret_key {
        "invalid value: expected a string (value not shown: it may be secret)".to_string()
    } else {
        let m = e.message().trim().replace('\n', "; ");
        if !loc.parsed() {
            format!("invalid TOML: {m}")
        } else {
            m.replacen("unknown field", "unknown key", 1)
        }
    };
    ConfigError {
        file: file.to_path_buf(),
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        key,
        account,
        message,
    }
}
