//! The status page (SPEC §11) in a real browser: the real daemon binary and simulator,
//! Debian's headless Chromium driven through chromedriver (WebDriver over loopback
//! HTTP). Checks the rendered DOM against the daemon's own status, the filters, the
//! token flow with `api_token_file`, and saves screenshots under target/.
//!
//! Needs `chromium` and `chromium-driver` (Debian): `.ci/run` installs them; without
//! them this test fails saying how to install them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Browser steps wait this long for the page (Chromium starts slowly on a busy machine).
const PAGE_WAIT: Duration = Duration::from_secs(60);

/// The second account: a Mini Program with a small limit of its own.
const MINI_APPID: &str = "wx0123456789abcdef";
const MINI_API: &str = "/wxa/getwxacodeunlimit";

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the status page is tested in a real browser. Install it \
                 with `sudo apt-get update && sudo apt-get install -y chromium chromium-driver` \
                 (bash .ci/run does this)"
            );
        }
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // "ChromeDriver was started successfully on port N." names the port it chose.
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(PAGE_WAIT)
            .expect("chromedriver says its port");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(PAGE_WAIT)
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=1400,1000",
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a session");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer: Value = req
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body) in the page; returns what it returns.
    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `script` returns something other than null or false.
    async fn wait_js(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script).await;
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if start.elapsed() > PAGE_WAIT {
                let text = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    /// Types into the element, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves a PNG of the window under target/ and returns its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, which closes the browser (a plain blocking request: drop
        // cannot await), then the driver.
        let _ = (|| -> std::io::Result<()> {
            use std::io::{Read, Write};
            let addr = self.base.trim_start_matches("http://");
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            )?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer)?;
            Ok(())
        })();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What the page shows, read from the DOM: per account card its state, budget figures
/// and interface rows; the decisions table's rows; the filter's count line.
const READ_PAGE: &str = r##"
if (document.body.dataset.ready !== "1") return null;
const cards = [...document.querySelectorAll("#accounts .account")].map(c => ({
  name: c.dataset.account,
  state: c.dataset.state,
  used: c.querySelector(".clears .figure-used").textContent,
  left: c.querySelector(".clears .figure-left").textContent,
  bars: c.querySelectorAll(".clears .bar span").length,
  api_used: (c.querySelector(".api-clears .figure-used") || {}).textContent || null,
  api_left: (c.querySelector(".api-clears .figure-left") || {}).textContent || null,
  apis: [...c.querySelectorAll("tr[data-api]")].map(r => [r.dataset.api,
    r.querySelector(".api-used").textContent, r.querySelector(".api-limit").textContent]),
  last: (c.querySelector(".last-reason") || {}).textContent || null,
}));
const decisions = [...document.querySelectorAll("#decisions tr.decision")]
  .map(r => [...r.children].map(td => td.textContent));
return { cards, decisions, count: document.getElementById("count").textContent };
"##;

fn card<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no card for {name}: {page}"))
}

