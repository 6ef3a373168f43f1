//! The HTTP side against a real dominator: every endpoint, the pages'
//! content, the metrics, the live feed's snapshot and changes, and the
//! chart's samples.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use dom_model::Event;
use dominator::Dominator;

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// `imagetool add sparse.0 ops/examples/path "" triggers.sshd`.
async fn add_example_image(bus: &dom_bus::Bus, image: &str) {
    let examples = dom_tests::repo_root().join("ops/examples");
    let triggers = examples.join("triggers.sshd").display().to_string();
    let request = imagetool::add::AddRequest::parse(
        image,
        Path::new(&examples.join("path")),
        "",
        &triggers,
        None,
    )
    .unwrap()
    .with_hash_cache(None);
    imagetool::add::add(bus, request, false).await.unwrap();
}

async fn fleet(server: &NatsServer) -> (dom_bus::Bus, Dominator, SocketAddr) {
    let bus = connect(server).await;
    add_example_image(&bus, "sparse.0").await;
    set_mdb(&bus, "web1", "sparse.0").await;
    set_mdb(&bus, "web2", "nosuch.0").await;
    let mut report = report("web1", "sparse.0", false);
    report.deviations = 7;
    bus.publish_state(&report).await.unwrap();
    bus.publish_event(&Event {
        v: 1,
        host: "web1".into(),
        kind: "drift".into(),
        time: "2026-11-26T09:30:00Z".into(),
        image: Some("sparse.0".into()),
        message: "7 paths differ from image <sparse.0>".into(),
        details: serde_json::Value::Null,
    })
    .await
    .unwrap();
    let dominator = dominator(&bus, 10).await;
    wait_settled(&dominator).await;
    // The page shows the report once the round that took it in ran.
    eventually("web1's report on the board", || async {
        dominator.board().report("web1").map(|_| ())
    })
    .await;
    let addr = dominator.http_addr().unwrap();
    (bus, dominator, addr)
}

