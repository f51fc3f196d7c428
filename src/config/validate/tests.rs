//! Validation tests: every rule, located; secrets never shown.

use super::daemon::default_state_dir;
use super::*;
use std::io::Write;

/// A valid account with an inline secret (a warning, never an error).
const ACCOUNT: &str =
    "[[accounts]]\nname = \"shop\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"TOPSECRETVALUE\"\n";

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    path
}

fn load_text(
    text: &str,
    opts: LoadOptions,
) -> (
    tempfile::TempDir,
    Result<(Config, Vec<Warning>), ConfigErrors>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config.toml", text, 0o600);
    let r = load(&path, opts);
    (dir, r)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load_text(text, LoadOptions::default()).1 {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

fn ok(text: &str) -> (Config, Vec<Warning>) {
    match load_text(text, LoadOptions::default()).1 {
        Ok(c) => c,
        Err(e) => panic!("expected no errors, got:\n{e}"),
    }
}

#[test]
fn each_rule_names_key_line_and_what_is_expected() {
    // (config text, key path, message fragment, line)
    let cases: &[(&str, &str, &str, usize)] = &[
        ("[policy]\nthreshold = 1.5\n", "policy.threshold", "in (0, 1], e.g. 0.9; got 1.5", 2),
        ("[policy]\nthreshold = 0\n", "policy.threshold", "(0, 1]", 2),
        ("[policy]\nreserve = 10\n", "policy.reserve", "less than monthly_clears", 2),
        ("[policy]\nmonthly_clears = 0\n", "policy.monthly_clears", "from 1 to 10, got 0", 2),
        ("[policy]\nmax_clears_per_day = 0\n", "policy.max_clears_per_day", "at least 1", 2),
        ("[policy]\nreserve = -1\n", "policy.reserve", "at least 0, got -1", 2),
        ("[policy]\nmonthly_clears = 50\n", "policy.monthly_clears", "from 1 to 10, got 50", 2),
        ("[policy]\nmonthly_api_clears = 51\n", "policy.monthly_api_clears", "from 1 to 50, got 51", 2),
        ("[policy]\nmonthly_api_clears = 0\n", "policy.monthly_api_clears", "from 1 to 50, got 0", 2),
        ("[policy]\napi_reserve = 50\n", "policy.api_reserve", "api_reserve must be less than monthly_api_clears", 2),
        ("[policy]\nmonthly_api_clears = 5\n", "policy.monthly_api_clears", "got api_reserve = 5 and monthly_api_clears = 5", 2),
        ("[policy]\napi_reserve = -1\n", "policy.api_reserve", "at least 0, got -1", 2),
        ("[policy]\napi_clears = \"yes\"\n", "policy.api_clears", "expected a boolean", 2),
        ("[policy]\nconfirm_45009 = 1\n", "policy.confirm_45009", "expected a boolean", 2),
        ("[policy]\nmin_interval = \"32d\"\n", "policy.min_interval", "from 0s to 31d, got \"32d\"", 2),
        ("[policy]\nmin_interval = \"60000000000000d\"\n", "policy.min_interval", "from 0s to 31d", 2),
        ("[wechat]\ntimeout = \"60000000000000d\"\n", "wechat.timeout", "from 100ms to 10m, got \"60000000000000d\"", 2),
        ("[wechat]\ntimeout = \"10ms\"\n", "wechat.timeout", "from 100ms to 10m", 2),
        ("[wechat]\nfallback_urls = [\"https://api2.weixin.qq.com\", \"api3\"]\n", "wechat.fallback_urls[1]", "each of fallback_urls must be an http:// or https:// URL", 2),
        ("[wechat]\nfallback_urls = [\"https://api.weixin.qq.com/\"]\n", "wechat.fallback_urls[0]", "already base_url", 2),
        ("[poll]\ninterval = \"500ms\"\n", "poll.interval", "from 1s to 1d (or \"0s\")", 2),
        ("[poll]\ninterval = \"2d\"\n", "poll.interval", "from 1s to 1d", 2),
        ("[[alerts]]\nkind = \"wecom\"\nurl = \"https://x\"\nrepeat_after = \"100d\"\n", "alerts[0].repeat_after", "from 0s to 31d", 4),
        ("[daemon]\nallowed_hosts = [\"ok.example\", \"evil.example:80\"]\n", "daemon.allowed_hosts[1]", "without a port", 2),
        ("[daemon]\nallowed_hosts = [\"a b\"]\n", "daemon.allowed_hosts[0]", "host names or IP addresses", 2),
        ("[proxy]\nlisten = \"0.0.0.0:9480\"\n", "proxy.listen", "allow must list the client networks", 2),
        ("[proxy]\nlisten = \"localhost:9480\"\n", "proxy.listen", "IP address and port", 2),
        ("[proxy]\nlisten = \"127.0.0.1:9477\"\n", "proxy.listen", "also [daemon] listen", 2),
        ("[proxy]\nallow = [\"127.0.0.1/8\", \"10.0.0.0/33\"]\n", "proxy.allow[1]", "0 to 32", 2),
        ("[proxy]\ntls_cert_file = \"x.crt\"\n", "proxy.tls_cert_file", "tls_key_file is not", 2),
        ("[proxy]\nhold = \"10m\"\n", "proxy.hold", "from 0s to 5m", 2),
        ("[proxy]\ntimeout = \"0s\"\n", "proxy.timeout", "longer than zero", 2),
        ("[proxy]\nmax_retry_body = \"1 parsec\"\n", "proxy.max_retry_body", "like \"1MiB\"", 2),
        ("[proxy]\nmax_retry_body = \"1GiB\"\n", "proxy.max_retry_body", "at most \"64MiB\"", 2),
        ("[daemon]\ntraffic_log_max = \"1KiB\"\n", "daemon.traffic_log_max", "from \"1MiB\" to \"4GiB\"", 2),
        ("[daemon]\ntraffic_log_max = \"lots\"\n", "daemon.traffic_log_max", "like \"1MiB\"", 2),
        ("[daemon]\ntraffic_log = \"\"\n", "daemon.traffic_log", "empty string", 2),
        ("[daemon]\nallowed_hosts = [\"A.example\", \"a.example\"]\n", "daemon.allowed_hosts[1]", "listed twice", 2),
        ("[policy]\nmin_interval = \"ten\"\n", "policy.min_interval", "duration like \"30s\"", 2),
        ("[policy]\nquiet_before_reset = \"25h\"\n", "policy.quiet_before_reset", "from 0s to 23h 59m 59s", 2),
        ("[policy]\nwatch = [\"/ok\", \"/a b\"]\n", "policy.watch[1]", "expected an API path", 2),
        ("[policy]\nwatch = [\"/a\", \"a\"]\n", "policy.watch[1]", "listed twice", 2),
        ("[daemon]\nlisten = \"localhost\"\n", "daemon.listen", "IP address and port", 2),
        ("[daemon]\nlisten = \"0.0.0.0:9477\"\n", "daemon.listen", "api_token_file must be set", 2),
        ("[daemon]\napi_token_file = \"missing-token\"\n", "daemon.api_token_file", "cannot read", 2),
        ("[daemon]\nlog_format = \"xml\"\n", "daemon.log_format", "one of \"text\", \"json\", got \"xml\"", 2),
        ("[daemon]\nstate_dir = \"\"\n", "daemon.state_dir", "empty", 2),
        ("[wechat]\nbase_url = \"ftp://x\"\n", "wechat.base_url", "http:// or https://", 2),
        ("[wechat]\ntimeout = \"0s\"\n", "wechat.timeout", "longer than zero", 2),
        ("[poll]\ninterval = \"5\"\n", "poll.interval", "duration", 2),
        ("[poll]\napis = [\"/sns/userinfo\"]\n", "poll.apis[0]", "cannot be polled", 2),
        ("[[alerts]]\nkind = \"email\"\nurl = \"https://x\"\n", "alerts[0].kind", "\"wecom\", \"webhook\"", 2),
        ("[[alerts]]\nkind = \"wecom\"\nurl = \"ftp://x?key=K\"\n", "alerts[0].url", "http:// or https://", 3),
        ("[[alerts]]\nkind = \"wecom\"\n", "alerts[0].url", "missing", 1),
        ("[[alerts]]\nkind = \"wecom\"\nurl = \"https://x\"\nevents = [\"boom\"]\n", "alerts[0].events[0]", "unknown event \"boom\"", 4),
        ("[[accounts]]\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n", "accounts[0].name", "missing", 1),
        ("[[accounts]]\nname = \"a b\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n", "accounts[0].name", "letters, digits", 2),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448F04719CD48F69\"\nsecret = \"s\"\n", "accounts[0].appid", "16 lowercase hex", 3),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx1\"\nsecret = \"s\"\n", "accounts[0].appid", "like \"wx448f04719cd48f69\"", 3),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\n", "accounts[0].secret_file", "exactly one of", 1),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nsecret_env = \"X\"\n", "accounts[0].secret_env", "both set", 5),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"nope.secret\"\n", "accounts[0].secret_file", "cannot read", 4),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_env = \"WXQUOTAD_TEST_UNSET_VAR\"\n", "accounts[0].secret_env", "not set", 4),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nkind = \"app\"\n", "accounts[0].kind", "\"official_account\", \"mini_program\"", 5),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\npreset = \"big\"\n", "accounts[0].preset", "\"normal\", \"test\", \"none\"", 5),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\nclear_via = \"v3\"\n", "accounts[0].clear_via", "\"auto\", \"token\", \"appsecret\"", 5),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.limits]\n\"/x\" = 0\n", "accounts[0].limits.\"/x\"", "at least 1 call, got 0", 6),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.limits]\n\"/a//b\" = 5\n", "accounts[0].limits.\"/a//b\"", "empty or relative segment", 6),
        ("[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\n[accounts.policy]\nthreshold = 2.0\n", "accounts[0].policy.threshold", "got 2", 6),
        ("[policy]\nreserve = 5\n[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = \"s\"\npolicy.monthly_clears = 5\n", "accounts[0].policy.monthly_clears", "reserve = 5 and monthly_clears = 5", 7),
    ];
    for (text, key, fragment, line) in cases {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{text}\n{}", ConfigErrors(errs.clone()));
        let e = &errs[0];
        assert_eq!(e.key.as_deref(), Some(*key), "{text}\n{e}");
        assert!(
            e.message.contains(fragment),
            "{text}\n{e}\nwant: {fragment}"
        );
        assert_eq!(e.line, Some(*line), "{text}\n{e}");
        assert!(e.column.is_some(), "{e}");
    }
}

