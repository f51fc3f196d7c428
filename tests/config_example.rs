//! The shipped `config.example.toml` loads (as `run --simulate` loads it on a fresh
//! machine) and documents every key of SPEC §3.

use std::path::PathBuf;

use wxquotad::config::{self, AccountKind, LoadOptions, PresetName};

fn example_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    assert!(
        path.is_file(),
        "{} is missing: it is shipped and documents every key",
        path.display()
    );
    path
}

#[test]
fn the_example_loads_in_simulate_mode() {
    let path = example_path();
    let (config, warnings) = config::load_with(&path, LoadOptions { simulate: true })
        .unwrap_or_else(|e| panic!("config.example.toml does not load:\n{e}"));
    let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shop", "mini"]);
    // One third-party platform with a named authorizer (SPEC §8).
    let acme = &config.platforms[0];
    assert_eq!(
        (acme.name.as_str(), acme.component_appid.as_str()),
        ("acme", "wx7c8d9e0f1a2b3c4d")
    );
    assert_eq!(acme.authorizer_name("wx1a2b3c4d5e6f7a8b"), "brand-a");
    assert_eq!(acme.settings_for("wx1a2b3c4d5e6f7a8b").1.threshold, 0.95);

    let shop = &config.accounts[0];
    assert_eq!(shop.appid, "wx448f04719cd48f69");
    assert_eq!(
        (shop.kind, shop.preset),
        (AccountKind::OfficialAccount, PresetName::Normal)
    );
    assert_eq!(shop.policy.threshold, 0.95);
    assert_eq!(
        shop.limits
            .entry_for("/cgi-bin/message/template/send")
            .unwrap()
            .limit,
        Some(100_000)
    );
    let mini = &config.accounts[1];
    assert_eq!(
        (mini.kind, mini.preset),
        (AccountKind::MiniProgram, PresetName::None)
    );
    assert!(!mini.limits.entries().is_empty());

    // Safe for a new user: loopback, a writable state_dir next to the file, no alerts.
    assert!(config.daemon.listen.ip().is_loopback());
    assert_eq!(
        config.daemon.state_dir.file_name().unwrap(),
        "wxquotad-state"
    );
    assert!(config.alerts.is_empty());
    assert!(!config.daemon.dry_run);
    // The secret files do not exist here, so simulate mode made secrets up, and said so.
    if !std::path::Path::new("/etc/wxquotad/shop.secret").exists() {
        assert!(
            warnings.iter().any(|w| w.0.contains("made-up secret")),
            "{warnings:?}"
        );
    }

    let summary = config::summary(&config);
    for want in [
        "127.0.0.1:9477",
        "wxquotad-state",
        "shop",
        "mini",
        "wx448f04719cd48f69",
    ] {
        assert!(summary.contains(want), "summary lacks {want}:\n{summary}");
    }
    assert!(!summary.contains("sim-secret"), "{summary}");
}

#[test]
fn the_example_documents_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    // A key is documented when a line (commented out or not) sets it.
    let sets = |key: &str| {
        text.lines().any(|l| {
            l.trim_start_matches(['#', ' '])
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    for section in [
        "[daemon]",
        "[wechat]",
        "[policy]",
        "[poll]",
        "[[alerts]]",
        "[[accounts]]",
        "[accounts.limits]",
        "[accounts.policy]",
    ] {
        assert!(
            text.contains(section),
            "config.example.toml lacks {section}"
        );
    }
    for key in [
        // [daemon]
        "listen",
        "state_dir",
        "api_token_file",
        "dry_run",
        "log_format",
        // [wechat]
        "base_url",
        "timeout",
        // [policy]
        "threshold",
        "clear_on_45009",
        "reserve",
        "monthly_clears",
        "min_interval",
        "max_clears_per_day",
        "quiet_before_reset",
        "watch",
        // [poll]
        "interval",
        "apis",
        // [[alerts]]
        "kind",
        "url",
        "events",
        // [[accounts]]
        "name",
        "appid",
        "preset",
        "secret_file",
        "secret_env",
        "secret",
        "clear_via",
    ] {
        assert!(sets(key), "config.example.toml does not document {key}");
    }
}
