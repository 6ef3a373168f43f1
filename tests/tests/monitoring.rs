//! The monitoring kit of `ops/monitoring` against the real services:
//! promtool accepts the alert rules, their unit tests, the example scrape
//! configuration and every query of the Grafana dashboard, and every
//! metric the alerts and the dashboard name is one a running dominator or
//! agent exports, spelled as the scrape spells its samples.
//!
//! promtool comes from `ops/install-tools.sh` (`.tools/bin/promtool`, out
//! of Debian's prometheus package), `PROMTOOL`, or `PATH`; without it the
//! promtool checks say they were skipped, and the scrape check still runs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use dom_tests::{eventually, repo_root};
use dominator::Dominator;
use regex::Regex;

use crate::fleet_kit::{quick, source, Fleet};

fn monitoring() -> PathBuf {
    repo_root().join("ops/monitoring")
}

/// promtool, if there is one.
fn promtool() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return Some(PathBuf::from(path));
    }
    let pinned = repo_root().join(".tools/bin/promtool");
    if pinned.exists() {
        return Some(pinned);
    }
    let found = Command::new("promtool").arg("--version").output();
    found
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("promtool"))
}

/// Runs `promtool ARGS` in `dir`; panics with its output unless it passes.
fn promtool_passes(promtool: &Path, dir: &Path, args: &[&str]) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every PromQL expression of the rule file: the `expr:` values (on their
/// line or the more indented ones below) and the queries its annotation
/// templates run (`query "..."`).
fn alert_expressions(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = rest.trim().trim_start_matches(['>', '|', '-']).to_string();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !deeper && !next.trim().is_empty() {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr.trim().to_string());
    }
    let template = Regex::new(r#"query "([^"]+)""#).unwrap();
    exprs.extend(template.captures_iter(rules).map(|c| c[1].to_string()));
    exprs
}

/// Every query of the dashboard: the panels' `expr`s and the template
/// variables' definitions.
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    exprs.extend(
        variables
            .iter()
            .filter_map(|v| v["definition"].as_str())
            .map(str::to_string),
    );
    exprs
}

/// The services' metric names an expression uses, and `up` (which
/// Prometheus makes for every target). A name is taken whole: a
/// histogram's `_bucket`, a counter's `_total`, as they are sampled.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let name = Regex::new(r"(^|[^A-Za-z0-9_:$])((dominator|subd)_[a-z0-9_]+|up)\b").unwrap();
    name.captures_iter(expr).map(|c| c[2].to_string()).collect()
}

/// The sample names of a scrape in the text format.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The names no scrape has; `up` is Prometheus's own.
fn unexported(names: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| *n != "up" && !exported.contains(*n))
        .cloned()
        .collect()
}

/// A dashboard query as Prometheus gets it: Grafana's variables filled in.
fn as_prometheus_gets_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$job", ".*")
        .replace("$agents", ".*")
        .replace("$instance", ".*")
}

async fn scrape(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
fn promtool_accepts_the_rules_their_tests_the_scrape_config_and_the_dashboard() {
    let Some(promtool) = promtool() else {
        dom_tests::skip_without("no promtool (ops/install-tools.sh installs it, or set PROMTOOL)");
        return;
    };
    let dir = monitoring();
    promtool_passes(&promtool, &dir, &["check", "rules", "alerts.yml"]);
    promtool_passes(&promtool, &dir, &["test", "rules", "alerts.test.yml"]);
    promtool_passes(&promtool, &dir, &["check", "config", "prometheus.yml"]);

    // Each panel's query parses: as a recording rule, promtool checks it.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let queries: Vec<String> = dashboard_expressions(&dashboard)
        .iter()
        .filter(|e| !e.starts_with("label_values("))
        .map(|e| as_prometheus_gets_it(e))
        .collect();
    assert!(queries.len() > 20, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(query).unwrap();
        rules.push_str(&format!(
            "      - record: panel_{i}\n        expr: {quoted}\n"
        ));
    }
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("panels.yml"), rules).unwrap();
    promtool_passes(&promtool, scratch.path(), &["check", "rules", "panels.yml"]);
}