#[test]
fn duplicates_point_at_the_second_account() {
    let text = format!("{ACCOUNT}{ACCOUNT}");
    let errs = errors(&text);
    let keys: Vec<_> = errs.iter().map(|e| e.key.clone().unwrap()).collect();
    assert_eq!(
        keys,
        ["accounts[1].name", "accounts[1].appid"],
        "{}",
        ConfigErrors(errs.clone())
    );
    assert!(errs[0].message.contains("already used by accounts[0]"));
    assert_eq!(errs[0].line, Some(6));
    assert_eq!(errs[0].account.as_deref(), Some("shop"));
}

#[test]
fn unknown_keys_are_located() {
    let cases = [
        (
            "[daemon]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
            "daemon.lisen",
            3,
            1,
        ),
        ("colour = 1\n", "colour", 1, 1),
        (
            &*format!("{ACCOUNT}  secrets = \"x\"\n"),
            "accounts[0].secrets",
            5,
            3,
        ),
        (
            &*format!("{ACCOUNT}[accounts.policy]\nthreshhold = 0.5\n"),
            "accounts[0].policy.threshhold",
            6,
            1,
        ),
    ];
    for (text, key, line, col) in cases {
        let errs = errors(text);
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!((e.line, e.column), (Some(line), Some(col)), "{e}");
        assert!(e.message.contains("unknown"), "{e}");
    }
    let e = &errors(&format!("{ACCOUNT}  secrets = \"x\"\n"))[0];
    assert_eq!(e.account.as_deref(), Some("shop"));
    assert!(
        e.to_string()
            .contains(":5:3: accounts[0].secrets: account \"shop\": unknown"),
        "{e}"
    );
}

