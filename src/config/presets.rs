//! The built-in daily-limit tables ("normal", "test") and the per-account limit table
//! that presets, config `limits` and WeChat's polled figures combine into.

use serde::Serialize;

/// Which built-in table an account starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresetName {
    /// A newly registered account (seeds/000, first table).
    Normal,
    /// A sandbox test account (seeds/000, second table).
    Test,
    /// No table: Mini Programs, or accounts described wholly by `limits` and polling.
    None,
}

impl PresetName {
    pub fn parse(s: &str) -> Option<PresetName> {
        match s {
            "normal" => Some(PresetName::Normal),
            "test" => Some(PresetName::Test),
            "none" => Some(PresetName::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PresetName::Normal => "normal",
            PresetName::Test => "test",
            PresetName::None => "none",
        }
    }
}

/// One row of WECHAT.md's table: the document's name, the paths that share one
/// daily limit, and the limit for each preset (`None`: the document gives none).
pub struct PresetRow {
    pub doc_name: &'static str,
    pub paths: &'static [&'static str],
    pub normal: Option<u64>,
    pub test: Option<u64>,
}

/// The documents' tables, kept exactly (WECHAT.md "The presets").
pub const PRESET_ROWS: &[PresetRow] = &[
    row(
        "获取access_token",
        &["/cgi-bin/token"],
        Some(2000),
        Some(200),
    ),
    row(
        "自定义菜单创建",
        &["/cgi-bin/menu/create"],
        Some(1000),
        Some(100),
    ),
    row(
        "自定义菜单查询",
        &["/cgi-bin/menu/get"],
        Some(10000),
        Some(1000),
    ),
    row(
        "自定义菜单删除",
        &["/cgi-bin/menu/delete"],
        Some(1000),
        Some(100),
    ),
    row(
        "创建分组",
        &["/cgi-bin/groups/create"],
        Some(1000),
        Some(100),
    ),
    row("获取分组", &["/cgi-bin/groups/get"], Some(1000), Some(100)),
    row(
        "修改分组名",
        &["/cgi-bin/groups/update"],
        Some(1000),
        Some(100),
    ),
    row(
        "移动用户分组",
        &["/cgi-bin/groups/members/update"],
        Some(100000),
        Some(1000),
    ),
    row(
        "上传多媒体文件",
        &["/cgi-bin/media/upload"],
        Some(5000),
        Some(500),
    ),
    row(
        "下载多媒体文件",
        &["/cgi-bin/media/get"],
        Some(10000),
        Some(1000),
    ),
    row(
        "发送客服消息",
        &["/cgi-bin/message/custom/send"],
        Some(500000),
        Some(50000),
    ),
    row(
        "高级群发接口",
        &[
            "/cgi-bin/message/mass/sendall",
            "/cgi-bin/message/mass/send",
        ],
        Some(100),
        None,
    ),
    row(
        "上传图文消息接口",
        &["/cgi-bin/media/uploadnews"],
        Some(10),
        None,
    ),
    row(
        "删除图文消息接口",
        &["/cgi-bin/message/mass/delete"],
        Some(10),
        None,
    ),
    row(
        "获取带参数的二维码",
        &["/cgi-bin/qrcode/create"],
        Some(100000),
        Some(10000),
    ),
    row(
        "获取关注者列表",
        &["/cgi-bin/user/get"],
        Some(500),
        Some(100),
    ),
    row(
        "获取用户基本信息",
        &["/cgi-bin/user/info"],
        Some(5000000),
        Some(500000),
    ),
    row(
        "获取网页授权access_token",
        &["/sns/oauth2/access_token"],
        None,
        None,
    ),
    row(
        "刷新网页授权access_token",
        &["/sns/oauth2/refresh_token"],
        None,
        None,
    ),
    row("网页授权获取用户信息", &["/sns/userinfo"], None, None),
    row(
        "设置用户备注名",
        &["/cgi-bin/user/info/updateremark"],
        Some(10000),
        None,
    ),
];

const fn row(
    doc_name: &'static str,
    paths: &'static [&'static str],
    normal: Option<u64>,
    test: Option<u64>,
) -> PresetRow {
    PresetRow {
        doc_name,
        paths,
        normal,
        test,
    }
}

/// Where a daily limit came from; shown in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitSource {
    Preset,
    Config,
    /// A polled `daily_limit` from getApiQuota (the figure that counts).
    Wechat,
}

/// One quota: the paths that share it (usually one) and its daily limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitEntry {
    /// The first path names the quota in status and logs.
    pub paths: Vec<String>,
    /// Calls per WeChat day; `None` when no limit is known (never triggers a clear).
    pub limit: Option<u64>,
    pub source: LimitSource,
}

impl LimitEntry {
    /// The path that names this quota.
    pub fn key(&self) -> &str {
        &self.paths[0]
    }
}

/// An account's daily limits: its preset, overridden by config `limits`. Accounts
/// that use a preset as it is share one copy of it (copy on write), so 10,000 accounts
/// do not hold 10,000 tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitTable {
    entries: std::sync::Arc<Vec<LimitEntry>>,
}

