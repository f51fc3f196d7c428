//! Third-party platforms (SPEC §8) against the real binary: the signature-checked push
//! endpoint, the bearer-protected ticket endpoint, and durable tickets.

mod common;

use std::time::Duration;

use common::*;
use wxquotad::platform::crypto::MsgCrypt;
use wxquotad::platform::push;

const COMPONENT: &str = "wx7c8d9e0f1a2b3c4d";
const TOKEN: &str = "PUSHTOKENvalue123";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const API_TOKEN: &str = "api-bearer-token-0123456789";

/// A daemon config with one platform ("acme") and an API bearer token.
fn setup(sim_url: &str) -> Setup {
    let setup = Setup::new(sim_url, "", "");
    let dir = setup.dir.path();
    for (name, body) in [
        ("acme.secret", "COMPONENTSECRETvalue"),
        ("acme.token", TOKEN),
        ("acme.aeskey", AES_KEY),
        ("api-token", API_TOKEN),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
        set_mode(&dir.join(name), 0o600);
    }
    setup.edit(
        "[wechat]",
        &format!(
            "api_token_file = \"{}\"\n\n[wechat]",
            dir.join("api-token").display()
        ),
    );
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "{text}\n[[platforms]]\nname = \"acme\"\ncomponent_appid = \"{COMPONENT}\"\n\
             secret_file = \"{d}/acme.secret\"\nmessage_token_file = \"{d}/acme.token\"\n\
             aes_key_file = \"{d}/acme.aeskey\"\ndiscover = \"0s\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    setup
}

/// A push as WeChat sends it: (query string, body).
fn sealed(crypt: &MsgCrypt, xml: &str, nonce: &str) -> (String, String) {
    let encrypt = crypt.encrypt(xml);
    let timestamp = "1763438400";
    let sig = crypt.sign(timestamp, nonce, &encrypt);
    (
        format!("timestamp={timestamp}&nonce={nonce}&msg_signature={sig}&encrypt_type=aes"),
        push::envelope(COMPONENT, &encrypt),
    )
}

