//! Where a key sits in the config text: key paths (`accounts[1].policy.threshold`) and
//! byte offsets mapped to 1-based line and column, using toml_edit's spans.

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike, Value};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path, shown as `accounts[1].limits."/cgi-bin/user/get"`. Empty = the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path with an index appended.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Answers "where is this key" for one config text. Without a parsable document (a
/// syntax error) it knows nothing and every answer is `None`.
pub(super) struct Locator<'a> {
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
}

/// A node of the document while walking a key path.
enum Node<'d> {
    Table(&'d dyn TableLike),
    Tables(&'d toml_edit::ArrayOfTables),
    Array(&'d toml_edit::Array),
    Leaf,
}

fn node_of(item: &Item) -> Node<'_> {
    match item {
        Item::Table(t) => Node::Table(t),
        Item::ArrayOfTables(a) => Node::Tables(a),
        Item::Value(v) => node_of_value(v),
        Item::None => Node::Leaf,
    }
}

fn node_of_value(v: &Value) -> Node<'_> {
    match v {
        Value::InlineTable(t) => Node::Table(t),
        Value::Array(a) => Node::Array(a),
        _ => Node::Leaf,
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Locator<'a> {
        Locator {
            text,
            doc: ImDocument::parse(text).ok(),
        }
    }

    /// Whether the text is valid TOML (else it holds a syntax error).
    pub fn parsed(&self) -> bool {
        self.doc.is_some()
    }

    /// Line and column of the key `path` names; if it is absent, of the nearest table
    /// above it that is present; `None` when nothing on the way has a position.
    pub fn position(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<usize> = None;
        let mut node = Node::Table(doc.as_table());
        for seg in path.segs() {
            node = match (node, seg) {
                (Node::Table(t), Seg::Key(k)) => {
                    let Some((key, item)) = t.get_key_value(k) else {
                        break;
                    };
                    // A [table] points at its header line, anything else at its key.
                    let span = match item {
                        Item::Table(t) => t.span().or_else(|| key.span()),
                        _ => key.span().or_else(|| item.span()),
                    };
                    if let Some(s) = span {
                        best = Some(s.start);
                    }
                    node_of(item)
                }
                (Node::Tables(a), Seg::Index(i)) => {
                    let Some(t) = a.get(*i) else { break };
                    if let Some(s) = t.span() {
                        best = Some(s.start);
                    }
                    Node::Table(t)
                }
                (Node::Array(a), Seg::Index(i)) => {
                    let Some(v) = a.get(*i) else { break };
                    if let Some(s) = v.span() {
                        best = Some(s.start);
                    }
                    node_of_value(v)
                }
                _ => break,
            };
        }
        best.map(|o| line_col(self.text, o))
    }

    /// The key path of the deepest key or value at byte `offset` (for serde errors,
    /// whose spans point at the offending key or value).
    pub fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let doc = self.doc.as_ref()?;
        find_in_table(doc.as_table(), offset, &KeyPath::root())
    }

    /// The `name` of `accounts[i]`, if it is a string.
    pub fn account_name(&self, i: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let t = doc.get("accounts")?.as_array_of_tables()?.get(i)?;
        Some(t.get("name")?.as_str()?.to_string())
    }
}

fn find_in_table(t: &dyn TableLike, offset: usize, path: &KeyPath) -> Option<KeyPath> {
    for (k, item) in t.iter() {
        let p = path.key(k);
        if let Some(found) = find_in_node(node_of(item), offset, &p) {
            return Some(found);
        }
        if contains(t.key(k).and_then(|k| k.span()), offset) || contains(item.span(), offset) {
            return Some(p);
        }
    }
    None
}

fn find_in_node(node: Node<'_>, offset: usize, path: &KeyPath) -> Option<KeyPath> {
    match node {
        Node::Table(t) => find_in_table(t, offset, path),
        Node::Tables(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, t)| find_in_table(t, offset, &path.index(i))),
        Node::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            let p = path.index(i);
            find_in_node(node_of_value(v), offset, &p)
                .or_else(|| contains(v.span(), offset).then_some(p))
        }),
        Node::Leaf => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# comment
[daemon]
listen = "127.0.0.1:9477"

[policy]
watch = ["/a", "/b"]

[[accounts]]
name = "one"
policy.threshold = 0.5

[[accounts]]
name = "two"
limits = { "/cgi-bin/x" = 5 }
[accounts.policy]
reserve = 1
"#;

    fn at(path: &KeyPath) -> Option<(usize, usize)> {
        Locator::new(TEXT).position(path)
    }

    #[test]
    fn key_paths_map_to_lines() {
        let r = KeyPath::root();
        let a0 = r.key("accounts").index(0);
        let a1 = r.key("accounts").index(1);
        let cases = [
            (r.key("daemon").key("listen"), Some((3, 1))),
            (r.key("daemon"), Some((2, 1))),
            (r.key("policy").key("watch").index(1), Some((6, 16))),
            (a0.key("name"), Some((9, 1))),
            (a0.key("policy").key("threshold"), Some((10, 8))),
            (a1.key("name"), Some((13, 1))),
            (a1.key("limits").key("/cgi-bin/x"), Some((14, 12))),
            (a1.key("policy").key("reserve"), Some((16, 1))),
            // Absent keys fall back to the nearest table that is present.
            (a1.key("policy").key("threshold"), Some((15, 1))),
            (a1.key("appid"), Some((12, 1))),
            (r.key("nowhere"), None),
        ];
        for (path, want) in cases {
            assert_eq!(at(&path), want, "{path}");
        }
    }

    #[test]
    fn offsets_map_back_to_key_paths() {
        let loc = Locator::new(TEXT);
        let off = TEXT.find("reserve").unwrap();
        assert_eq!(
            loc.path_at(off).unwrap().to_string(),
            "accounts[1].policy.reserve"
        );
        let off = TEXT.find("\"/b\"").unwrap();
        assert_eq!(loc.path_at(off).unwrap().to_string(), "policy.watch[1]");
        assert_eq!(loc.account_name(1).as_deref(), Some("two"));
    }

    #[test]
    fn display_quotes_keys_that_are_not_bare() {
        let p = KeyPath::root()
            .key("accounts")
            .index(0)
            .key("limits")
            .key("/cgi-bin/x");
        assert_eq!(p.to_string(), "accounts[0].limits.\"/cgi-bin/x\"");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\nc中d", 7), (2, 3));
        assert_eq!(line_col("", 5), (1, 1));
    }
}