impl LimitTable {
    /// The preset's table. Rows without a figure for this preset but listed in the
    /// table (e.g. /sns paths) are kept with no limit; rows the preset does not list
    /// at all (a "–" in WECHAT.md) are left out.
    pub fn from_preset(preset: PresetName) -> LimitTable {
        use std::sync::OnceLock;
        static NORMAL: OnceLock<LimitTable> = OnceLock::new();
        static TEST: OnceLock<LimitTable> = OnceLock::new();
        match preset {
            PresetName::Normal => NORMAL.get_or_init(|| build(preset)).clone(),
            PresetName::Test => TEST.get_or_init(|| build(preset)).clone(),
            PresetName::None => LimitTable::default(),
        }
    }

    /// Sets the limit of the quota `path` belongs to (adding a quota if none has it).
    pub fn set(&mut self, path: &str, limit: u64, source: LimitSource) {
        let entries = std::sync::Arc::make_mut(&mut self.entries);
        match entries
            .iter_mut()
            .find(|e| e.paths.iter().any(|p| p == path))
        {
            Some(e) => {
                e.limit = Some(limit);
                e.source = source;
            }
            None => entries.push(LimitEntry {
                paths: vec![path.to_string()],
                limit: Some(limit),
                source,
            }),
        }
    }

    /// The quota `path` belongs to.
    pub fn entry_for(&self, path: &str) -> Option<&LimitEntry> {
        self.entries
            .iter()
            .find(|e| e.paths.iter().any(|p| p == path))
    }

    pub fn entries(&self) -> &[LimitEntry] {
        &self.entries
    }
}

/// Builds a preset's table from [`PRESET_ROWS`].
fn build(preset: PresetName) -> LimitTable {
    let entries = PRESET_ROWS
        .iter()
        .filter_map(|r| {
            let limit = match preset {
                PresetName::Normal => r.normal,
                PresetName::Test => {
                    // The test table lists exactly the rows with a test figure, plus the
                    // three /sns rows, which have no figure in either table.
                    if r.test.is_none() && r.normal.is_some() {
                        return None;
                    }
                    r.test
                }
                PresetName::None => return None,
            };
            Some(LimitEntry {
                paths: r.paths.iter().map(|p| p.to_string()).collect(),
                limit,
                source: LimitSource::Preset,
            })
        })
        .collect();
    LimitTable {
        entries: std::sync::Arc::new(entries),
    }
}

/// The preset tables as printed by `wxquotad presets [NAME]`.
pub fn render(preset: Option<PresetName>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let presets: Vec<PresetName> = match preset {
        Some(p) => vec![p],
        None => vec![PresetName::Normal, PresetName::Test],
    };
    for (i, p) in presets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "# preset \"{}\" (daily limits per API path)",
            p.as_str()
        );
        let table = LimitTable::from_preset(*p);
        if table.entries().is_empty() {
            let _ = writeln!(out, "(no limits: use [accounts.limits] and polling)");
        }
        for e in table.entries() {
            let limit = e.limit.map_or("-".to_string(), |l| l.to_string());
            let shared = if e.paths.len() > 1 {
                format!("  (one limit shared by {})", e.paths.join(", "))
            } else {
                String::new()
            };
            for p in &e.paths {
                let _ = writeln!(out, "{p:<40} {limit:>9}{shared}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_preset_matches_the_document() {
        let t = LimitTable::from_preset(PresetName::Normal);
        assert_eq!(t.entries().len(), 21);
        assert_eq!(t.entry_for("/cgi-bin/token").unwrap().limit, Some(2000));
        assert_eq!(t.entry_for("/cgi-bin/user/get").unwrap().limit, Some(500));
        assert_eq!(
            t.entry_for("/cgi-bin/user/info").unwrap().limit,
            Some(5_000_000)
        );
        assert_eq!(t.entry_for("/sns/userinfo").unwrap().limit, None);
        // The mass-send limit is one quota for two paths.
        let a = t.entry_for("/cgi-bin/message/mass/sendall").unwrap();
        let b = t.entry_for("/cgi-bin/message/mass/send").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.limit, Some(100));
    }

    #[test]
    fn test_preset_lists_only_its_rows() {
        let t = LimitTable::from_preset(PresetName::Test);
        assert_eq!(t.entry_for("/cgi-bin/token").unwrap().limit, Some(200));
        assert_eq!(
            t.entry_for("/cgi-bin/media/upload").unwrap().limit,
            Some(500)
        );
        assert!(t.entry_for("/cgi-bin/message/mass/send").is_none());
        assert!(t.entry_for("/cgi-bin/user/info/updateremark").is_none());
        assert!(t.entry_for("/sns/oauth2/access_token").is_some());
        assert_eq!(t.entries().len(), 17);
    }

    #[test]
    fn config_limits_override_and_add() {
        let mut t = LimitTable::from_preset(PresetName::Normal);
        t.set("/cgi-bin/message/mass/send", 300, LimitSource::Config);
        t.set(
            "/cgi-bin/message/template/send",
            100000,
            LimitSource::Config,
        );
        let mass = t.entry_for("/cgi-bin/message/mass/sendall").unwrap();
        assert_eq!((mass.limit, mass.source), (Some(300), LimitSource::Config));
        assert_eq!(
            t.entry_for("/cgi-bin/message/template/send").unwrap().limit,
            Some(100000)
        );
        assert!(LimitTable::from_preset(PresetName::None)
            .entries()
            .is_empty());
    }
}