async fn send(d: &Daemon, query: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(d.url(&format!("/v1/platforms/acme/events?{query}")))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("daemon answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The stored (ticket, create_time), read from the state file.
fn stored_ticket(setup: &Setup) -> Option<(String, i64)> {
    let c = rusqlite::Connection::open(setup.state_db()).unwrap();
    c.query_row(
        "SELECT ticket, create_time FROM platform_tickets WHERE component_appid = ?1",
        [COMPONENT],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_are_checked_and_only_a_good_one_changes_the_ticket() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = setup(&sim.url);
        let d = Daemon::start(&setup.config, &[]);
        let ours = MsgCrypt::new(TOKEN, AES_KEY, COMPONENT).unwrap();

        // A good push, without any bearer token: stored, "success".
        let (q, body) = sealed(&ours, &push::ticket_xml(COMPONENT, "ticket@200", 200), "11");
        assert_eq!(send(&d, &q, body.clone()).await, (200, "success".into()));
        assert_eq!(stored_ticket(&setup), Some(("ticket@200".into(), 200)));

        // Wrong signature (another token): 403, nothing changes.
        let forger = MsgCrypt::new("not-the-token", AES_KEY, COMPONENT).unwrap();
        let (q, body) = sealed(&forger, &push::ticket_xml(COMPONENT, "forged", 900), "12");
        let (status, text) = send(&d, &q, body).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("msg_signature"), "{text}");
        // No signature at all.
        let (_, body) = sealed(&ours, &push::ticket_xml(COMPONENT, "unsigned", 901), "13");
        assert_eq!(send(&d, "timestamp=1&nonce=2", body).await.0, 403);

        // Signed, but for another component appid: 400.
        let other = MsgCrypt::new(TOKEN, AES_KEY, "wx0000000000000001").unwrap();
        let (q, body) = sealed(&other, &push::ticket_xml(COMPONENT, "elsewhere", 902), "14");
        let (status, text) = send(&d, &q, body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("wx0000000000000001"), "{text}");

        // Signed garbage in Encrypt: 400. Not XML at all: 400.
        let sig = ours.sign("1", "2", "AAAA");
        let (status, _) = send(
            &d,
            &format!("timestamp=1&nonce=2&msg_signature={sig}"),
            push::envelope(COMPONENT, "AAAA"),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            send(
                &d,
                "timestamp=1&nonce=2&msg_signature=x",
                "{\"json\": true}"
            )
            .await
            .0,
            400
        );

        // A huge body: 413 before anything is read into a decision.
        let huge = format!(
            "<xml><Encrypt>{}</Encrypt></xml>",
            "A".repeat(2 * 1024 * 1024)
        );
        let (q, _) = sealed(&ours, "<xml/>", "15");
        assert_eq!(send(&d, &q, huge).await.0, 413);

        // A replay of an older push: answered, but the newer ticket stays.
        let (q, body) = sealed(&ours, &push::ticket_xml(COMPONENT, "ticket@300", 300), "16");
        assert_eq!(send(&d, &q, body).await.0, 200);
        let (q, body) = sealed(&ours, &push::ticket_xml(COMPONENT, "ticket@200", 200), "17");
        assert_eq!(send(&d, &q, body).await, (200, "success".into()));
        assert_eq!(stored_ticket(&setup), Some(("ticket@300".into(), 300)));

        // An unknown platform: 404.
        let r = reqwest::Client::new()
            .post(d.url("/v1/platforms/nope/events?timestamp=1"))
            .body("<xml/>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);

        // The ticket endpoint needs the bearer token.
        let (status, _) = d
            .post("/v1/platforms/acme/ticket", r#"{"ticket": "manual"}"#)
            .await;
        assert_eq!(status, 401);
        let authed = |body: &'static str| {
            reqwest::Client::new()
                .post(d.url("/v1/platforms/acme/ticket"))
                .bearer_auth(API_TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        assert_eq!(
            authed(r#"{"ticket": ""}"#).await.unwrap().status().as_u16(),
            400
        );
        assert_eq!(
            authed(r#"{"tiket": "x"}"#).await.unwrap().status().as_u16(),
            400
        );
        assert_eq!(
            authed(r#"{"ticket": "manual-ticket"}"#)
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        assert_eq!(stored_ticket(&setup).unwrap().0, "manual-ticket");

        // The ticket survives a restart; secrets never reached the logs.
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0));
        for secret in [
            "ticket@300",
            "manual-ticket",
            TOKEN,
            AES_KEY,
            "COMPONENTSECRETvalue",
        ] {
            assert!(!logs.contains(secret), "{secret} in the logs");
        }
        let d = Daemon::start(&setup.config, &[]);
        assert_eq!(stored_ticket(&setup).unwrap().0, "manual-ticket");
        drop(d);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_ticket_pushes_leaves_a_whole_ticket() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = setup(&sim.url);
        let d = Daemon::start(&setup.config, &[]);
        let crypt = MsgCrypt::new(TOKEN, AES_KEY, COMPONENT).unwrap();
        let addr = d.addr;
        // Pushes keep coming from several senders while the daemon is killed.
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let crypt = crypt.clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut ok = 0u32;
                    for i in 0..10_000i64 {
                        let t = 1000 + i * 4 + s;
                        let (q, body) = sealed(
                            &crypt,
                            &push::ticket_xml(COMPONENT, &format!("ticket-{t}"), t),
                            &t.to_string(),
                        );
                        let url = format!("http://{addr}/v1/platforms/acme/events?{q}");
                        match http.post(url).body(body).send().await {
                            Ok(r) if r.status().is_success() => ok += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        wait_for("some pushes stored", Duration::from_secs(20), || async {
            stored_ticket(&setup).filter(|(_, t)| *t > 1100).map(|_| ())
        })
        .await;
        d.kill9();
        for s in senders {
            let _ = s.await;
        }
        assert_eq!(setup.integrity_check(), "ok");
        // Ticket and CreateTime come from the same push: nothing half-stored.
        let (ticket, t) = stored_ticket(&setup).expect("a ticket survives");
        assert_eq!(ticket, format!("ticket-{t}"));
        // The daemon starts again on that state.
        let d = Daemon::start(&setup.config, &[]);
        assert_eq!(stored_ticket(&setup).unwrap().0, ticket);
        drop(d);
    })
    .await;
}

async fn platforms_doc(d: &Daemon) -> serde_json::Value {
    reqwest::Client::new()
        .get(d.url("/v1/platforms"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn sim_calls(sim: &Sim, endpoint: &str) -> usize {
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_push_starts_discovery_and_pushes_add_and_remove_authorizers() {
    limited(async {
        let sim = Sim::start(clock()).await;
        sim.sim
            .add_platform(COMPONENT, "COMPONENTSECRETvalue", TOKEN, AES_KEY);
        let none = wxquotad::config::LimitTable::from_preset(wxquotad::config::PresetName::None);
        let listed = sim.sim.add_authorizers(COMPONENT, 1203, none.clone());
        let setup = setup(&sim.url);
        setup.edit("discover = \"0s\"", "discover = \"1h\"");
        let d = Daemon::start(&setup.config, &[]);
        let doc = platforms_doc(&d).await;
        assert_eq!(doc["platforms"][0]["name"], "acme");
        assert!(doc["platforms"][0]["ticket"].is_null(), "{doc}");

        // WeChat pushes a ticket: the daemon gets a component token and lists every
        // authorizer, 500 a page, and fetches no authorizer token for idle ones.
        sim.sim
            .set_push_url(COMPONENT, &d.url("/v1/platforms/acme/events"));
        let r = sim.sim.push_ticket(COMPONENT).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "success"));
        let doc = wait_for("discovery", Duration::from_secs(20), || async {
            let doc = platforms_doc(&d).await;
            (doc["platforms"][0]["authorizers"] == 1203).then_some(doc)
        })
        .await;
        let p = &doc["platforms"][0];
        assert_eq!(p["last_discovery"]["listed"], 1203, "{doc}");
        assert_eq!(p["component_token"], "cached", "{doc}");
        assert!(p["ticket"]["age_seconds"].as_i64().unwrap() >= 0, "{doc}");
        assert_eq!(
            sim_calls(&sim, "/cgi-bin/component/api_get_authorizer_list"),
            3
        );
        assert_eq!(sim_calls(&sim, "/cgi-bin/component/api_component_token"), 1);
        assert_eq!(
            sim_calls(&sim, "/cgi-bin/component/api_authorizer_token"),
            0
        );

        // An account authorizes the platform: added at once via api_query_auth.
        let (new, r) = sim
            .sim
            .push_authorized(COMPONENT, none.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        wait_for("the authorized push", Duration::from_secs(20), || async {
            (platforms_doc(&d).await["platforms"][0]["authorizers"] == 1204).then_some(())
        })
        .await;
        assert_eq!(sim_calls(&sim, "/cgi-bin/component/api_query_auth"), 1);
        // One revokes it: removed.
        let r = sim
            .sim
            .push_unauthorized(COMPONENT, &listed[7])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        wait_for("the unauthorized push", Duration::from_secs(20), || async {
            (platforms_doc(&d).await["platforms"][0]["authorizers"] == 1203).then_some(())
        })
        .await;
        let c = rusqlite::Connection::open(setup.state_db()).unwrap();
        let active: Vec<String> = c
            .prepare("SELECT appid FROM platform_authorizers WHERE removed_at IS NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(active.contains(&new));
        assert!(!active.contains(&listed[7]));

        // Tickets, tokens and refresh tokens never reach the logs or the API.
        let doc = platforms_doc(&d).await.to_string();
        let (code, logs) = d.terminate();
        assert_eq!(code, Some(0));
        for text in [&logs, &doc] {
            for secret in [
                "ticket@@@",
                "refreshtoken@@@",
                "queryauthcode@@@",
                "COMPONENTSECRETvalue",
            ] {
                assert!(!text.contains(secret), "{secret} leaked");
            }
            for t in sim.sim.tokens_issued() {
                assert!(!text.contains(&t), "a token leaked");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorizer_tokens_are_lazy_cached_and_61023_removes_the_authorizer() {
    limited(async {
        let sim = Sim::start(clock()).await;
        sim.sim
            .add_platform(COMPONENT, "COMPONENTSECRETvalue", TOKEN, AES_KEY);
        let none = wxquotad::config::LimitTable::from_preset(wxquotad::config::PresetName::None);
        let listed = sim.sim.add_authorizers(COMPONENT, 20, none);
        let setup = setup(&sim.url);
        let (config, _) = wxquotad::config::load(&setup.config).unwrap();
        let platform = config.platforms[0].clone();
        let (store, _) =
            wxquotad::store::Store::open(&config.daemon.state_dir, clock().now()).unwrap();
        let engine = wxquotad::engine::Engine::new(config, store, clock()).unwrap();
        let platforms = engine.platforms();

        // No ticket yet: a clear error, nothing called.
        let e = platforms.discover(&engine, &platform).await.unwrap_err();
        assert!(e.to_string().contains("no component_verify_ticket"), "{e}");
        assert_eq!(sim_calls(&sim, "/cgi-bin/component/api_component_token"), 0);

        // A ticket as WeChat would have pushed it.
        sim.sim.set_push_url(COMPONENT, "http://127.0.0.1:9/unused");
        let _ = sim.sim.push_ticket(COMPONENT).await;
        let ticket = sim.sim.latest_ticket(COMPONENT).unwrap();
        engine
            .store()
            .save_ticket(COMPONENT, &ticket, 1, clock().now())
            .unwrap();
        assert_eq!(platforms.discover(&engine, &platform).await.unwrap(), 20);

        // Tokens for 20 authorizers at once: each fetched once, then cached.
        let fetch_all = || {
            let engine = engine.clone();
            let platform = platform.clone();
            let listed = listed.clone();
            async move {
                let tasks: Vec<_> = listed
                    .into_iter()
                    .map(|a| {
                        let (engine, platform) = (engine.clone(), platform.clone());
                        tokio::spawn(async move {
                            engine
                                .platforms()
                                .authorizer_token(&engine, &platform, &a)
                                .await
                        })
                    })
                    .collect();
                let mut tokens = Vec::new();
                for t in tasks {
                    tokens.push(t.await.unwrap().unwrap());
                }
                tokens
            }
        };
        let first = fetch_all().await;
        assert_eq!(
            sim_calls(&sim, "/cgi-bin/component/api_authorizer_token"),
            20
        );
        let again = fetch_all().await;
        assert_eq!(
            sim_calls(&sim, "/cgi-bin/component/api_authorizer_token"),
            20
        );
        assert_eq!(
            first
                .iter()
                .map(|s| s.expose().to_string())
                .collect::<Vec<_>>(),
            again
                .iter()
                .map(|s| s.expose().to_string())
                .collect::<Vec<_>>()
        );
        // An authorizer token clears that authorizer's own quota (its budget, not the platform's).
        let http = reqwest::Client::new();
        let v: serde_json::Value = http
            .post(format!(
                "{}/cgi-bin/clear_quota?access_token={}",
                sim.url,
                first[0].expose()
            ))
            .json(&serde_json::json!({"appid": listed[0]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["errcode"], 0, "{v}");
        assert_eq!(sim.sim.clears_charged(&listed[0]), 1);
        assert_eq!(sim.sim.clears_charged(COMPONENT), 0);

        // Revoked on WeChat's side: the next fetch answers 61023 and removes it.
        sim.sim.revoke_authorizer(COMPONENT, &listed[3]);
        let fresh_engine_cache = wxquotad::platform::Platforms::default();
        let e = fresh_engine_cache
            .authorizer_token(&engine, &platform, &listed[3])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("61023"), "{e}");
        assert_eq!(engine.store().authorizer_count(COMPONENT).unwrap(), 19);
        let e = fresh_engine_cache
            .authorizer_token(&engine, &platform, &listed[3])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not an authorizer"), "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_simulate_with_a_platform_runs_the_whole_flow() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = setup(&sim.url);
        setup.edit("discover = \"0s\"", "discover = \"1h\"");
        let d = Daemon::start_with(&setup.config, &["run", "--simulate"], &[]);
        // The built-in simulator pushes a ticket at once; discovery follows.
        let doc = wait_for("simulated discovery", Duration::from_secs(30), || async {
            let doc = platforms_doc(&d).await;
            (doc["platforms"][0]["authorizers"].as_u64() >= Some(3)).then_some(doc)
        })
        .await;
        assert!(!doc["platforms"][0]["ticket"].is_null(), "{doc}");
        // The test's own simulator was never used: everything stayed in-process.
        assert_eq!(sim_calls(&sim, "/cgi-bin/component/api_component_token"), 0);
        let (code, _) = d.terminate();
        assert_eq!(code, Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_filters_by_platform_state_and_account_in_the_api_and_the_cli() {
    limited(async {
        let sim = Sim::start(clock()).await;
        let setup = setup(&sim.url);
        setup.use_free_port();
        let d = Daemon::start(&setup.config, &[]);
        let get = |q: &'static str| {
            let url = d.url(&format!("/v1/status{q}"));
            async move {
                let r = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(API_TOKEN)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap();
                let names: Vec<String> = v["accounts"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| x["name"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                (status, names, v)
            }
        };
        assert_eq!(get("").await.1, ["shop"]);
        assert_eq!(get("?state=ok").await.1, ["shop"]);
        assert!(get("?state=error").await.1.is_empty());
        assert_eq!(get("?account=SHO").await.1, ["shop"]);
        assert_eq!(get("?account=wx448f").await.1, ["shop"]);
        assert!(get("?account=zzz").await.1.is_empty());
        assert_eq!(get("?account=shop&state=ok").await.1, ["shop"]);
        // "shop" is no account of platform acme.
        let (status, names, _) = get("?platform=acme").await;
        assert_eq!((status, names.len()), (200, 0));
        let (status, _, v) = get("?platform=nope").await;
        assert_eq!(status, 404, "{v}");
        let (status, _, v) = get("?state=bogus").await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("exhausted"), "{v}");
        assert_eq!(get("?bogus=1").await.0, 400);

        // The CLI takes the same filters.
        let cli = |args: &[&str]| setup.cli(args);
        let (code, out, err) = cli(&["status", "--json", "--account", "sho"]);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["accounts"][0]["name"], "shop");
        let (code, out, _) = cli(&["status", "--json", "--state", "exhausted"]);
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["accounts"].as_array().unwrap().len(), 0);
        let (code, _, err) = cli(&["status", "--platform", "nope"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("no platform named"), "{err}");
        // Values are encoded: "&x=1" is part of the text, not another filter.
        let (code, out, err) = cli(&["status", "--json", "--account", "shop&x=1"]);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["accounts"].as_array().unwrap().len(), 0);
    })
    .await;
}
