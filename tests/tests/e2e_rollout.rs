//! Staged rollouts with real agents and the dominator (see `fleet_kit`):
//! a canary whose image fails its health check halts the rollout, and a
//! resume continues it; a healthy rollout goes wave by wave, also across
//! a dominator killed and started again; a pause ends on its own; the
//! fleet's agent settings reach a running agent.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dom_bus::Bus;
use dom_model::controls::{
    control_name, PauseControl, RolloutControl, RolloutState, PAUSE, ROLLOUT,
};
use dom_model::{DesiredState, Event, StateReport};
use dom_tests::{connect, eventually, NatsServer};
use dominator::{Dominator, Settings};
use futures::StreamExt;
use subd::Agent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fleet_kit::{quick, sshd_source, Fleet, Machine};

/// Machines in the rollouts below.
const MACHINES: usize = 20;
/// The canary the dominator is started with.
const CANARY: usize = 2;

/// The dominator of these tests: a canary of 2, halting on the first
/// failure (the default), and patient with machines slow to answer, as a
/// loaded test machine can be.
fn settings() -> Settings {
    let mut settings = quick();
    settings.rollout.canary = dom_model::policy::Canary::Machines(CANARY);
    settings.rollout.unresponsive_after_s = 300;
    settings.id = "rollout-test".into();
    settings
}

async fn start_dominator(bus: &Bus) -> Dominator {
    Dominator::start(bus.clone(), settings(), Some("127.0.0.1:0"))
        .await
        .unwrap()
}

/// A fleet of `count` machines `m00`, `m01`, ... whose agents check
/// health every 100 ms, all on `sparse.0`, and the dominator.
struct Stage {
    fleet: Fleet,
    dominator: Option<Dominator>,
    machines: Vec<Machine>,
    _agents: Vec<Agent>,
    _server: NatsServer,
}

impl Stage {
    async fn start(count: usize) -> Self {
        let server = NatsServer::start().unwrap();
        let bus = connect(&server).await;
        let fleet = Fleet::without_dominator(server.url(), bus.clone());
        let dominator = start_dominator(&bus).await;
        let machines: Vec<Machine> = (0..count)
            .map(|i| fleet.machine(&format!("m{i:02}")))
            .collect();
        let agents = machines
            .iter()
            .map(|m| {
                m.start_with(|config| {
                    config.health_interval = Duration::from_millis(100);
                    config.health_timeout = Duration::from_secs(2);
                })
            })
            .collect();
        let src = sshd_source(fleet.dir.path(), 0);
        fleet.add_image("sparse.0", &src, "", "").await;
        for m in &machines {
            fleet.require(&m.host, "sparse.0").await;
        }
        for m in &machines {
            fleet.wait_compliant(&m.host, "sparse.0").await;
        }
        Self {
            fleet,
            dominator: Some(dominator),
            machines,
            _agents: agents,
            _server: server,
        }
    }

    /// Adds `sparse.1`, whose own health check is `check`.
    async fn add_checked(&self, check: &str) {
        let src = sshd_source(self.fleet.dir.path(), 1);
        self.fleet
            .add_image_with("sparse.1", &src, "", "", |request| {
                request.with_health_check(Some(check), Some(Duration::from_secs(2)))
            })
            .await;
    }

    async fn require_all(&self, image: &str) {
        for m in &self.machines {
            self.fleet.require(&m.host, image).await;
        }
    }

    /// The machines whose desired state lets them move to `image`.
    async fn told_to_move(&self, image: &str) -> Vec<String> {
        let mut hosts = Vec::new();
        for m in &self.machines {
            let desired = self.fleet.bus.desired(&m.host).await.unwrap();
            let state = desired.and_then(|d| d.state.ok());
            if state.is_some_and(|d| d.image.as_str() == image && d.updates_allowed) {
                hosts.push(m.host.clone());
            }
        }
        hosts
    }

    fn http(&self) -> SocketAddr {
        self.dominator.as_ref().unwrap().http_addr().unwrap()
    }
}

/// The last rollout control of `image`, decoded.
async fn rollout_control(bus: &Bus, image: &str) -> Option<RolloutControl> {
    let name = control_name(ROLLOUT, image);
    let message = bus.last_control(&name).await.ok()??;
    serde_json::from_slice(&message.payload).ok()
}