#[test]
fn syntax_and_type_errors_are_located() {
    let e = &errors("[daemon]\nlisten = \"127.0.0.1\n")[0];
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.starts_with("invalid TOML: "), "{e}");
    let e = &errors("[policy]\nreserve = \"two\"\n")[0];
    assert_eq!(
        (e.key.as_deref(), e.line),
        (Some("policy.reserve"), Some(2)),
        "{e}"
    );
}

#[test]
fn all_errors_are_collected() {
    let text =
        format!("[policy]\nthreshold = 7\nmax_clears_per_day = 0\n{ACCOUNT}appid_extra_line = 0\n");
    // An unknown key is reported alone: the values are checked once the keys are right.
    assert_eq!(errors(&text).len(), 1);
    let text = "[policy]\nthreshold = 7\nmax_clears_per_day = 0\n[[accounts]]\nname = \"x y\"\nappid = \"nope\"\n";
    let keys: Vec<_> = errors(text).into_iter().map(|e| e.key.unwrap()).collect();
    assert_eq!(
        keys,
        [
            "policy.threshold",
            "policy.max_clears_per_day",
            "accounts[0].name",
            "accounts[0].appid",
            "accounts[0].secret_file"
        ]
    );
}

#[test]
fn account_errors_name_the_account() {
    let text = format!("{ACCOUNT}preset = \"huge\"\n");
    let e = &errors(&text)[0];
    assert_eq!(e.account.as_deref(), Some("shop"));
    assert!(e.to_string().contains("account \"shop\""), "{e}");
}