/// Thousands separators, as the page prints figures.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn scenario_setup() -> (Sim, Setup) {
    let sim = Sim::start(clock()).await;
    let mut limits = wxquotad::config::LimitTable::from_preset(wxquotad::config::PresetName::None);
    limits.set(MINI_API, 1000, wxquotad::config::LimitSource::Config);
    sim.sim.add_account(MINI_APPID, SECRET, limits);
    let mini = format!(
        r#"
[[accounts]]
name = "mini"
appid = "{MINI_APPID}"
kind = "mini_program"
preset = "none"
secret_env = "WXQUOTAD_TEST_MINI_SECRET"
[accounts.limits]
"{MINI_API}" = 1000
[accounts.policy]
min_interval = "1h"
"#
    );
    let setup = Setup::new(&sim.url, EAGER_POLICY, &mini);
    (sim, setup)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_accounts_budgets_usage_and_decisions_in_a_browser() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, setup) = scenario_setup().await;
        let d = Daemon::start(&setup.config, &[("WXQUOTAD_TEST_MINI_SECRET", SECRET)]);
        // shop: a threshold clear (480 of 500), then fresh usage after it.
        let (s, _) = d
            .report(r#"{"account":"shop","api":"/cgi-bin/user/get","calls":480}"#)
            .await;
        assert_eq!(s, 200);
        wait_for("shop's clear", Duration::from_secs(20), || async {
            (d.shop().await["clears"]["last"]["outcome"] == "ok").then_some(())
        })
        .await;
        let (s, _) = d
            .report(r#"{"account":"shop","api":"/cgi-bin/user/info","calls":1234}"#)
            .await;
        assert_eq!(s, 200);
        // mini: a forced clear, then 950 of 1000 calls: due, but held by min_interval.
        let (s, v) = d
            .post("/v1/accounts/mini/clear", r#"{"force":true,"reason":"page test <b>bold</b>"}"#)
            .await;
        assert_eq!((s, v["outcome"].as_str()), (200, Some("cleared")), "{v}");
        let (s, _) = d
            .report(&format!(r#"{{"account":"mini","api":"{MINI_API}","calls":950}}"#))
            .await;
        assert_eq!(s, 200);
        let decisions: Value = d.get("/v1/decisions?limit=10").await.json().await.unwrap();
        let held = decisions["decisions"][0].clone();
        assert_eq!(
            (held["account"].as_str(), held["outcome"].as_str(), held["gate"].as_str()),
            (Some("mini"), Some("hold"), Some("min_interval")),
            "newest first: {decisions}"
        );
        let status = d.status().await;

        let browser = Browser::start().await;
        browser.go(&d.url("/")).await;
        // Wait on the DOM holding the data (not on time): mini's hold in the table.
        let page = browser
            .wait_js(
                "the accounts and the hold decision",
                &format!(
                    "const p = (() => {{ {READ_PAGE} }})();\n\
                     return p && p.cards.length === 2 && p.decisions.some(r => r[4].startsWith('hold')) ? p : null;"
                ),
            )
            .await;

        // Every account with the daemon's own figures.
        for a in status["accounts"].as_array().unwrap() {
            let name = a["name"].as_str().unwrap();
            let c = card(&page, name);
            assert_eq!(c["state"], a["state"], "{name}");
            assert_eq!(c["used"], a["clears"]["used"].to_string(), "{name}");
            assert_eq!(c["left"], a["clears"]["left"].to_string(), "{name}");
            assert_eq!(c["bars"], 3, "used / left / reserve segments");
            // Per-interface clears, drawn when the status has them.
            if a["api_clears"].is_object() {
                assert_eq!(c["api_used"], a["api_clears"]["used"].to_string(), "{name}");
                assert_eq!(c["api_left"], a["api_clears"]["left"].to_string(), "{name}");
            } else {
                assert_eq!(c["api_used"], Value::Null, "{name}");
            }
            assert_eq!(c["last"], a["clears"]["last"]["reason"], "{name}");
        }
        let shop = card(&page, "shop");
        assert_eq!(shop["used"], "1");
        assert!(
            shop["apis"]
                .as_array()
                .unwrap()
                .contains(&json!(["/cgi-bin/user/info", grouped(1234), grouped(
                    status["accounts"][0]["apis"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|q| q["api"] == "/cgi-bin/user/info")
                        .unwrap()["limit"]
                        .as_u64()
                        .unwrap()
                )])),
            "{shop}"
        );
        let mini = card(&page, "mini");
        assert_eq!(mini["apis"], json!([[MINI_API, "950", "1,000"]]));
        // A reason is shown as text, never interpreted as HTML.
        assert!(mini["last"].as_str().unwrap().contains("<b>bold</b>"), "{mini}");
        // The decisions, newest first, with the log's fields.
        let rows = page["decisions"].as_array().unwrap();
        assert_eq!(rows[0][1], "mini");
        assert_eq!(rows[0][4], "hold (min_interval)");
        assert!(
            rows[0][7]
                .as_str()
                .unwrap()
                .starts_with(&held["clears_left"].to_string()),
            "{rows:?}"
        );
        assert!(rows.iter().any(|r| r[1] == "shop" && r[2] == "threshold" && r[4] == "clear"));
        browser.screenshot("status-page.png").await;

        // Filters: by name, then by state.
        browser.type_into("#filter-name", "min").await;
        let names = browser
            .wait_js(
                "the name filter",
                "const n = [...document.querySelectorAll('#accounts .account')].map(c => c.dataset.account);\
                 return n.length === 1 ? n : null;",
            )
            .await;
        assert_eq!(names, json!(["mini"]));
        let count = browser.js("return document.getElementById('count').textContent").await;
        assert_eq!(count, "1 of 2 accounts");
        browser.type_into("#filter-name", "").await;
        browser
            .js("const s = document.getElementById('filter-state'); s.value = 'exhausted'; s.dispatchEvent(new Event('change')); return true;")
            .await;
        let count = browser
            .wait_js(
                "the state filter",
                "const c = document.getElementById('count').textContent; return c.startsWith('0 of') ? c : null;",
            )
            .await;
        assert_eq!(count, "0 of 2 accounts");

        // It refreshes itself: a new report shows up without reloading the page.
        browser
            .js("const s = document.getElementById('filter-state'); s.value = ''; s.dispatchEvent(new Event('change')); return true;")
            .await;
        let (s, _) = d
            .report(r#"{"account":"shop","api":"/cgi-bin/user/info","calls":1000}"#)
            .await;
        assert_eq!(s, 200);
        browser
            .wait_js(
                "the refreshed figure",
                &format!(
                    "return [...document.querySelectorAll('tr[data-api=\"/cgi-bin/user/info\"] .api-used')]\
                     .some(e => e.textContent === '{}');",
                    grouped(2234)
                ),
            )
            .await;

        // Self-contained: the page references nothing outside the daemon.
        let html = d.get("/").await.text().await.unwrap();
        for needle in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(needle), "the page refers to {needle}");
        }
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_api_token_the_page_asks_for_it_and_keeps_it_for_the_session() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (_sim, setup) = scenario_setup().await;
        let token = "page-test-token-0123456789abcdef";
        let token_file = setup.dir.path().join("api-token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        set_mode(&token_file, 0o600);
        setup.edit(
            "log_format = \"json\"",
            &format!(
                "log_format = \"json\"\napi_token_file = \"{}\"",
                token_file.display()
            ),
        );
        let d = Daemon::start(&setup.config, &[("WXQUOTAD_TEST_MINI_SECRET", SECRET)]);

        // The shell is served without the token and holds no data; the API needs it.
        let shell = d.get("/").await;
        assert_eq!(shell.status(), 200);
        let html = shell.text().await.unwrap();
        assert!(!html.contains("shop") && !html.contains(APPID));
        assert_eq!(d.get("/v1/decisions").await.status(), 401);

        let browser = Browser::start().await;
        browser.go(&d.url("/")).await;
        browser
            .wait_js(
                "the token prompt",
                "return document.body.dataset.auth === 'needed' &&\
                 !document.getElementById('token-panel').classList.contains('hidden');",
            )
            .await;
        let text = browser.js("return document.body.innerText").await;
        assert!(!text.as_str().unwrap().contains("shop"), "no data before the token");
        browser.screenshot("status-page-token.png").await;

        // A wrong token is refused and not kept.
        browser.type_into("#token", "wrong").await;
        browser.click("#token-form button").await;
        browser
            .wait_js(
                "the refusal",
                "return document.getElementById('problem').textContent.includes('refused');",
            )
            .await;
        let kept = browser.js("return sessionStorage.getItem('wxquotad.token')").await;
        assert_eq!(kept, Value::Null);

        browser.type_into("#token", token).await;
        browser.click("#token-form button").await;
        let page = browser
            .wait_js(
                "the accounts after the token",
                &format!("const p = (() => {{ {READ_PAGE} }})(); return p && p.cards.length === 2 ? p : null;"),
            )
            .await;
        assert_eq!(card(&page, "shop")["used"], "0");
        // Kept for the session, and never in the address.
        let kept = browser.js("return sessionStorage.getItem('wxquotad.token')").await;
        assert_eq!(kept, token);
        let url = browser.js("return location.href").await;
        assert!(!url.as_str().unwrap().contains(token), "{url}");
        // A reload of the page in the same session needs no typing.
        browser.go(&d.url("/")).await;
        browser
            .wait_js(
                "the accounts after a reload",
                "return document.body.dataset.ready === '1' && document.querySelectorAll('#accounts .account').length === 2;",
            )
            .await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_of_accounts_is_drawn_a_hundred_at_a_time_and_filtered() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let sim = Sim::start(clock()).await;
        // 150 more accounts (shop is the first): appids wx00000000000000NN, no clears needed.
        let mut extra = String::new();
        for i in 0..150u32 {
            extra.push_str(&format!(
                "\n[[accounts]]\nname = \"fleet-{i:03}\"\nappid = \"wx{i:016x}\"\npreset = \"normal\"\nsecret_env = \"WXQUOTAD_TEST_FLEET_SECRET\"\n"
            ));
        }
        let setup = Setup::new(&sim.url, "", &extra);
        let d = Daemon::start(&setup.config, &[("WXQUOTAD_TEST_FLEET_SECRET", SECRET)]);
        // One busy account among them: it is drawn first (the most loaded).
        let (s, _) = d
            .report(r#"{"account":"fleet-123","api":"/cgi-bin/user/info","calls":4000000}"#)
            .await;
        assert_eq!(s, 200);

        let browser = Browser::start().await;
        browser.go(&d.url("/")).await;
        let page = browser
            .wait_js(
                "the fleet",
                &format!("const p = (() => {{ {READ_PAGE} }})(); return p && p.cards.length > 0 ? p : null;"),
            )
            .await;
        assert_eq!(page["cards"].as_array().unwrap().len(), 100);
        assert_eq!(
            page["count"],
            "showing 100 of 151 matching accounts (151 in all): narrow the filter"
        );
        assert_eq!(page["cards"][0]["name"], "fleet-123", "the busiest first");

        browser.type_into("#filter-name", "fleet-14").await;
        let names = browser
            .wait_js(
                "the filtered fleet",
                "const n = [...document.querySelectorAll('#accounts .account')].map(c => c.dataset.account);\
                 return n.length === 10 ? n : null;",
            )
            .await;
        let want: Vec<String> = (140..150).map(|i| format!("fleet-{i:03}")).collect();
        assert_eq!(names, json!(want));
        browser.screenshot("status-page-fleet.png").await;
    })
    .await
    .expect("within the time limit");
}
