//! What ships beside the binary: the Grafana dashboard in packaging/grafana/ loads
//! (valid JSON with panels, every query naming only metrics and labels a running daemon
//! really exports on /metrics), and the Debian package's synopsis fits `dpkg -l`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Every PromQL expression in the dashboard (panel targets and template queries).
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(
                t["expr"]
                    .as_str()
                    .expect("a target has an expr")
                    .to_string(),
            );
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] == "query" {
            out.push(v["definition"].as_str().expect("definition").to_string());
        }
    }
    out
}

/// The `wxquotad_*` names in a query.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("wxquotad_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        names.push(name);
    }
    names
}

/// Label names a query relies on: in `by (...)`, `on(...)` and `{label=...}` selectors.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for key in ["by (", "on(", "by(", "on ("] {
        for part in expr.split(key).skip(1) {
            let inside = part.split(')').next().unwrap();
            labels.extend(inside.split(',').map(|l| l.trim().to_string()));
        }
    }
    for part in expr.split('{').skip(1) {
        let inside = part.split('}').next().unwrap();
        for m in inside.split(',') {
            let name: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                labels.insert(name);
            }
        }
    }
    labels
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grafana_dashboard_queries_only_metrics_the_daemon_exports() {
    limited(async {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/wxquotad.json");
        let text =
            std::fs::read_to_string(&path).expect("packaging/grafana/wxquotad.json is shipped");
        let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
        assert_eq!(dashboard["uid"], "wxquotad");
        assert!(dashboard["schemaVersion"].as_u64().is_some());
        let queries = queries(&dashboard);
        assert!(queries.len() >= 10, "{queries:?}");

        // A daemon that has reported, cleared and asked WeChat, so every family has samples.
        let sim = Sim::start(clock()).await;
        let setup = Setup::new(&sim.url, EAGER_POLICY, "");
        let d = Daemon::start(&setup.config, &[]);
        let (s, _) = d
            .report(r#"{"account":"shop","api":"/cgi-bin/user/get","calls":480}"#)
            .await;
        assert_eq!(s, 200);
        d.report(BLOCKED).await;
        let metrics = wait_for("a clear in /metrics", Duration::from_secs(20), || async {
            let m = d.get("/metrics").await.text().await.unwrap();
            m.contains("wxquotad_clear_attempts_total{").then_some(m)
        })
        .await;
        // Sample name → the label names it carries.
        let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let labels = exported.entry(name).or_default();
            if let Some(inside) = line.split('{').nth(1).and_then(|s| s.split('}').next()) {
                for pair in inside.split(',') {
                    if let Some((k, _)) = pair.split_once('=') {
                        labels.insert(k.to_string());
                    }
                }
            }
        }

        for q in &queries {
            let names = metric_names(q);
            assert!(
                !names.is_empty(),
                "a query that names no wxquotad metric: {q}"
            );
            let mut available = BTreeSet::new();
            for n in &names {
                let labels = exported.get(n).unwrap_or_else(|| {
                    panic!(
                        "{q}: the daemon exports no {n}; it exports {:?}",
                        exported.keys()
                    )
                });
                available.extend(labels.iter().cloned());
            }
            for l in label_names(q) {
                assert!(available.contains(&l), "{q}: no label {l:?} on {names:?}");
            }
        }
    })
    .await;
}

#[test]
fn the_debian_synopsis_fits_dpkg_l() {
    let manifest: toml::Value =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap()
            .parse()
            .expect("Cargo.toml parses");
    let package = &manifest["package"];
    // cargo deb takes the synopsis from `description` unless the deb metadata has one.
    let synopsis = package
        .get("metadata")
        .and_then(|m| m.get("deb"))
        .and_then(|d| d.get("description"))
        .or_else(|| package.get("description"))
        .and_then(|d| d.as_str())
        .expect("a description");
    assert!(!synopsis.contains('\n'), "one line: {synopsis:?}");
    assert!(
        synopsis.chars().count() <= 80,
        "{} characters; dpkg -l cuts past 80: {synopsis:?}",
        synopsis.chars().count()
    );
    assert!(
        !synopsis.ends_with('.'),
        "Debian synopses take no final period"
    );
}
