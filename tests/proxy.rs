//! The counting proxy (SPEC §7) in-process, on real loopback sockets, in front of the
//! simulator: forwarding, counting, the token server, clear-and-retry, and "never
//! twice" with a simulator that records what it executed.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use wxquotad::config::{Cidr, ProxySettings};
use wxquotad::engine::Engine;
use wxquotad::sim::{Endpoint, FaultKind};
use wxquotad::store::Store;

/// The simulator, an engine on a fresh state, and the proxy in front of it.
struct Rig {
    sim: Sim,
    engine: Engine,
    proxy: wxquotad::proxy::Running,
    http: reqwest::Client,
    _setup: Setup,
}

impl Rig {
    async fn start(
        policy: &str,
        tune: impl FnOnce(&mut wxquotad::config::Config, &mut ProxySettings, &str),
    ) -> Rig {
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, policy, "");
        let (mut config, _) = wxquotad::config::load(&setup.config).expect("config loads");
        // A long wait for WeChat: only the timeout test (which sets its own) may see a 504,
        // however slow the machine.
        let mut settings =
            ProxySettings::new("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30));
        tune(&mut config, &mut settings, &sim.url);
        let (store, _) = Store::open(&config.daemon.state_dir, clock().now()).unwrap();
        let engine = Engine::new(config, store, clock()).unwrap();
        let proxy = wxquotad::proxy::start(engine.clone(), settings)
            .await
            .expect("proxy starts");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Rig {
            sim,
            engine,
            proxy,
            http,
            _setup: setup,
        }
    }

    async fn default() -> Rig {
        Rig::start("", |_, _, _| {}).await
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.proxy.addr(), path_and_query)
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path_and_query: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path_and_query))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A token from the proxy's token server.
    async fn token(&self) -> String {
        let (s, v) = self
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().expect("a token").to_string()
    }

    /// The engine's count for `api` on "shop".
    fn used(&self, api: &str) -> u64 {
        let doc = serde_json::to_value(self.engine.status()).unwrap();
        let shop = &doc["accounts"][0];
        api_row(shop, api)["used"].as_u64().unwrap_or(0)
    }

    fn blocked(&self, api: &str) -> bool {
        let doc = serde_json::to_value(self.engine.status()).unwrap();
        api_row(&doc["accounts"][0], api)["blocked"] == true
    }

    fn requests_to(&self, path: &str) -> usize {
        self.sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.endpoint == path)
            .count()
    }

    fn executions_of(&self, path: &str) -> Vec<Vec<u8>> {
        self.sim
            .sim
            .executions()
            .into_iter()
            .filter(|e| e.path == path)
            .map(|e| e.body)
            .collect()
    }
}

const SEND: &str = "/cgi-bin/message/custom/send";