#[test]
fn secrets_never_show() {
    let (config, warnings) = ok(ACCOUNT);
    let debug = format!("{config:?} {warnings:?}");
    assert!(!debug.contains("TOPSECRETVALUE"), "{debug}");
    assert_eq!(config.accounts[0].secret.expose(), "TOPSECRETVALUE");
    assert!(
        warnings.iter().any(|w| w.0.contains("discouraged")),
        "{warnings:?}"
    );
    // Errors about secrets, or with a secret in the account, never echo it.
    for text in [
        format!("{ACCOUNT}secret_env = \"X\"\n"),
        "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret = 12345678\n".into(),
        "[[alerts]]\nkind = \"wecom\"\nurl = \"ftp://host/?key=TOPSECRETVALUE\"\n".into(),
        "[[alerts]]\nkind = \"wecom\"\nurl = 12345678\n".into(),
    ] {
        let errs = ConfigErrors(errors(&text));
        let shown = format!("{errs} {errs:?}");
        assert!(
            !shown.contains("TOPSECRETVALUE") && !shown.contains("12345678"),
            "{shown}"
        );
    }
}

#[test]
fn secret_files_and_env() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "open.secret", "FILESECRET\n", 0o644);
    write(dir.path(), "closed.secret", "FILESECRET2 \n", 0o600);
    write(dir.path(), "empty.secret", "\n", 0o600);
    std::env::set_var("WXQUOTAD_TEST_SECRET_ENV", "ENVSECRET");
    let text = "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"open.secret\"\n\
                [[accounts]]\nname = \"b\"\nappid = \"wx448f04719cd48f6a\"\nsecret_file = \"closed.secret\"\n\
                [[accounts]]\nname = \"c\"\nappid = \"wx448f04719cd48f6b\"\nsecret_env = \"WXQUOTAD_TEST_SECRET_ENV\"\n";
    let path = write(dir.path(), "config.toml", text, 0o600);
    let (config, warnings) = load(&path, LoadOptions::default()).unwrap();
    let secrets: Vec<_> = config.accounts.iter().map(|a| a.secret.expose()).collect();
    assert_eq!(secrets, ["FILESECRET", "FILESECRET2", "ENVSECRET"]);
    #[cfg(unix)]
    {
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].0.contains("open.secret") && warnings[0].0.contains("0644"),
            "{warnings:?}"
        );
        // A world-readable config file is fine without secrets in it...
        write(dir.path(), "config.toml", text, 0o644);
        let (_, warnings) = load(&path, LoadOptions::default()).unwrap();
        assert!(
            !warnings.iter().any(|w| w.0.contains("config file")),
            "{warnings:?}"
        );
        // ...and a warning when it holds one inline.
        let inline = format!("{text}[[accounts]]\nname = \"d\"\nappid = \"wx448f04719cd48f6c\"\nsecret = \"INLINE\"\n");
        write(dir.path(), "config.toml", &inline, 0o644);
        let (_, warnings) = load(&path, LoadOptions::default()).unwrap();
        assert!(
            warnings.iter().any(|w| w.0.contains("config file")),
            "{warnings:?}"
        );
    }
    let path = write(dir.path(), "config.toml", "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"empty.secret\"\n", 0o600);
    let errs = load(&path, LoadOptions::default()).unwrap_err();
    assert!(errs.0[0].message.contains("is empty"), "{errs}");
}