#[test]
fn metric_names_are_taken_whole_and_a_misspelt_one_is_caught() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(dominator_event_lag_seconds_bucket{job=~"$job"}[5m]))) > 10 or up{job="subd"} == 0 and on() subd_updates_total"#,
    );
    let want = [
        "dominator_event_lag_seconds_bucket",
        "subd_updates_total",
        "up",
    ];
    assert_eq!(names, want.map(String::from).into());
    // Not `$job`'s name, nor a label's or a word's that merely contains one.
    assert!(metric_names(r#"x{job=~"$subd_job", instance="upstream"}"#).is_empty());
    let exported =
        sample_names("# TYPE dominator_machines gauge\ndominator_machines{status=\"all\"} 2\n");
    assert_eq!(
        unexported(&metric_names("dominator_machines"), &exported),
        Vec::<String>::new()
    );
    assert_eq!(
        unexported(&metric_names("dominator_machine > 0"), &exported),
        ["dominator_machine"]
    );
    // A histogram's family name is no sample's.
    let histogram = sample_names("dominator_round_duration_seconds_sum 1.5\n");
    assert_eq!(
        unexported(
            &metric_names("dominator_round_duration_seconds"),
            &histogram
        ),
        ["dominator_round_duration_seconds"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_panel_names_metrics_the_dominator_and_agents_export() {
    let dir = monitoring();
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let alerts = alert_expressions(&rules);
    let panels = dashboard_expressions(&dashboard);
    assert!(
        alerts.len() >= 16 && panels.len() > 20,
        "{alerts:?} {panels:?}"
    );

    // A fleet at rest: the dominator serving /metrics, an agent serving its
    // own, an image rolled out to it, and the streams measured.
    let mut fleet = Fleet::start().await;
    // Its own dominator, handing the lease on, for one serving HTTP.
    fleet.dominator.take().unwrap().stop().await;
    let dominator = Dominator::start(fleet.bus.clone(), quick(), Some("127.0.0.1:0"))
        .await
        .unwrap();
    let tree = source(fleet.dir.path(), "tree", |_| {});
    fleet
        .add_image("sparse.0", &tree, "", "triggers.sshd")
        .await;
    let machine = fleet.machine("web1");
    let agent = machine.start_with(|config| config.http = Some("127.0.0.1:0".into()));
    fleet.require(&machine.host, "sparse.0").await;
    fleet.wait_compliant(&machine.host, "sparse.0").await;
    let dominator_addr = dominator.http_addr().unwrap();
    let agent_addr = agent.http_address().unwrap();
    // Families with labels have samples only once something set them.
    let (dominator_scrape, agent_scrape) =
        eventually("both scrapes to have every family", || async {
            let d = scrape(dominator_addr).await;
            let a = scrape(agent_addr).await;
            let ready = d.contains("dominator_stream_max_bytes{")
                && d.contains("dominator_rollout_machines{image=\"sparse.0\",state=\"done\"} 1")
                && d.contains("dominator_machines{status=\"compliant\"} 1")
                && a.contains("subd_updates_total{result=\"ok\"}")
                && a.contains("subd_events_total{");
            ready.then_some((d, a))
        })
        .await;
    let mut exported = sample_names(&dominator_scrape);
    exported.extend(sample_names(&agent_scrape));

    let mut missing = Vec::new();
    let mut named = BTreeSet::new();
    for (what, exprs) in [("alerts.yml", &alerts), ("grafana-dashboard.json", &panels)] {
        for expr in exprs.iter() {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{what}: no metric in {expr}");
            for name in unexported(&names, &exported) {
                missing.push(format!("{what}: {name} (in {expr})"));
            }
            named.extend(names);
        }
    }
    assert!(
        missing.is_empty(),
        "metrics no scrape has:\n{}\n\nthe dominator exports:\n{dominator_scrape}\nthe agent:\n{agent_scrape}",
        missing.join("\n")
    );
    // The alerts watch the agents as well as the dominator.
    for name in [
        "up",
        "subd_updates_total",
        "dominator_stream_bytes",
        "dominator_active",
    ] {
        assert!(named.contains(name), "{name} in {named:?}");
    }
    drop(agent);
    dominator.stop().await;
}
