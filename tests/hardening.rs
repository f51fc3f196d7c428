//! Attacks on the daemon from issue 9 (and `check`'s thoroughness from issue 13), each
//! performed against the real binary: what an outsider on loopback, a hostile neighbour
//! or a careless admin could do, and what the daemon does instead.

mod common;

use std::time::Duration;

use common::*;

/// Issue 13 item 2: two unknown keys and two wrongly typed values are four errors, and
/// `check` names each with its line.
#[test]
fn check_reports_every_unknown_key_and_type_error() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    setup.edit(
        "[poll]\n",
        "colour = \"red\"\nmax_clears_per_day = \"three\"\n[poll]\nintreval = \"5m\"\n",
    );
    setup.edit("preset = \"normal\"", "preset = \"normal\"\nkind = 7");
    let out = bin()
        .arg("-c")
        .arg(&setup.config)
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    for key in [
        "policy.colour",
        "policy.max_clears_per_day",
        "poll.intreval",
        "accounts[0].kind",
    ] {
        assert!(stderr.contains(key), "want {key} in:\n{stderr}");
    }
    assert!(stderr.contains(": 4 error(s)"), "{stderr}");
}

/// Issue 9 item 4: an absurd duration is refused by `check` (it used to pass, then make
/// SIGTERM panic), and WeChat's monthly budgets cannot be configured away (item 5).
#[test]
fn check_refuses_absurd_durations_and_budgets_beyond_wechats() {
    for (from, to, key) in [
        (
            "timeout = \"1s\"",
            "timeout = \"60000000000000d\"",
            "wechat.timeout",
        ),
        (
            "interval = \"0s\"",
            "interval = \"60000000000000d\"",
            "poll.interval",
        ),
        (
            "[policy]\n",
            "[policy]\nmonthly_clears = 50\n",
            "policy.monthly_clears",
        ),
        (
            "[policy]\n",
            "[policy]\nmonthly_api_clears = 100\n",
            "policy.monthly_api_clears",
        ),
    ] {
        let setup = Setup::new("http://127.0.0.1:9", "", "");
        setup.edit(from, to);
        let out = bin()
            .arg("-c")
            .arg(&setup.config)
            .arg("check")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{to}: {stderr}");
        assert!(stderr.contains(key), "{to}: want {key} in {stderr}");
        assert!(stderr.contains(": 1 error(s)"), "{to}: {stderr}");
    }
}

/// Sends one raw HTTP/1.1 request (as a browser or curl would write it, headers and
/// all) and returns the status, the headers and the body.
fn raw(addr: std::net::SocketAddr, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("daemon accepts");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn json_error(head: &str, body: &str) -> String {
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}\n\n{body}"
    );
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"))
        .to_string()
}

/// Issue 9 item 1: a web page (any site open in a browser on this machine) posts a
/// forced clear as a "simple" request (text/plain, no preflight), and reads the status
/// through DNS rebinding. Both are refused; `curl -d` from a shell still works.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_spend_the_budget_or_read_the_status() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let addr = d.addr;
        let body = r#"{"force":true}"#;
        let page = format!(
            "POST /v1/accounts/shop/clear HTTP/1.1\r\nHost: {addr}\r\n\
             Origin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8\r\n\
             Sec-Fetch-Site: cross-site\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, head, answer) = tokio::task::spawn_blocking(move || raw(addr, &page))
            .await
            .unwrap();
        assert_eq!(status, 403, "{head}\n{answer}");
        assert!(
            json_error(&head, &answer).contains("cross-origin"),
            "{answer}"
        );
        // Refused before any handler ran: no clear request can have left.
        assert_eq!(sim.sim.clears_charged(APPID), 0);
        assert_eq!(setup.ledger_spent(), 0);

        // DNS rebinding: evil.example resolves to 127.0.0.1, the page reads the status.
        let rebound = format!(
            "GET /v1/status HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        );
        let (status, head, answer) = tokio::task::spawn_blocking(move || raw(addr, &rebound))
            .await
            .unwrap();
        assert_eq!(status, 403, "{head}\n{answer}");
        assert!(
            json_error(&head, &answer).contains("DNS rebinding"),
            "{answer}"
        );
        assert!(!answer.contains(APPID), "{answer}");

        // The same Origin trick on an unknown route is a 403 too (the layer is outermost).
        let probe = format!(
            "GET /no/such/route HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, _, _) = tokio::task::spawn_blocking(move || raw(addr, &probe))
            .await
            .unwrap();
        assert_eq!(status, 403);

        // What `curl -d '{"force":true}' http://127.0.0.1:PORT/v1/accounts/shop/clear` sends.
        let curl = format!(
            "POST /v1/accounts/shop/clear HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/7.88.1\r\n\
             Accept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, head, answer) = tokio::task::spawn_blocking(move || raw(addr, &curl))
            .await
            .unwrap();
        assert_eq!(status, 200, "{head}\n{answer}");
        assert!(answer.contains("\"cleared\""), "{answer}");
        assert_eq!(sim.sim.clears_charged(APPID), 1);
        // So does `curl http://localhost:PORT/v1/status`.
        let local = format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        );
        let (status, _, answer) = tokio::task::spawn_blocking(move || raw(addr, &local))
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    })
    .await;
}