#[test]
fn simulate_tolerates_missing_secrets_only() {
    let text = "[[accounts]]\nname = \"a\"\nappid = \"wx448f04719cd48f69\"\nsecret_file = \"/nonexistent/a.secret\"\n\
                [[accounts]]\nname = \"b\"\nappid = \"wx448f04719cd48f6a\"\nsecret_env = \"WXQUOTAD_TEST_UNSET_VAR\"\n";
    let sim = LoadOptions { simulate: true };
    let (_dir, r) = load_text(text, sim);
    let (config, warnings) = r.unwrap();
    assert_eq!(config.accounts[0].secret.expose(), "sim-secret-a");
    assert_eq!(config.accounts[1].secret.expose(), "sim-secret-b");
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.0.contains("made-up secret"))
            .count(),
        2
    );
    // Other rules still apply.
    let (_dir, r) = load_text(&format!("{text}[policy]\nthreshold = 3\n"), sim);
    assert_eq!(r.unwrap_err().0.len(), 1);
    // Without simulate both are errors.
    assert_eq!(errors(text).len(), 2);
}

#[test]
fn defaults_and_paths() {
    let (config, warnings) = ok("[daemon]\nstate_dir = \"state\"\n");
    let dir = config.path.parent().unwrap();
    assert_eq!(
        config.daemon.state_dir,
        std::path::absolute(dir).unwrap().join("state")
    );
    assert!(warnings.iter().any(|w| w.0.contains("no [[accounts]]")));
    assert_eq!(config.daemon.listen, "127.0.0.1:9477".parse().unwrap());
    assert_eq!(config.daemon.log_format, LogFormat::Text);
    assert!(!config.daemon.dry_run);
    assert_eq!(config.wechat.base_url, "https://api.weixin.qq.com");
    assert_eq!(config.wechat.timeout, Duration::from_secs(10));
    assert_eq!(config.poll.interval, Duration::from_secs(300));
    let (config, _) = ok("[daemon]\nstate_dir = \"/abs/state\"\n[wechat]\nbase_url = \"http://127.0.0.1:8080/\"\n[poll]\ninterval = \"0s\"\napis = [\"https://h/cgi-bin/user/get?access_token=T\"]\n");
    assert_eq!(config.daemon.state_dir, PathBuf::from("/abs/state"));
    assert_eq!(config.wechat.base_url, "http://127.0.0.1:8080");
    assert_eq!(config.poll.interval, Duration::ZERO);
    assert_eq!(config.poll.apis, ["/cgi-bin/user/get"]);

    assert_eq!(default_state_dir(None), PathBuf::from("/var/lib/wxquotad"));
    assert_eq!(
        default_state_dir(Some("".into())),
        PathBuf::from("/var/lib/wxquotad")
    );
    assert_eq!(
        default_state_dir(Some("/var/lib/wxquotad:/x".into())),
        PathBuf::from("/var/lib/wxquotad")
    );
    assert_eq!(
        default_state_dir(Some("/srv/s".into())),
        PathBuf::from("/srv/s")
    );
}

#[test]
fn token_file_and_loopback() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "token", "TOKENVALUE\n", 0o600);
    let path = write(
        dir.path(),
        "config.toml",
        "[daemon]\nlisten = \"0.0.0.0:9477\"\napi_token_file = \"token\"\n",
        0o600,
    );
    let (config, _) = load(&path, LoadOptions::default()).unwrap();
    assert_eq!(
        config.daemon.api_token.as_ref().unwrap().expose(),
        "TOKENVALUE"
    );
    assert!(!format!("{config:?}").contains("TOKENVALUE"));
    ok("[daemon]\nlisten = \"[::1]:9477\"\n");
}