#[tokio::test]
async fn every_endpoint_answers() {
    let server = NatsServer::start().unwrap();
    let (bus, _dominator, addr) = fleet(&server).await;

    let (code, _, body) = get(addr, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    let (code, kind, body) = get(addr, "/status").await;
    assert_eq!((code, kind.as_str()), (200, "application/json"));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["caught_up"], true);
    assert_eq!(status["decision"]["summary"]["machines"], 2);
    assert_eq!(status["decision"]["machines"][1]["host"], "web2");

    let (code, kind, body) = get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    for part in [
        "/static/status.js",
        "/static/dom.js",
        "/static/dom.css",
        "id=\"machines\"",
    ] {
        assert!(body.contains(part), "the page has {part}: {body}");
    }
    for (path, kind) in [
        ("/static/status.js", "text/javascript"),
        ("/static/dom.js", "text/javascript"),
        ("/static/dom.css", "text/css"),
    ] {
        let (code, got, body) = get(addr, path).await;
        assert_eq!(code, 200, "{path}");
        assert!(got.starts_with(kind) && !body.is_empty(), "{path}: {got}");
    }

    // A machine's page: its status, report, last events, all escaped.
    let (code, _, body) = get(addr, "/machines/web1").await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"<a href="/images/sparse.0">sparse.0</a>"#),
        "{body}"
    );
    assert!(body.contains("<dt>deviations</dt><dd>7</dd>"), "{body}");
    assert!(
        body.contains("7 paths differ from image &lt;sparse.0&gt;"),
        "{body}"
    );
    assert!(
        body.contains("State report") && body.contains("Desired state"),
        "{body}"
    );
    let (code, _, body) = get(addr, "/machines/web2").await;
    assert_eq!(code, 200);
    assert!(body.contains("image nosuch.0 does not exist"), "{body}");
    assert_eq!(get(addr, "/machines/nosuch").await.0, 404);

    // The image list and an image's page: files, triggers, machines.
    let (code, _, body) = get(addr, "/images").await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"<a href="/images/sparse.0">sparse.0</a>"#),
        "{body}"
    );
    let (code, _, body) = get(addr, "/images/sparse.0").await;
    assert_eq!(code, 200);
    assert!(body.contains("/etc/ssh/sshd.conf"), "files: {body}");
    assert!(body.contains("sshd"), "triggers: {body}");
    assert!(body.contains("none: a sparse image"), "filter: {body}");
    assert!(
        body.contains(r#"<a href="/machines/web1">web1</a>"#),
        "machines: {body}"
    );
    assert_eq!(get(addr, "/images/nosuch.0").await.0, 404);

    // Metrics.
    let (code, kind, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    for line in [
        "dominator_machines{status=\"all\"} 2",
        "dominator_machines{status=\"error\"} 1",
        "dominator_updates_enabled 1",
        "dominator_caught_up 1",
        "# TYPE dominator_rounds counter",
        "# TYPE dominator_round_duration_seconds histogram",
        "# TYPE dominator_event_lag_seconds histogram",
        "dominator_messages_total{kind=\"mdb\"}",
    ] {
        assert!(body.contains(line), "metrics have {line}: {body}");
    }
    let published = body
        .lines()
        .find_map(|l| l.strip_prefix("dominator_desired_published_total "))
        .expect("desired states published");
    assert!(published.parse::<u64>().unwrap() >= 1, "{body}");
    // The object store, measured as `imagetool du` measures it.
    let usage = dom_store::usage::Usage::measure(&bus).await.unwrap();
    assert!(
        usage.objects > 1 && usage.unreferenced.is_empty(),
        "{usage:?}"
    );
    let want = [
        format!("dominator_store{{quantity=\"objects\"}} {}", usage.objects),
        format!("dominator_store{{quantity=\"bytes\"}} {}", usage.bytes),
        "dominator_store{quantity=\"unreferenced_objects\"} 0".to_string(),
        format!(
            "dominator_store{{quantity=\"stream_bytes\"}} {}",
            usage.stream_bytes
        ),
    ];
    eventually("the store's totals in /metrics", || async {
        let body = get(addr, "/metrics").await.2;
        want.iter().all(|line| body.contains(line)).then_some(())
    })
    .await;

    // What is not there.
    assert_eq!(get(addr, "/nothing").await.0, 404);
    let client = reqwest::Client::new();
    let post = client
        .post(format!("http://{addr}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
    let head = client
        .head(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
}

/// Reads server-sent events from a response.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event's name and data.
    async fn next(&mut self) -> (String, serde_json::Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(DEADLINE, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the feed goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Waits for a `changes` event whose machines satisfy `check`.
    async fn changes(&mut self, what: &str, check: impl Fn(&[serde_json::Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no change: {what}");
            let (name, data) = self.next().await;
            if name == "changes" && check(data["machines"].as_array().unwrap()) {
                return;
            }
        }
    }
}

/// The value of the sample `line` names in `body`, if there is one.
fn sample(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_silent_and_stuck_machines_and_measure_the_streams() {
    let server = NatsServer::start().unwrap();
    let (bus, _dominator, addr) = fleet(&server).await;
    let body = get(addr, "/metrics").await.2;
    // web2 has never reported; web1 deviates and web2's image does not
    // resolve, and nothing an operator chose holds either.
    assert_eq!(
        sample(&body, "dominator_machines_without_report"),
        Some(1),
        "{body}"
    );
    assert_eq!(
        sample(&body, "dominator_noncompliant_machines"),
        Some(2),
        "{body}"
    );
    let age = sample(&body, "dominator_noncompliant_max_age_seconds");
    assert!(age.is_some_and(|s| (0..60).contains(&s)), "{body}");
    // It ages between rounds, which a quiet fleet does not run.
    eventually("the non-compliant machines to age", || async {
        let body = get(addr, "/metrics").await.2;
        let age = sample(&body, "dominator_noncompliant_max_age_seconds")?;
        (age >= 1).then_some(())
    })
    .await;
    assert_eq!(
        sample(&body, "dominator_rollout_unresponsive{image=\"sparse.0\"}"),
        Some(0),
        "{body}"
    );

    // Each stream's holdings and limits, as the server tells them: only
    // the events have a byte limit, none has a message limit.
    let events = "{stream=\"DOM_EVENTS\"}";
    let state = "{stream=\"DOM_STATE\"}";
    let body = eventually("the streams in /metrics", || async {
        let body = get(addr, "/metrics").await.2;
        sample(&body, &format!("dominator_stream_bytes{state}")).map(|_| body)
    })
    .await;
    let max_bytes = dom_bus::streams::EVENTS_MAX_BYTES;
    assert_eq!(
        sample(&body, &format!("dominator_stream_max_bytes{events}")),
        Some(max_bytes)
    );
    assert_eq!(
        sample(&body, &format!("dominator_stream_max_bytes{state}")),
        Some(-1)
    );
    assert_eq!(
        sample(&body, &format!("dominator_stream_max_messages{events}")),
        Some(-1)
    );
    assert_eq!(
        sample(&body, &format!("dominator_stream_messages{state}")),
        Some(1)
    );
    let usage = bus.stream_usage().await.unwrap();
    let objects = usage.iter().find(|u| u.stream.starts_with("OBJ_")).unwrap();
    assert!(
        objects.bytes > 0 && objects.max_bytes.is_none(),
        "{objects:?}"
    );
    let line = format!("dominator_stream_bytes{{stream=\"{}\"}}", objects.stream);
    assert_eq!(sample(&body, &line), Some(objects.bytes as i64), "{body}");
}

#[tokio::test]
async fn the_live_feed_sends_a_snapshot_then_only_what_changed() {
    let server = NatsServer::start().unwrap();
    let (bus, _dominator, addr) = fleet(&server).await;
    let response = reqwest::get(format!("http://{addr}/live")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = Events {
        response,
        buffer: String::new(),
    };
    let (name, snapshot) = events.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(snapshot["summary"]["fleet"]["machines"], 2);
    let machines = snapshot["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    assert_eq!(machines[0]["host"], "web1");
    assert_eq!(machines[0]["status"], "updating");
    assert_eq!(machines[0]["compliant"], false);
    assert_eq!(machines[0]["deviations"], 7);
    assert_eq!(machines[1]["status"], "error");

    // web1 reports it is compliant: only web1 comes, with its new row.
    bus.publish_state(&report("web1", "sparse.0", true))
        .await
        .unwrap();
    events
        .changes("web1 compliant", |machines| {
            machines.len() == 1
                && machines[0]["host"] == "web1"
                && machines[0]["status"] == "compliant"
                && machines[0]["deviations"] == 0
        })
        .await;

    // web2 leaves the MDB: it is removed; a new machine is added.
    bus.publish_mdb("web2", bytes::Bytes::new()).await.unwrap();
    set_mdb(&bus, "web3", "sparse.0").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (mut removed, mut added) = (false, false);
    while !(removed && added) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "web2 removed, web3 added"
        );
        let (name, data) = events.next().await;
        if name == "sample" {
            continue; // the chart's, every few seconds
        }
        assert_eq!(name, "changes");
        removed |= data["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "web2");
        added |= data["machines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["host"] == "web3");
    }
}

/// The chart's history: in the snapshot, as a `sample` event at each
/// interval, and at `/history`, every sample with its time, oldest first.
#[tokio::test]
async fn the_chart_samples_the_fleet_at_each_interval() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_example_image(&bus, "sparse.0").await;
    set_mdb(&bus, "web1", "sparse.0").await;
    set_mdb(&bus, "web2", "nosuch.0").await;
    bus.publish_state(&report("web1", "sparse.0", false))
        .await
        .unwrap();
    let settings = dominator::Settings {
        history_every: Duration::from_millis(300),
        ..dominator::Settings::default()
    };
    let dominator = Dominator::start(bus.clone(), settings, Some("127.0.0.1:0"))
        .await
        .unwrap();
    wait_settled(&dominator).await;
    let addr = dominator.http_addr().unwrap();
    let response = reqwest::get(format!("http://{addr}/live")).await.unwrap();
    let mut events = Events {
        response,
        buffer: String::new(),
    };
    let (name, snapshot) = events.next().await;
    assert_eq!(name, "snapshot");
    let history = &snapshot["history"];
    assert_eq!(history["every_s"], 0.3);
    assert_eq!(history["window_s"], 3600);
    assert!(snapshot["summary"]["now"].as_str().unwrap().ends_with('Z'));

    // web1 turns compliant: a later sample counts it.
    bus.publish_state(&report("web1", "sparse.0", true))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a sample with web1 compliant"
        );
        let (name, data) = events.next().await;
        if name == "sample" && data["compliant"] == 1 {
            assert_eq!(data["all"], 2);
            assert_eq!(data["error"], 1, "web2's image does not exist");
            assert_eq!(data["updating"], 0);
            break;
        }
    }
    // And one more, an interval later, with nothing changed.
    loop {
        let (name, data) = events.next().await;
        if name == "sample" {
            assert_eq!(data["compliant"], 1);
            break;
        }
    }

    let (status, kind, body) = get(addr, "/history").await;
    assert_eq!(status, 200);
    assert_eq!(kind, "application/json");
    let history: serde_json::Value = serde_json::from_str(&body).unwrap();
    let samples = history["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{body}");
    let times: Vec<time::OffsetDateTime> = samples
        .iter()
        .map(|s| {
            let at = s["at"].as_str().unwrap();
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {body}"
    );
    let span = *times.last().unwrap() - times[0];
    assert!(
        span.whole_milliseconds() >= 250,
        "sampled at intervals: {body}"
    );
    assert_eq!(samples.last().unwrap()["compliant"], 1);
}

/// The text of `<pre id="files">` on a page, unescaped.
fn listed_files(body: &str) -> String {
    let start =
        body.find(r#"<pre id="files">"#).expect("a file list") + r#"<pre id="files">"#.len();
    let end = start + body[start..].find("</pre>").expect("the list ends");
    body[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn an_image_page_lists_its_files_as_imagetool_show_does() {
    let server = NatsServer::start().unwrap();
    let (bus, _dominator, addr) = fleet(&server).await;
    let mut shown = Vec::new();
    imagetool::inspect::show(&bus, &name("sparse.0"), &mut shown)
        .await
        .unwrap();
    let shown = String::from_utf8(shown).unwrap();
    assert!(shown.lines().count() > 3, "{shown}");

    let (code, _, body) = get(addr, "/images/sparse.0").await;
    assert_eq!(code, 200);
    assert_eq!(listed_files(&body), shown);
}