/// Issue 9 items 14 and 15: every error is JSON (a wrong method, a malformed URL, an
/// unknown route), and a reason's length is counted in characters.
#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_json_and_reasons_count_characters() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        let addr = d.addr;
        for (request, want_status, want) in [
            ("GET /v1/report", 405, "method GET is not allowed on /v1/report"),
            ("DELETE /v1/status", 405, "not allowed"),
            ("GET /v1/accounts/%ff", 400, ""),
            ("POST /v1/accounts/%ff/clear", 400, ""),
            ("GET /v2/nothing", 404, "no such endpoint"),
        ] {
            let req = format!("{request} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let (status, head, body) = tokio::task::spawn_blocking(move || raw(addr, &req))
                .await
                .unwrap();
            assert_eq!(status, want_status, "{request}: {head}\n{body}");
            let error = json_error(&head, &body);
            assert!(error.contains(want), "{request}: {error}");
        }
        // 150 Chinese characters are 450 bytes: within the 200-character limit.
        let reason: String = "清".repeat(150);
        let (code, answer) = d
            .post(
                "/v1/accounts/shop/clear",
                &serde_json::json!({ "reason": reason }).to_string(),
            )
            .await;
        assert_eq!(code, 200, "{answer}");
        let reason: String = "清".repeat(201);
        let (code, answer) = d
            .post(
                "/v1/accounts/shop/clear",
                &serde_json::json!({ "reason": reason }).to_string(),
            )
            .await;
        assert_eq!(code, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("201 characters"),
            "{answer}"
        );
    })
    .await;
}

/// `wxquotad -c CONFIG ARGS...` started by `sh` after `prelude` (e.g. a ulimit).
fn under_shell(prelude: &str, config: &std::path::Path, args: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" -c \"$1\" {args}"))
        .arg(env!("CARGO_BIN_EXE_wxquotad"))
        .arg(config);
    cmd
}

/// Raises this process's soft open-file limit to `want` (the test holds many sockets).
fn raise_own_file_limit(want: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        assert!(
            rl.rlim_max >= want,
            "this test holds {want} sockets, but the hard open-file limit is {}; raise it \
             (ulimit -Hn) to run it",
            rl.rlim_max
        );
        if rl.rlim_cur < want {
            rl.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
        }
    }
}

/// `GET /healthz` on a fresh connection; the status, or 0 when nothing came back within
/// a few seconds.
fn healthz(addr: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        _ => 0,
    }
}

/// Issue 9 item 2: under systemd's default LimitNOFILE=1024, 1,100 idle connections
/// used to make the API and /healthz unreachable for as long as they were held. Now idle
/// connections are closed after the header timeout, the daemon never accepts past its
/// cap, and says so when it reaches it.
#[test]
fn idle_connections_cannot_take_the_api_down() {
    raise_own_file_limit(4096);
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let addr = setup.use_free_port();
    let d = Daemon::spawn(under_shell("ulimit -n 1024", &setup.config, "run"), &[]);
    assert_eq!(d.addr, addr);
    let idle: Vec<std::net::TcpStream> = (0..1100)
        .map(|i| {
            std::net::TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("idle connection {i} could not connect: {e}"))
        })
        .collect();
    // The 1,100 are held throughout; /healthz must answer anyway (at worst once the
    // idle ones time out and the waiting ones are accepted).
    let start = std::time::Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(100) {
        answered = healthz(addr);
        if answered == 200 {
            break;
        }
    }
    assert_eq!(
        answered,
        200,
        "/healthz unreachable while 1,100 idle connections are held; logs:\n{}",
        d.all_logs()
    );
    let logs = d.all_logs();
    assert!(
        logs.contains("\"connection_cap\""),
        "reaching the cap is logged:\n{logs}"
    );
    drop(idle);
    let (code, logs) = d.terminate();
    assert_eq!(code, Some(0), "{logs}");
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Runs `check` and returns (exit code, stderr), failing if it does not finish (a FIFO
/// used to hang it forever).
fn check_within_deadline(config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = bin()
        .arg("-c")
        .arg(config)
        .arg("check")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("`check` on {} hung", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 9 items 3 and 6: a secret, token or config file that is a FIFO, a device, huge,
/// or more than one line is refused by `check` at once, naming the file.
#[test]
fn check_refuses_fifos_devices_huge_and_multi_line_secret_files() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let secret = setup.dir.path().join("shop.secret");
    let token = setup.dir.path().join("api-token");

    // The config file itself is a FIFO.
    let fifo_config = setup.dir.path().join("config-fifo.toml");
    mkfifo(&fifo_config);
    let (code, err) = check_within_deadline(&fifo_config);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("it is a FIFO"), "{err}");

    // The secret file is a FIFO.
    std::fs::remove_file(&secret).unwrap();
    mkfifo(&secret);
    let (code, err) = check_within_deadline(&setup.config);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("shop.secret is not a regular file (it is a FIFO)"),
        "{err}"
    );

    // A 1 GiB secret file (sparse: it costs no disk).
    std::fs::remove_file(&secret).unwrap();
    std::fs::File::create(&secret)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (code, err) = check_within_deadline(&setup.config);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("1073741824 bytes, larger than the 4096"),
        "{err}"
    );

    // /dev/zero would be read until memory runs out.
    setup.edit(
        &format!("secret_file = \"{}\"", secret.display()),
        "secret_file = \"/dev/zero\"",
    );
    let (code, err) = check_within_deadline(&setup.config);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("/dev/zero is not a regular file (it is a character device)"),
        "{err}"
    );
    setup.edit(
        "secret_file = \"/dev/zero\"",
        &format!("secret_file = \"{}\"", secret.display()),
    );
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();

    // An API token file with a second line: every call would get 401.
    std::fs::write(&token, "TOKENLINE1\nTOKENLINE2\n").unwrap();
    set_mode(&token, 0o600);
    setup.edit(
        "[wechat]",
        &format!("api_token_file = \"{}\"\n\n[wechat]", token.display()),
    );
    let (code, err) = check_within_deadline(&setup.config);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("api-token holds a line break inside"), "{err}");
    assert!(!err.contains("TOKENLINE"), "{err}");
    // The token file is a FIFO.
    std::fs::remove_file(&token).unwrap();
    mkfifo(&token);
    let (code, err) = check_within_deadline(&setup.config);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("it is a FIFO"), "{err}");
}