#[test]
fn account_policy_overrides_key_by_key() {
    let text = format!(
        "[policy]\nthreshold = 0.8\nreserve = 1\nwatch = [\"/cgi-bin/user/get\"]\n\
         {ACCOUNT}kind = \"mini_program\"\n[accounts.limits]\n\"cgi-bin/user/get\" = 50\n\
         [accounts.policy]\nthreshold = 0.5\nmin_interval = \"1h\"\n"
    );
    let (config, _) = ok(&text);
    let a = &config.accounts[0];
    let want = Policy {
        threshold: 0.5,
        reserve: 1,
        min_interval: Duration::from_secs(3600),
        watch: vec!["/cgi-bin/user/get".into()],
        ..Policy::default()
    };
    assert_eq!(a.policy, want);
    assert_eq!(a.kind, AccountKind::MiniProgram);
    assert_eq!(a.preset, PresetName::None);
    assert_eq!(a.clear_via, ClearVia::Auto);
    let e = a.limits.entry_for("/cgi-bin/user/get").unwrap();
    assert_eq!((e.limit, e.source), (Some(50), LimitSource::Config));
    assert_eq!(a.watched().len(), 1);
}

#[test]
fn watching_an_interface_without_a_limit_warns() {
    let text = format!("[policy]\nwatch = [\"/cgi-bin/nolimit\"]\n{ACCOUNT}");
    let (_, warnings) = ok(&text);
    assert!(
        warnings
            .iter()
            .any(|w| w.0.contains("/cgi-bin/nolimit has no daily limit")),
        "{warnings:?}"
    );
}

#[test]
fn unreadable_config_names_the_file() {
    let errs = load(
        Path::new("/nonexistent/wxquotad.toml"),
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/wxquotad.toml: cannot read"),
        "{errs}"
    );
}

/// Issue 13: every unknown key and every wrongly typed value is reported, not only the
/// first, each with its own key and line.
#[test]
fn every_unknown_key_and_type_error_is_reported() {
    let text = format!(
        "[daemon]\nlisen = \"127.0.0.1:1\"\ndry_run = \"no\"\n\
         [policy]\nthreshhold = 0.5\nreserve = \"two\"\nwatch = [\"/a\", 3]\n\
         {ACCOUNT}colour = \"red\"\n[accounts.policy]\nmonthly_clears = \"ten\"\n\
         [[accounts]]\nname = \"b\"\nsecret = 12345678\n"
    );
    let errs = errors(&text);
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.key.clone().unwrap_or_default(), e.line.unwrap_or(0)))
        .collect();
    let want: Vec<(String, usize)> = [
        ("daemon.lisen", 2),
        ("daemon.dry_run", 3),
        ("policy.threshhold", 5),
        ("policy.reserve", 6),
        ("policy.watch[1]", 7),
        ("accounts[0].colour", 12),
        ("accounts[0].policy.monthly_clears", 14),
        ("accounts[1].secret", 17),
    ]
    .iter()
    .map(|(k, l)| (k.to_string(), *l))
    .collect();
    let mut sorted = got.clone();
    sorted.sort_by_key(|(_, l)| *l);
    assert_eq!(sorted, want, "{}", ConfigErrors(errs.clone()));
    let shown = ConfigErrors(errs.clone()).to_string();
    assert!(!shown.contains("12345678"), "{shown}");
    assert!(
        errs.iter()
            .filter(|e| e.message.contains("unknown key"))
            .count()
            == 3,
        "{shown}"
    );
    assert_eq!(errs[5].account.as_deref(), Some("shop"), "{shown}");
}