fn message(n: u32) -> Value {
    json!({"touser": "OPENID", "msgtype": "text", "text": {"content": format!("hello {n}")}})
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_counts_and_serves_tokens_without_the_classic_token_api() {
    limited(async {
        let rig = Rig::default().await;
        let token = rig.token().await;
        let (s, v) = rig
            .get(&format!(
                "/cgi-bin/user/info?access_token={token}&openid=o1"
            ))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        assert_eq!(rig.used("/cgi-bin/user/info"), 1);
        // The stable token API answers the same token from the cache.
        let (s, v) = rig
            .post(
                "/cgi-bin/stable_token",
                &json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["access_token"], token.as_str());
        let expires = v["expires_in"].as_i64().unwrap();
        assert!(expires > 7000 && expires <= 7200, "{expires}");
        // WeChat's classic token API is never called; one stable_token for everything.
        assert_eq!(rig.requests_to("/cgi-bin/token"), 0);
        assert_eq!(rig.requests_to("/cgi-bin/stable_token"), 1);
        // Token requests are not calls of the account: nothing counted for them.
        assert_eq!(rig.used("/cgi-bin/token"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_gets_40125_and_an_unconfigured_appid_is_forwarded() {
    limited(async {
        let rig = Rig::default().await;
        let (s, v) = rig
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret=wrong"
            ))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(40125)), "{v}");
        assert!(v.get("access_token").is_none());
        let (_, v) = rig
            .post(
                "/cgi-bin/stable_token",
                &json!({"grant_type": "client_credential", "appid": APPID, "secret": "nope"}),
            )
            .await;
        assert_eq!(v["errcode"], 40125);
        assert_eq!(rig.sim.sim.requests().len(), 0, "nothing reached WeChat");
        // An appid the daemon does not know goes to WeChat (here: unknown there too).
        let (_, v) = rig
            .get("/cgi-bin/token?grant_type=client_credential&appid=wxother&secret=x")
            .await;
        assert_eq!(v["errcode"], 40013, "WeChat's answer came back: {v}");
        assert_eq!(rig.requests_to("/cgi-bin/token"), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_prefix_adds_the_token_and_an_unknown_one_is_404() {
    limited(async {
        let rig = Rig::default().await;
        let (s, v) = rig.post(&format!("/a/shop{SEND}"), &message(1)).await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        assert_eq!(rig.used(SEND), 1);
        assert_eq!(rig.executions_of(SEND).len(), 1);

        let (s, v) = rig.post(&format!("/a/nobody{SEND}"), &message(2)).await;
        assert_eq!(s, 404);
        assert_eq!(v["errcode"], -1);
        assert!(v["errmsg"].as_str().unwrap().contains("\"nobody\""), "{v}");
        assert_eq!(rig.executions_of(SEND).len(), 1, "nothing forwarded");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_naming_a_configured_appid_are_counted_for_it() {
    limited(async {
        let rig = Rig::default().await;
        let token = rig.token().await;
        // A token the proxy did not hand out, but the body names the appid.
        let (s, _) = rig
            .post(
                &format!("/cgi-bin/openapi/rid/get?access_token={token}x"),
                &json!({"appid": APPID}),
            )
            .await;
        assert_eq!(s, 200);
        // 40001 (not our token) does not count; a named appid attributes it.
        assert_eq!(rig.used("/cgi-bin/openapi/rid/get"), 0);
        let (_, v) = rig
            .post(
                &format!("/cgi-bin/menu/get?access_token={token}"),
                &json!({"appid": APPID}),
            )
            .await;
        assert_eq!(v["errcode"], 0);
        assert_eq!(rig.used("/cgi-bin/menu/get"), 1);
    })
    .await;
}

/// The "never twice" cases: each failure after the call may have been executed goes
/// back to the application, and the simulator executed the call once.
#[tokio::test(flavor = "multi_thread")]
async fn never_twice_a_timeout_is_504_and_not_resent() {
    limited(async {
        let rig = Rig::start("", |_, p, _| p.timeout = Duration::from_millis(600)).await;
        let token = rig.token().await;
        rig.sim.fault(Endpoint::Api, FaultKind::ChargeThenDrop, 1);
        let (s, v) = rig
            .post(&format!("{SEND}?access_token={token}"), &message(1))
            .await;
        assert_eq!(s, 504, "{v}");
        assert_eq!(v["errcode"], -1);
        assert!(
            v["errmsg"].as_str().unwrap().contains("not sent again"),
            "{v}"
        );
        assert_eq!(rig.executions_of(SEND).len(), 1);
        assert_eq!(rig.requests_to(SEND), 1, "sent once");
        assert_eq!(rig.used(SEND), 1, "an unknown outcome counts");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn never_twice_a_connection_cut_mid_answer_is_504_and_not_resent() {
    limited(async {
        let rig = Rig::default().await;
        let token = rig.token().await;
        rig.sim.fault(Endpoint::Api, FaultKind::ChargeThenReset, 1);
        let (s, v) = rig
            .post(&format!("{SEND}?access_token={token}"), &message(1))
            .await;
        assert_eq!(s, 504, "{v}");
        assert_eq!(rig.executions_of(SEND).len(), 1);
        assert_eq!(rig.requests_to(SEND), 1);
        assert_eq!(rig.used(SEND), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn never_twice_a_5xx_or_system_busy_goes_back_unchanged() {
    limited(async {
        let rig = Rig::default().await;
        let token = rig.token().await;
        rig.sim.fault(Endpoint::Api, FaultKind::Http(500), 1);
        let r = rig
            .http
            .post(rig.url(&format!("{SEND}?access_token={token}")))
            .json(&message(1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500);
        assert_eq!(
            r.text().await.unwrap(),
            "simulated HTTP error",
            "body unchanged"
        );
        assert_eq!(rig.requests_to(SEND), 1);

        rig.sim.fault(Endpoint::Api, FaultKind::Errcode(-1), 1);
        let (s, v) = rig
            .post(&format!("{SEND}?access_token={token}"), &message(2))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(-1)));
        assert_eq!(rig.requests_to(SEND), 2, "each sent once");
        assert_eq!(rig.executions_of(SEND).len(), 0, "neither executed");
        assert_eq!(
            rig.used(SEND),
            2,
            "both count: their outcome is WeChat's to say"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_sent_is_502_or_goes_to_a_fallback_host() {
    limited(async {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        // No fallback: 502, and WeChat saw nothing.
        let d = dead.clone();
        let rig = Rig::start("", move |c, _, _| c.wechat.base_url = d).await;
        let (s, v) = rig
            .post(&format!("{SEND}?access_token=T"), &message(1))
            .await;
        assert_eq!(s, 502, "{v}");
        assert_eq!(v["errcode"], -1);
        assert!(
            v["errmsg"].as_str().unwrap().contains("nothing was sent"),
            "{v}"
        );
        assert_eq!(rig.sim.sim.requests().len(), 0);

        // With the simulator as the fallback, the call goes there once.
        let rig = Rig::start("", move |c, _, sim| {
            c.wechat.fallback_urls = vec![sim.to_string()];
            c.wechat.base_url = dead;
        })
        .await;
        // A token straight from WeChat (the engine's own base URL is the dead one).
        let r = rig
            .http
            .post(format!("{}/cgi-bin/stable_token", rig.sim.url))
            .json(&json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}))
            .send()
            .await
            .unwrap();
        let token: Value = r.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        let (s, v) = rig
            .post(&format!("{SEND}?access_token={token}"), &message(1))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        assert_eq!(rig.requests_to(SEND), 1);
        assert_eq!(rig.executions_of(SEND).len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_45009_is_cleared_and_the_call_sent_once_more() {
    limited(async {
        let rig = Rig::default().await;
        let token = rig.token().await;
        rig.sim.sim.set_usage(APPID, "/cgi-bin/user/get", 500);
        let (s, v) = rig
            .get(&format!("/cgi-bin/user/get?access_token={token}"))
            .await;
        assert_eq!(
            (s, v["errcode"].as_i64()),
            (200, Some(0)),
            "the application never sees the 45009: {v}"
        );
        assert_eq!(rig.sim.sim.clears_charged(APPID), 1);
        assert_eq!(
            rig.requests_to("/cgi-bin/user/get"),
            2,
            "the 45009, then the retry"
        );
        assert_eq!(
            rig.used("/cgi-bin/user/get"),
            1,
            "counted once, after the clear"
        );
        assert!(!rig.blocked("/cgi-bin/user/get"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_45009s_of_one_account_share_one_clear() {
    limited(async {
        let rig = std::sync::Arc::new(Rig::default().await);
        let token = rig.token().await;
        rig.sim.sim.set_usage(APPID, SEND, 500_000);
        let mut calls = Vec::new();
        for n in 0..8 {
            let rig = rig.clone();
            let token = token.clone();
            calls.push(tokio::spawn(async move {
                rig.post(&format!("{SEND}?access_token={token}"), &message(n))
                    .await
            }));
        }
        for c in calls {
            let (s, v) = c.await.unwrap();
            assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        }
        assert_eq!(rig.sim.sim.clears_charged(APPID), 1, "one clear for all");
        // Each message executed exactly once.
        let mut sent: Vec<String> = rig
            .executions_of(SEND)
            .iter()
            .map(|b| {
                serde_json::from_slice::<Value>(b).unwrap()["text"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        sent.sort();
        let want: Vec<String> = (0..8).map(|n| format!("hello {n}")).collect();
        assert_eq!(sent, want);
        // At most one count per executed call. (A call that a slow scheduler sent only
        // after WeChat applied the clear succeeds at once, and its count can fall
        // before the engine hears the clear worked and starts counters again.)
        let used = rig.used(SEND);
        assert!((1..=8).contains(&used), "{used}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_45009_with_no_clear_allowed_goes_back_unchanged() {
    limited(async {
        let rig = Rig::start("clear_on_45009 = false", |_, _, _| {}).await;
        let token = rig.token().await;
        rig.sim.sim.set_usage(APPID, "/cgi-bin/user/get", 500);
        let (s, v) = rig
            .get(&format!("/cgi-bin/user/get?access_token={token}"))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(45009)));
        assert_eq!(rig.requests_to("/cgi-bin/user/get"), 1, "not re-sent");
        assert_eq!(rig.sim.sim.clears_charged(APPID), 0);
        assert!(
            rig.blocked("/cgi-bin/user/get"),
            "marked blocked like a report"
        );
        assert_eq!(rig.used("/cgi-bin/user/get"), 0, "a 45009 does not count");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_the_proxy_handed_out_is_renewed_and_the_call_sent_once_more() {
    limited(async {
        let rig = Rig::default().await;
        let old = rig.token().await;
        // Someone forces a new stable token at WeChat: the old one is revoked.
        let r = rig
            .http
            .post(format!("{}/cgi-bin/stable_token", rig.sim.url))
            .json(&json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": true}))
            .send()
            .await
            .unwrap();
        let new: Value = r.json().await.unwrap();
        assert_ne!(new["access_token"], old.as_str());
        let (s, v) = rig
            .post(&format!("{SEND}?access_token={old}"), &message(1))
            .await;
        assert_eq!((s, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        assert_eq!(rig.requests_to(SEND), 2, "the 40001, then once with the new token");
        assert_eq!(rig.executions_of(SEND).len(), 1);
        assert_eq!(rig.token().await, new["access_token"].as_str().unwrap());

        // A token the proxy never handed out is not mended: WeChat's answer goes back.
        let (_, v) = rig
            .post(&format!("{SEND}?access_token=not-ours"), &message(2))
            .await;
        assert_eq!(v["errcode"], 40001);
        assert_eq!(rig.requests_to(SEND), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_bodies_pass_byte_for_byte_and_large_uploads_stream() {
    limited(async {
        let rig = Rig::start("", |_, p, _| p.max_retry_body = 64 * 1024).await;
        let token = rig.token().await;
        for size in [300 * 1024usize, 20 * 1024 * 1024] {
            let file: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let boundary = "wxquotad-test-boundary";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&file);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let r = rig
                .http
                .post(rig.url(&format!("/cgi-bin/media/upload?access_token={token}&type=image")))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(body)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            let media_id = v["media_id"].as_str().unwrap_or_else(|| panic!("{v}"));
            let r = rig
                .http
                .get(rig.url(&format!("/cgi-bin/media/get?access_token={token}&media_id={media_id}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.headers()["content-type"], "application/octet-stream");
            let got = r.bytes().await.unwrap();
            assert!(got[..] == file[..], "{size} bytes came back byte for byte");
        }
        assert_eq!(rig.used("/cgi-bin/media/upload"), 2);
        assert_eq!(rig.used("/cgi-bin/media/get"), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_allow_get_403_and_nothing_is_forwarded() {
    limited(async {
        let rig = Rig::start("", |_, p, _| {
            p.allow = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        })
        .await;
        let (s, v) = rig.post(&format!("/a/shop{SEND}"), &message(1)).await;
        assert_eq!(s, 403);
        assert_eq!(v["errcode"], -1);
        assert!(v["errmsg"].as_str().unwrap().contains("[proxy] allow"));
        let (s, _) = rig
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
            ))
            .await;
        assert_eq!(s, 403);
        assert!(rig.sim.sim.requests().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_serves_https_with_the_configured_certificate() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("proxy.crt"), dir.path().join("proxy.key"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
        let files = wxquotad::config::TlsFiles {
            cert: cert_file,
            key: key_file,
        };
        let rig = Rig::start("", |_, p, _| p.tls = Some(files)).await;
        let https = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let v: Value = https
            .post(format!("https://{}/a/shop{SEND}", rig.proxy.addr()))
            .json(&message(1))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["errcode"], 0, "{v}");
        assert_eq!(rig.executions_of(SEND).len(), 1);
        // Plain HTTP to a TLS port gets no WeChat answer and forwards nothing.
        assert!(rig
            .http
            .get(rig.url(&format!("/a/shop{SEND}")))
            .send()
            .await
            .is_err());
        assert_eq!(rig.executions_of(SEND).len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_tls_file_stops_the_start_naming_it() {
    limited(async {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("proxy.crt");
        std::fs::write(&cert, "not a certificate").unwrap();
        let files = wxquotad::config::TlsFiles {
            cert: cert.clone(),
            key: dir.path().join("missing.key"),
        };
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, "", "");
        let (config, _) = wxquotad::config::load(&setup.config).unwrap();
        let (store, _) = Store::open(&config.daemon.state_dir, clock().now()).unwrap();
        let engine = Engine::new(config, store, clock()).unwrap();
        // A long wait for WeChat: only the timeout test (which sets its own) may see a 504,
        // however slow the machine.
        let mut settings =
            ProxySettings::new("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30));
        settings.tls = Some(files);
        let err = match wxquotad::proxy::start(engine, settings).await {
            Ok(_) => panic!("started with a bad certificate"),
            Err(e) => e,
        };
        assert!(err.contains(&cert.display().to_string()), "{err}");
        assert!(err.contains("tls_cert_file"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn force_refresh_is_honoured_within_wechats_limits() {
    limited(async {
        let rig = Rig::default().await;
        let first = rig.token().await;
        let ask = json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": true});
        let (_, v) = rig.post("/cgi-bin/stable_token", &ask).await;
        let forced = v["access_token"].as_str().unwrap().to_string();
        assert_ne!(forced, first, "a forced refresh gives a new token");
        // Again within 30 s: WeChat would refuse (45011), so the cached one is served.
        let (_, v) = rig.post("/cgi-bin/stable_token", &ask).await;
        assert_eq!(v["access_token"], forced.as_str());
        assert_eq!(rig.token().await, forced, "every server now shares the new one");
        assert_eq!(rig.requests_to("/cgi-bin/stable_token"), 2);
    })
    .await;
}