/// Issue 9 item 3: a secret file replaced by a FIFO, then SIGHUP, used to block the
/// signal loop so that SIGTERM was ignored (kill -9 needed). Now the reload is rejected
/// (the old config stays) and SIGTERM stops the daemon.
#[test]
fn a_fifo_secret_and_sighup_cannot_block_sigterm() {
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let d = Daemon::start(&setup.config, &[]);
    let secret = setup.dir.path().join("shop.secret");
    std::fs::remove_file(&secret).unwrap();
    mkfifo(&secret);
    signal(d.child.id(), "HUP");
    let start = std::time::Instant::now();
    while d.events_named("reload_rejected").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the reload was neither applied nor rejected:\n{}",
            d.all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rejected = d.events_named("reload_rejected");
    assert!(
        rejected[0].to_string().contains("it is a FIFO"),
        "{rejected:?}"
    );
    // A second SIGHUP, then SIGTERM at once: the daemon stops (terminate() fails the
    // test if it has not exited within 30 s).
    signal(d.child.id(), "HUP");
    let (code, logs) = d.terminate();
    assert_eq!(code, Some(0), "{logs}");
}

/// Issue 9 item 12: outside systemd (no UMask=), with a umask of 022, the state
/// directory and database used to be created 0755 and 0644.
#[test]
fn state_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new("http://127.0.0.1:9", "", "");
    let state = setup.dir.path().join("state");
    assert!(!state.exists());
    let d = Daemon::spawn(under_shell("umask 022", &setup.config, "run"), &[]);
    let (code, logs) = d.terminate();
    assert_eq!(code, Some(0), "{logs}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state_dir");
    let mut files = 0;
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        files += 1;
    }
    assert!(files >= 1, "the database exists");
}

/// Issue 9 item 11: a batch of more than 4,096 items for one path not yet seen today
/// was refused as "already counts 4096 distinct API paths": the cap counted items.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_batch_for_one_new_path_is_accepted() {
    limited(async {
        let setup = Setup::new("http://127.0.0.1:9", "", "");
        let d = Daemon::start(&setup.config, &[]);
        let item = r#"{"account": "shop", "api": "/cgi-bin/tags/get", "calls": 1}"#;
        let body = format!("[{}]", vec![item; 5000].join(","));
        let (code, answer) = d.report(&body).await;
        assert_eq!(
            (code, answer["accepted"].as_u64()),
            (200, Some(5000)),
            "{answer}"
        );
        let shop = d.shop().await;
        assert_eq!(api_row(&shop, "/cgi-bin/tags/get")["used"], 5000);
    })
    .await;
}

/// Issue 9 item 8: the state file and its -wal/-shm deleted while running. Nothing was
/// noticed, and after a restart the month read 0 clears. Now /healthz answers 503 with
/// the reason, an error is logged, and no clear is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_state_file_stops_clears_and_fails_healthz() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let d = Daemon::start(&setup.config, &[]);
        assert_eq!(d.get("/healthz").await.status(), 200);
        let db = setup.state_db();
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            let _ = std::fs::remove_file(p);
        }
        let r = d.get("/healthz").await;
        assert_eq!(r.status(), 503);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("was deleted"), "{v}");
        let (code, answer) = d
            .post("/v1/accounts/shop/clear", r#"{"force": true}"#)
            .await;
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer["outcome"], "failed", "{answer}");
        assert!(
            answer["reason"].as_str().unwrap().contains("not sent"),
            "{answer}"
        );
        assert_eq!(sim.sim.clears_charged(APPID), 0);
        wait_for("the state_lost error", Duration::from_secs(20), || async {
            (!d.events_named("state_lost").is_empty()).then_some(())
        })
        .await;
    })
    .await;
}