#[test]
fn new_policy_keys_and_defaults() {
    let (config, _) = ok(&format!(
        "[policy]\napi_clears = false\nmonthly_api_clears = 20\napi_reserve = 3\nconfirm_45009 = false\n\
         {ACCOUNT}[accounts.policy]\napi_reserve = 19\n"
    ));
    let p = &config.accounts[0].policy;
    assert!(!p.api_clears && !p.confirm_45009);
    assert_eq!((p.monthly_api_clears, p.api_reserve), (20, 19));
    let d = Policy::default();
    assert!(d.api_clears && d.confirm_45009);
    assert_eq!(
        (
            d.monthly_clears,
            d.reserve,
            d.monthly_api_clears,
            d.api_reserve
        ),
        (10, 2, 50, 5)
    );
    // An account's override is checked against the merged budget.
    let errs = errors(&format!(
        "[policy]\nmonthly_api_clears = 20\n{ACCOUNT}[accounts.policy]\napi_reserve = 20\n"
    ));
    assert_eq!(
        errs[0].key.as_deref(),
        Some("accounts[0].policy.api_reserve"),
        "{}",
        ConfigErrors(errs.clone())
    );
    let (config, _) = ok(
        "[daemon]\nallowed_hosts = [\"WXQ.Internal\", \"[::1]\", \"10.0.0.5\"]\n\
         [wechat]\nfallback_urls = [\"https://api2.weixin.qq.com/\", \"http://127.0.0.1:1\"]\n",
    );
    assert_eq!(
        config.daemon.allowed_hosts,
        ["wxq.internal", "::1", "10.0.0.5"]
    );
    assert_eq!(
        config.wechat.fallback_urls,
        ["https://api2.weixin.qq.com", "http://127.0.0.1:1"]
    );
    let (config, _) = ok("");
    assert!(config.daemon.allowed_hosts.is_empty() && config.wechat.fallback_urls.is_empty());
}

/// Issue 9 item 4: every duration has a range, so none can overflow later.
#[test]
fn absurd_durations_are_refused_everywhere() {
    for (table, key) in [
        ("wechat", "timeout"),
        ("poll", "interval"),
        ("policy", "min_interval"),
        ("policy", "quiet_before_reset"),
    ] {
        for value in ["60000000000000d", "18446744073709551615s", "1000y"] {
            let errs = errors(&format!("[{table}]\n{key} = \"{value}\"\n"));
            assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
            assert_eq!(errs[0].key.as_deref(), Some(&*format!("{table}.{key}")));
        }
    }
    let errs = errors(
        "[[alerts]]\nkind = \"webhook\"\nurl = \"http://x\"\nrepeat_after = \"60000000000000d\"\n",
    );
    assert_eq!(errs[0].key.as_deref(), Some("alerts[0].repeat_after"));
}

#[test]
fn the_proxy_section_defaults_and_warns_about_plain_http_off_loopback() {
    let (config, _) = ok("");
    assert!(config.proxy.is_none(), "absent = off");
    let (config, warnings) = ok("[wechat]\ntimeout = \"3s\"\n[proxy]\n");
    let p = config.proxy.expect("on");
    assert_eq!(p.listen, "127.0.0.1:9480".parse().unwrap());
    assert_eq!(p.allow, Cidr::loopback());
    assert_eq!(p.hold, Duration::from_secs(5));
    assert_eq!(
        p.timeout,
        Duration::from_secs(3),
        "the [wechat] timeout by default"
    );
    assert_eq!(p.max_retry_body, 1 << 20);
    assert!(p.tls.is_none());
    assert!(
        !warnings.iter().any(|w| w.0.contains("proxy")),
        "{warnings:?}"
    );
    let (config, warnings) = ok(
        "[proxy]\nlisten = \"0.0.0.0:9480\"\nallow = [\"10.0.0.0/8\", \"::1\"]\nhold = \"0s\"\n\
         timeout = \"2s\"\nmax_retry_body = 4096\n",
    );
    let p = config.proxy.unwrap();
    assert_eq!(p.allow.len(), 2);
    assert!(p.allows("10.1.2.3".parse().unwrap()) && !p.allows("127.0.0.1".parse().unwrap()));
    assert_eq!(
        (p.hold, p.timeout, p.max_retry_body),
        (Duration::ZERO, Duration::from_secs(2), 4096)
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.0.contains("plain HTTP") && w.0.contains("proxy.listen")),
        "{warnings:?}"
    );
}