/// `GET path` from `addr`, the body.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// A health check that passes once `marker` exists, and otherwise says
/// why on its last line.
fn check_for(marker: &Path) -> String {
    let marker = marker.display();
    format!("test -f {marker} || {{ echo 'service down: no {marker}'; exit 1; }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_canary_halts_the_rollout_and_a_resume_continues_it() {
    let stage = Stage::start(MACHINES).await;
    let marker = stage.fleet.dir.path().join("fixed");
    stage.add_checked(&check_for(&marker)).await;
    stage.require_all("sparse.1").await;
    let bus = &stage.fleet.bus;

    // The canary's health check fails: the rollout halts by itself.
    let halt = eventually("the rollout of sparse.1 to halt", || async {
        rollout_control(bus, "sparse.1")
            .await
            .filter(|c| c.state == RolloutState::Halted)
    })
    .await;
    let failed: Vec<&str> = halt.machines.iter().map(|m| m.host.as_str()).collect();
    // The first failure halts it (--halt-after 1): one of the canary, or
    // both when their checks ended together.
    assert!(
        !failed.is_empty() && failed.iter().all(|h| ["m00", "m01"].contains(h)),
        "{halt:?}"
    );
    assert!(halt.machines[0].why.contains("service down"), "{halt:?}");
    assert_eq!(halt.machines[0].from.as_ref().unwrap().as_str(), "sparse.0");
    assert!(halt.by.contains("rollout-test"), "{}", halt.by);

    // No third machine moves, then or later.
    assert_eq!(stage.told_to_move("sparse.1").await, ["m00", "m01"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stage.told_to_move("sparse.1").await, ["m00", "m01"]);
    for m in &stage.machines[CANARY..] {
        let report = bus.state(&m.host).await.unwrap().unwrap();
        assert_eq!(report.image.as_deref(), Some("sparse.0"), "{}", m.host);
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 0"));
    }

    // The status, the metric and the events say which image, why and
    // which machines.
    let status = eventually("the status to show the halt", || async {
        let status = get(stage.http(), "/status").await;
        status.contains("\"halted\"").then_some(status)
    })
    .await;
    assert!(status.contains(&halt.reason), "{status}");
    assert!(status.contains("service down"), "{status}");
    let metrics = get(stage.http(), "/metrics").await;
    assert!(
        metrics.contains("dominator_rollout_halted{image=\"sparse.1\"} 1"),
        "{metrics}"
    );
    let events = bus.events(failed[0]).await.unwrap();
    let halted = events
        .iter()
        .find(|e| e.kind == "halted")
        .expect("a halted event");
    assert_eq!(halted.image.as_deref(), Some("sparse.1"));
    assert!(halted.message.contains("service down"), "{halted:?}");
    let health = events
        .iter()
        .rev()
        .find(|e| e.kind == Event::HEALTH)
        .unwrap();
    assert!(health.message.contains("service down"), "{health:?}");
    let status = stage
        .fleet
        .domtool(&["rollout", "status", "sparse.1"])
        .await;
    assert!(status.stdout.contains("halted"), "{}", status.stdout);
    assert!(status.stdout.contains("m00"), "{}", status.stdout);

    // Fixed, and resumed: every machine moves, wave after wave.
    std::fs::write(&marker, "").unwrap();
    let resume = stage
        .fleet
        .domtool(&["rollout", "resume", "sparse.1"])
        .await;
    assert_eq!(resume.code, 0, "{}{}", resume.stdout, resume.stderr);
    for m in &stage.machines {
        stage.fleet.wait_compliant(&m.host, "sparse.1").await;
    }
    let last = &stage.machines[MACHINES - 1];
    eventually("the last machine to be healthy", || async {
        let report = bus.state(&last.host).await.ok()??;
        report.health.filter(|h| h.healthy_on("sparse.1"))
    })
    .await;
    let metrics = get(stage.http(), "/metrics").await;
    assert!(
        metrics.contains("dominator_rollout_halted{image=\"sparse.1\"} 0"),
        "{metrics}"
    );
}

/// What a test hears on the bus, in order: each machine's first desired
/// state letting it move to the image, with how many machines were
/// healthy on it at that moment.
#[derive(Default)]
struct Order {
    allowed: Vec<(String, usize)>,
    healthy: BTreeSet<String>,
}

async fn listen(bus: &Bus, image: &'static str) -> Arc<Mutex<Order>> {
    let order = Arc::new(Mutex::new(Order::default()));
    let mut messages = bus
        .client
        .subscribe(bus.subjects.all_subjects())
        .await
        .unwrap();
    let heard = order.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let mut order = heard.lock().unwrap();
            if let Ok(state) = DesiredState::decode(&message.payload) {
                let seen = order.allowed.iter().any(|(h, _)| *h == state.host);
                if state.image.as_str() == image && state.updates_allowed && !seen {
                    let healthy = order.healthy.len();
                    order.allowed.push((state.host, healthy));
                }
            } else if let Ok(report) = StateReport::decode(&message.payload) {
                if report.health.as_ref().is_some_and(|h| h.healthy_on(image)) {
                    order.healthy.insert(report.host);
                }
            }
        }
    });
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_goes_wave_by_wave_also_across_a_restarted_dominator() {
    let mut stage = Stage::start(MACHINES).await;
    // Each check takes a while, so the waves can be told apart.
    stage.add_checked("sleep 0.5").await;
    let order = listen(&stage.fleet.bus, "sparse.1").await;
    stage.require_all("sparse.1").await;

    // Wave 2 has started: the dominator dies, as a crash would.
    eventually("wave 2 to start", || async {
        (stage.told_to_move("sparse.1").await.len() > CANARY).then_some(())
    })
    .await;
    drop(stage.dominator.take());
    let moved = stage.told_to_move("sparse.1").await.len();
    assert!(moved <= 10, "{moved} machines moved in the first two waves");
    stage.dominator = Some(start_dominator(&stage.fleet.bus).await);

    for m in &stage.machines {
        stage.fleet.wait_compliant(&m.host, "sparse.1").await;
    }
    eventually("every machine to be healthy", || async {
        (order.lock().unwrap().healthy.len() == MACHINES).then_some(())
    })
    .await;
    let order = order.lock().unwrap();
    assert_eq!(order.allowed.len(), MACHINES);
    // The canary first; wave 2 (8 more) once both were healthy; the rest
    // once wave 2 was, at most 10 at a time.
    for (i, (host, healthy)) in order.allowed.iter().enumerate() {
        let needed = match i {
            0..CANARY => 0,
            CANARY..10 => CANARY,
            _ => 10,
        };
        assert!(
            *healthy >= needed,
            "{host} (the {}th) moved with {healthy} machines healthy: {:?}",
            i + 1,
            order.allowed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_ends_by_itself_and_the_machine_then_converges() {
    let stage = Stage::start(1).await;
    let bus = &stage.fleet.bus;
    let host = "m00";
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::seconds(3);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let pause = PauseControl {
        v: 1,
        host: host.into(),
        until: rfc(until),
        until_unix: until.unix_timestamp(),
        reason: "watching a leak".into(),
        by: "alice@ops1".into(),
        when: rfc(now),
        when_unix: now.unix_timestamp(),
    };
    bus.publish_ctl(&control_name(PAUSE, host), pause.encode().into())
        .await
        .unwrap();
    let src = sshd_source(stage.fleet.dir.path(), 1);
    stage.fleet.add_image("sparse.1", &src, "", "").await;
    stage.require_all("sparse.1").await;

    let paused = eventually("a paused event", || async {
        let events = bus.events(host).await.ok()?;
        events.into_iter().find(|e| e.kind == "paused")
    })
    .await;
    assert!(paused.message.contains("watching a leak"), "{paused:?}");
    assert!(paused.message.contains("alice@ops1"), "{paused:?}");
    // Told the new image, held.
    eventually("the new image, held", || async {
        let desired = bus.desired(host).await.ok()??.state.ok()?;
        (desired.image.as_str() == "sparse.1" && !desired.updates_allowed).then_some(())
    })
    .await;
    let status = stage.fleet.domtool(&["status"]).await;
    assert!(
        status.stdout.contains("paused by alice@ops1"),
        "{}",
        status.stdout
    );

    stage.fleet.wait_compliant(host, "sparse.1").await;
    assert!(
        time::OffsetDateTime::now_utc() >= until,
        "moved before the pause ended"
    );
    eventually("an unpaused event", || async {
        let events = bus.events(host).await.ok()?;
        events.into_iter().find(|e| e.kind == "unpaused")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_s_agent_settings_reach_a_running_agent() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let fleet = Fleet::on(server.url(), bus.clone(), quick()).await;
    let machine = fleet.machine("web1");
    let media_speed: u64 = 200 << 20;
    let agent = machine.start_with(|config| {
        config.http = Some("127.0.0.1:0".into());
        config.media_speed = Some(media_speed);
    });
    let src = sshd_source(fleet.dir.path(), 0);
    fleet.add_image("sparse.0", &src, "", "").await;
    fleet.require("web1", "sparse.0").await;
    fleet.wait_compliant("web1", "sparse.0").await;

    let run = fleet
        .domtool(&["configure-subs", "--scan-speed-percent", "0.1"])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let expected = media_speed / 1000;
    let addr = agent.http_address().unwrap();
    let line = format!("subd_scan_rate_limit_bytes_per_second {expected}");
    eventually("the agent's scan rate to follow", || async {
        get(addr, "/metrics").await.contains(&line).then_some(())
    })
    .await;
    // The report carries the rate from the next scan on; the gauge moves
    // as soon as the settings arrive.
    eventually("the agent's report to carry the scan rate", || async {
        let report = bus.state("web1").await.ok()??;
        (report.scan_rate == Some(expected)).then_some(())
    })
    .await;
    let shown = fleet.domtool(&["get-subs-configuration"]).await;
    assert!(shown.stdout.contains("0.1"), "{}", shown.stdout);
}
