//! The status page in a real browser: headless Chromium, driven over the
//! Chrome DevTools Protocol, opens the page of a fleet with a real agent,
//! sees the machine go from held (not compliant) to compliant after an
//! MDB change, without reloading, and saves a screenshot as
//! `target/status-page.png`. A second test opens the page of 10,000
//! machines: all of them in the table (one page of rows rendered),
//! filtered, and a change followed live. Others check the banner of a
//! halted rollout, and the chart of the fleet's last hour: its counts,
//! a change arriving live, an empty fleet and no data at all.
//!
//! Chromium is Debian's `chromium` (`ops/install-tools.sh` installs it
//! when it can); `CHROMIUM=/path` picks another. Without one the test
//! says so and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use dom_bus::{Bus, ConnectArgs};
use dom_model::report::UpdateResult;
use dom_model::MdbRecord;
use dom_tests::fixtures::{image_name as name, planned_report as report};
use dom_tests::{connect, eventually, set_mdb, NatsServer, DEADLINE};
use dominator::{Dominator, Settings};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A headless browser, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    async fn start(binary: &Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Chromium writes the port it picked to this file.
        let active = profile.path().join("DevToolsActivePort");
        let port = eventually("Chromium's DevTools port", || async {
            std::fs::read_to_string(&active)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u16>().ok())
        })
        .await;
        Self {
            child,
            _profile: profile,
            port,
        }
    }

    /// The DevTools session of the browser's first page.
    async fn page(&self) -> Devtools {
        let list = format!("http://127.0.0.1:{}/json/list", self.port);
        let url = eventually("a page target", || async {
            let text = reqwest::get(&list).await.ok()?.text().await.ok()?;
            let targets: Value = serde_json::from_str(&text).ok()?;
            targets
                .as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string)
        })
        .await;
        let (socket, _) = ClientBuilder::new()
            .uri(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        Devtools { socket, next: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page's DevTools connection: commands and their answers.
struct Devtools {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
}

impl Devtools {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the browser is still there")
                .unwrap();
            let Some(text) = message.as_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page, for its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` evaluates to `want`.
    async fn wait_for(&mut self, what: &str, expression: &str, want: Value) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let got = self.eval(expression).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: last saw {got}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status_of(host: &str) -> String {
    format!(
        r#"(() => {{ const c = document.querySelector('tr[data-key="{host}"] .status'); return c ? c.textContent : null; }})()"#
    )
}

fn skipped() {
    dom_tests::skip_without(
        "no Chromium (/usr/bin/chromium): run ops/install-tools.sh as root, \
         or `apt-get install chromium`, or set CHROMIUM=/path/to/chrome",
    );
}

/// The dominator, in-process, its page on a free port.
async fn start_dominator(bus: &Bus) -> Dominator {
    Dominator::start(bus.clone(), Settings::default(), Some("127.0.0.1:0"))
        .await
        .unwrap()
}

/// A fresh server with the user guide's tree as image `sparse.0`.
async fn fleet_with_image() -> (NatsServer, Bus) {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let examples = dom_tests::repo_root().join("ops/examples");
    let request =
        imagetool::add::AddRequest::parse("sparse.0", &examples.join("path"), "", "", None)
            .unwrap()
            .with_hash_cache(None);
    imagetool::add::add(&bus, request, false).await.unwrap();
    (server, bus)
}

/// Made-up machines around the real one, so the page looks like a fleet.
async fn neighbours(bus: &Bus) {
    for i in 1..=14 {
        let host = format!("app{i:02}.example.com");
        set_mdb(bus, &host, "sparse.0").await;
        let mut report = report(&host, "sparse.0", true);
        report.last_update = Some(UpdateResult {
            image: "sparse.0".into(),
            started: "2026-11-26T09:00:00Z".into(),
            duration_ms: 180 + 20 * i,
            ok: true,
            transition_ms: (i % 3 == 0).then_some(40 + i),
            changed: 6,
            ..UpdateResult::default()
        });
        bus.publish_state(&report).await.unwrap();
    }
    set_mdb(bus, "db1.example.com", "db/2026-11-27").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_turns_compliant_on_the_open_page() {
    let Some(binary) = chromium() else {
        return skipped();
    };
    let (server, bus) = fleet_with_image().await;
    neighbours(&bus).await;

    // web1: a real agent, its updates disabled in the MDB, so it stays
    // off its image.
    let held = MdbRecord {
        disable_updates: true,
        ..MdbRecord::new("web1").requiring(name("sparse.0"))
    };
    bus.publish_mdb("web1", held.encode().into()).await.unwrap();
    let dominator = start_dominator(&bus).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("web1");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "web1\n").unwrap();
    let mut config = subd::Config::new("web1", root).uncapped();
    config.connect = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    config.service_command = subd::services::ServiceCommand::parse("true").unwrap();
    config.reboot_command = None;
    let _agent = subd::Agent::start(config).unwrap();
    eventually("web1 reports, not compliant", || async {
        bus.state("web1")
            .await
            .ok()
            .flatten()
            .filter(|r| r.desired_image.as_deref() == Some("sparse.0") && !r.compliant)
    })
    .await;

    let addr = dominator.http_addr().unwrap();
    let browser = Browser::start(&binary).await;
    let mut page = browser.page().await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
        .await;
    page.wait_for("web1 held on the page", &status_of("web1"), json!("held"))
        .await;
    // A mark that a reload would wipe out.
    page.eval("window.stillTheSamePage = true").await;

    // The MDB change: updates enabled for web1.
    let allowed = MdbRecord::new("web1").requiring(name("sparse.0"));
    bus.publish_mdb("web1", allowed.encode().into())
        .await
        .unwrap();
    page.wait_for(
        "web1 compliant on the page",
        &status_of("web1"),
        json!("compliant"),
    )
    .await;
    assert_eq!(
        page.eval("window.stillTheSamePage === true").await,
        json!(true),
        "the page was not reloaded"
    );
    page.wait_for(
        "the summary counts web1 as compliant",
        "document.querySelector('#cards').textContent.includes('15compliant')",
        json!(true),
    )
    .await;

    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let target = dom_tests::repo_root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let path = target.join("status-page.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// The page with 10,000 machines: it shows them all (a page of rows at a
/// time), filters them, and still follows a change live. How long the
/// page took and its longest main-thread task are printed (they are
/// measurements, not pass marks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_machines_stay_usable() {
    let Some(binary) = chromium() else {
        return skipped();
    };
    const MACHINES: usize = 10_000;
    let (_server, bus) = fleet_with_image().await;
    let hosts: Vec<String> = (0..MACHINES).map(|i| format!("m{i:05}")).collect();
    futures::stream::iter(hosts.iter())
        .for_each_concurrent(256, |host| {
            let bus = bus.clone();
            async move {
                set_mdb(&bus, host, "sparse.0").await;
                bus.publish_state(&report(host, "sparse.0", true))
                    .await
                    .unwrap();
            }
        })
        .await;
    let dominator = start_dominator(&bus).await;
    let addr = dominator.http_addr().unwrap();

    let browser = Browser::start(&binary).await;
    let mut page = browser.page().await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.longest = 0; new PerformanceObserver((l) => { \
            for (const e of l.getEntries()) window.longest = Math.max(window.longest, e.duration); \
            }).observe({type: 'longtask', buffered: true});"}),
    )
    .await;
    let opened = std::time::Instant::now();
    page.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
        .await;
    let count = "(() => { const c = document.querySelector('#machines .count'); \
                 return c ? c.textContent : null; })()";
    page.wait_for(
        "every machine in the table",
        count,
        json!(format!("1\u{2013}100 of {MACHINES}")),
    )
    .await;
    let shown = opened.elapsed();
    assert_eq!(
        page.eval("document.querySelectorAll('#machines tbody tr').length")
            .await,
        json!(100),
        "one page of rows is rendered, not ten thousand"
    );

    // Filter down to one machine, then change it: the filtered view
    // follows live.
    page.eval(
        "(() => { const i = document.querySelector('#machines input'); \
         i.value = 'm04321'; i.dispatchEvent(new Event('input')); })()",
    )
    .await;
    page.wait_for(
        "the filter",
        count,
        json!(format!("1\u{2013}1 of 1 matching of {MACHINES}")),
    )
    .await;
    set_mdb(&bus, "m04321", "nothing.0").await;
    page.wait_for("m04321 in error", &status_of("m04321"), json!("error"))
        .await;
    // The Long Tasks API reports main-thread tasks over 50 ms.
    let longest = page.eval("window.longest").await.as_f64().unwrap_or(0.0);
    let tasks = if longest > 0.0 {
        format!("longest main-thread task {longest:.0} ms")
    } else {
        "no main-thread task over 50 ms".to_string()
    };
    eprintln!(
        "{MACHINES} machines: table complete {:.2} s after opening the page; {tasks}",
        shown.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_rollout_is_a_banner_saying_why_and_which_machines() {
    let Some(binary) = chromium() else {
        return skipped();
    };
    let (_server, bus) = fleet_with_image().await;
    neighbours(&bus).await;
    // web1 carries sparse.0 and its health check on it failed.
    set_mdb(&bus, "web1", "sparse.0").await;
    let mut unhealthy = report("web1", "sparse.0", true);
    unhealthy.health = Some(dom_model::report::Health {
        image: "sparse.0".into(),
        state: dom_model::report::HealthState::Unhealthy,
        message: "service down: port 80 refused".into(),
        ..Default::default()
    });
    bus.publish_state(&unhealthy).await.unwrap();
    let dominator = start_dominator(&bus).await;
    let halt = eventually("the dominator to halt the rollout", || async {
        let message = bus.last_control("rollout.sparse.0").await.ok()??;
        serde_json::from_slice::<dom_model::controls::RolloutControl>(&message.payload).ok()
    })
    .await;
    assert_eq!(halt.state, dom_model::controls::RolloutState::Halted);

    let browser = Browser::start(&binary).await;
    let mut page = browser.page().await;
    page.call("Page.enable", json!({})).await;
    let addr = dominator.http_addr().unwrap();
    page.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
        .await;
    let banner = r#"(() => { const b = document.querySelector('#rollouts .rollout.bad'); return b ? b.textContent : null; })()"#;
    page.wait_for(
        "the halt's banner",
        &format!("({banner} || '').includes('service down: port 80 refused')"),
        json!(true),
    )
    .await;
    let text = page.eval(banner).await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("sparse.0 is halted"), "{text}");
    assert!(text.contains(&halt.reason), "{text}");
    assert!(text.contains("web1"), "{text}");
}

/// The chart's legend: each series' current value, by name.
const CHART_VALUES: &str =
    "(() => Object.fromEntries([...document.querySelectorAll('#chart .key')]\
    .map((k) => [k.dataset.series, k.querySelector('.v').textContent])))()";
/// The chart's accessible name.
const CHART_TITLE: &str = "document.querySelector('#chart svg').getAttribute('aria-label')";

/// The status page of `dominator`, opened in `browser`.
async fn open_page(browser: &Browser, dominator: &Dominator) -> Devtools {
    let mut page = browser.page().await;
    page.call("Page.enable", json!({})).await;
    page.call("Runtime.enable", json!({})).await;
    let addr = dominator.http_addr().unwrap();
    page.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
        .await;
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_shows_the_fleet_now_and_a_change_arrives_live() {
    let Some(binary) = chromium() else {
        return skipped();
    };
    let (_server, bus) = fleet_with_image().await;
    // 14 compliant machines and db1 in error (its image does not exist);
    // web1 reports it is not on its image yet, so it is updating.
    neighbours(&bus).await;
    set_mdb(&bus, "web1", "sparse.0").await;
    bus.publish_state(&report("web1", "sparse.0", false))
        .await
        .unwrap();
    let settings = Settings {
        history_every: Duration::from_millis(400),
        ..Settings::default()
    };
    let dominator = Dominator::start(bus.clone(), settings, Some("127.0.0.1:0"))
        .await
        .unwrap();

    let browser = Browser::start(&binary).await;
    let mut page = open_page(&browser, &dominator).await;
    page.wait_for(
        "the chart's current counts",
        CHART_VALUES,
        json!({"all": "16", "compliant": "14", "updating": "1", "error": "1"}),
    )
    .await;
    page.wait_for(
        "the chart's title",
        CHART_TITLE,
        json!("Last hour of the fleet: now 14 of 16 machines compliant, 1 updating, 1 in error"),
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('banner').textContent")
            .await,
        json!("updates are enabled")
    );
    // Samples come in the page's event stream: the line grows.
    let points = "Number(document.querySelector('#chart .plot').dataset.points)";
    page.wait_for("two samples drawn", &format!("{points} >= 2"), json!(true))
        .await;
    for series in ["all", "compliant", "updating", "error"] {
        let path = format!(
            "(document.querySelector('#chart path[data-series={series}]') || {{}}).getAttribute?.('d') || ''"
        );
        let d = page.eval(&path).await;
        let d = d.as_str().unwrap_or_default();
        assert!(
            d.starts_with('M') && d.contains('H') && !d.contains("NaN"),
            "{series}: {d:?}"
        );
    }
    let dot = "Number(document.querySelector('#chart circle.compliant').getAttribute('cy'))";
    let before = page.eval(dot).await.as_f64().unwrap();
    page.eval("window.stillTheSamePage = true").await;

    // web1 turns compliant: the legend, the title and the line's end
    // follow without a reload, and the next samples count it.
    bus.publish_state(&report("web1", "sparse.0", true))
        .await
        .unwrap();
    page.wait_for(
        "web1 compliant in the chart",
        CHART_VALUES,
        json!({"all": "16", "compliant": "15", "updating": "0", "error": "1"}),
    )
    .await;
    page.wait_for(
        "the chart's new title",
        CHART_TITLE,
        json!("Last hour of the fleet: now 15 of 16 machines compliant, 0 updating, 1 in error"),
    )
    .await;
    let after = page.eval(dot).await.as_f64().unwrap();
    assert!(
        after < before,
        "the compliant line ends higher: {before} -> {after}"
    );
    page.wait_for(
        "a sample counting web1 compliant",
        "window.dominatorStatus.chart.samples.at(-1).compliant",
        json!(15),
    )
    .await;
    assert_eq!(
        page.eval("window.stillTheSamePage === true").await,
        json!(true),
        "the page was not reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_of_an_empty_fleet_is_flat_and_without_data_says_so() {
    let Some(binary) = chromium() else {
        return skipped();
    };
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let dominator = start_dominator(&bus).await;
    let browser = Browser::start(&binary).await;
    let mut page = open_page(&browser, &dominator).await;
    page.wait_for(
        "the chart of no machines",
        CHART_VALUES,
        json!({"all": "0", "compliant": "0", "updating": "0", "error": "0"}),
    )
    .await;
    page.wait_for(
        "the chart's title",
        CHART_TITLE,
        json!("Last hour of the fleet: now 0 of 0 machines compliant, 0 updating, 0 in error"),
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#chart svg').innerHTML.includes('NaN')")
            .await,
        json!(false)
    );
    // A chart that has heard nothing yet, as before the replay is over.
    let fresh = "(() => { const el = document.createElement('div'); document.body.append(el); \
        const c = new FleetChart(el); return [el.querySelector('svg').getAttribute('aria-label'), \
        el.querySelector('.nodata') ? el.querySelector('.nodata').textContent : null, \
        [...el.querySelectorAll('.key .v')].map((v) => v.textContent).join(' ')]; })()";
    assert_eq!(
        page.eval(fresh).await,
        json!([
            "Last hour of the fleet: no data yet",
            "no data yet",
            "\u{2013} \u{2013} \u{2013} \u{2013}"
        ])
    );
}
