//! The health check after an update: the agent's `--health-command` and
//! the image's own check run once the triggers started their services;
//! the state report says `checking`, then healthy, unhealthy (with the
//! command's last line) or timed out, and a `health` event says how it
//! ended. A restarted agent keeps reporting the result; a check for an
//! image the machine is no longer told to carry is dropped.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use dom_model::image::HealthCheck;
use dom_model::report::HealthState;
use dom_model::{DesiredState, Event, ImageRecord, StateReport};
use subd::{Agent, Config};

use crate::agent_support::{examples, write, Fleet, Recorder};

/// A machine root and a recorder in a fresh temporary directory.
struct Machine {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    recorder: Recorder,
}

fn machine() -> Machine {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let recorder = Recorder::new(tmp.path(), "true");
    Machine {
        root,
        recorder,
        _tmp: tmp,
    }
}

/// The user guide's tree with one file marked `n`, as image `name`.
async fn image(fleet: &Fleet, dir: &Path, name: &str) -> ImageRecord {
    let src = dir.join(format!("src-{name}"));
    dom_tests::fixtures::copy_tree(&examples().join("path"), &src);
    write(&src, "/etc/motd", format!("{name}\n").as_bytes(), 0o644);
    fleet.add_image(name, &src, None, None).await
}

fn config(fleet: &Fleet, host: &str, m: &Machine, command: Option<&str>) -> Config {
    let mut config = fleet.config(host, &m.root, &m.recorder.command());
    config.health_command = command.map(str::to_string);
    config.health_timeout = Duration::from_secs(2);
    config.health_interval = Duration::from_millis(100);
    config
}

/// Waits until `host` reports its health on `image` over, in `state`.
async fn wait_health(fleet: &Fleet, host: &str, image: &str, state: HealthState) -> StateReport {
    fleet
        .wait_state(host, &format!("{state:?} on {image}"), |r| {
            r.health
                .as_ref()
                .is_some_and(|h| h.image == image && h.state == state)
        })
        .await
}

async fn health_event(fleet: &Fleet, host: &str, image: &str) -> Event {
    fleet
        .wait_event(host, "a health event", |e| {
            e.kind == Event::HEALTH && e.image.as_deref() == Some(image)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_health_command_makes_the_machine_healthy() {
    let fleet = Fleet::start().await;
    let m = machine();
    let dir = m._tmp.path();
    let seen = dir.join("seen");
    let command = format!(
        "echo \"$DOM_HOST $DOM_IMAGE $DOM_ROOT\" > '{}'; test -f \"$DOM_ROOT/etc/motd\"",
        seen.display()
    );
    let first = image(&fleet, dir, "health.0").await;
    let agent = Agent::start(config(&fleet, "hl1", &m, Some(&command))).unwrap();
    fleet.assign("hl1", &first).await;
    let report = wait_health(&fleet, "hl1", "health.0", HealthState::Healthy).await;
    assert!(report.compliant);
    let health = report.health.unwrap();
    assert_eq!(health.attempts, 1, "{health:?}");
    assert_eq!(report.last_update.unwrap().from, None, "a first update");
    let root = m.root.canonicalize().unwrap();
    assert_eq!(
        fs::read_to_string(&seen).unwrap().trim(),
        format!("hl1 health.0 {}", root.display())
    );
    let event = health_event(&fleet, "hl1", "health.0").await;
    assert_eq!(event.details["state"], "healthy", "{event:?}");
    assert_eq!(event.details["attempts"], 1);
    assert!(!event.message.contains('\n'));

    // The next update says where the machine came from.
    let second = image(&fleet, dir, "health.1").await;
    fleet.assign("hl1", &second).await;
    let report = wait_health(&fleet, "hl1", "health.1", HealthState::Healthy).await;
    assert_eq!(
        report.last_update.unwrap().from.as_deref(),
        Some("health.0")
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_command_is_unhealthy_with_its_last_line_even_after_a_restart() {
    let fleet = Fleet::start().await;
    let m = machine();
    let counter = m._tmp.path().join("tries");
    let command = format!(
        "echo try >> '{}'; echo 'connecting...'; echo 'curl: (7) refused'; exit 1",
        counter.display()
    );
    let record = image(&fleet, m._tmp.path(), "sick.0").await;
    let mut cfg = config(&fleet, "hl2", &m, Some(&command));
    cfg.http = Some("127.0.0.1:0".into());
    let agent = Agent::start(cfg.clone()).unwrap();
    fleet.assign("hl2", &record).await;
    fleet
        .wait_state("hl2", "checking", |r| {
            r.health.as_ref().is_some_and(|h| {
                h.state == HealthState::Checking || h.state == HealthState::Unhealthy
            })
        })
        .await;
    let report = wait_health(&fleet, "hl2", "sick.0", HealthState::Unhealthy).await;
    let health = report.health.unwrap();
    assert_eq!(health.message, "curl: (7) refused");
    assert!(health.attempts > 1, "it was retried: {health:?}");
    assert!(report.compliant, "the update itself went well");
    let event = health_event(&fleet, "hl2", "sick.0").await;
    assert_eq!(event.details["state"], "unhealthy");
    assert_eq!(event.details["message"], "curl: (7) refused");
    assert!(
        event.message.contains("curl: (7) refused"),
        "{}",
        event.message
    );
    agent.stop().await;

    // A restarted agent still says so, and does not check again.
    let tries = fs::read_to_string(&counter).unwrap().lines().count();
    let agent = Agent::start(cfg).unwrap();
    let status = format!("http://{}/status", agent.http_address().unwrap());
    let started = Instant::now();
    let report = loop {
        let text = reqwest::get(&status).await.unwrap().text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        if body["report"]["compliant"] == true {
            break body["report"].clone();
        }
        assert!(
            started.elapsed() < crate::agent_support::DEADLINE,
            "{body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["health"]["state"], "unhealthy", "{report:#}");
    assert_eq!(report["health"]["message"], "curl: (7) refused");
    // The page shows the report as it is sent; the bus has it a moment later.
    fleet
        .wait_state("hl2", "an unhealthy report", |r| {
            r.health.as_ref().map(|h| h.state) == Some(HealthState::Unhealthy)
        })
        .await;
    assert_eq!(fs::read_to_string(&counter).unwrap().lines().count(), tries);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_health_command_times_out() {
    let fleet = Fleet::start().await;
    let m = machine();
    let record = image(&fleet, m._tmp.path(), "hang.0").await;
    let mut cfg = config(&fleet, "hl3", &m, Some("sleep 30"));
    cfg.health_timeout = Duration::from_secs(1);
    let agent = Agent::start(cfg).unwrap();
    let started = Instant::now();
    fleet.assign("hl3", &record).await;
    let report = wait_health(&fleet, "hl3", "hang.0", HealthState::TimedOut).await;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the try was not cut short"
    );
    assert_eq!(report.health.unwrap().attempts, 1);
    let event = health_event(&fleet, "hl3", "hang.0").await;
    assert_eq!(event.details["state"], "timed_out");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_without_a_health_check_is_healthy_once_updated() {
    let fleet = Fleet::start().await;
    let m = machine();
    let record = image(&fleet, m._tmp.path(), "plain.0").await;
    let agent = Agent::start(config(&fleet, "hl4", &m, None)).unwrap();
    fleet.assign("hl4", &record).await;
    let report = wait_health(&fleet, "hl4", "plain.0", HealthState::Healthy).await;
    assert_eq!(report.health.unwrap().message, "no health check");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_own_health_check_runs_with_the_agents() {
    let fleet = Fleet::start().await;
    let m = machine();
    let agents = m._tmp.path().join("agents-ran");
    let command = format!("touch '{}'", agents.display());
    let record = image(&fleet, m._tmp.path(), "own.0").await;
    let agent = Agent::start(config(&fleet, "hl5", &m, Some(&command))).unwrap();
    let mut state = DesiredState::for_image("hl5", &record);
    state.health_check = Some(HealthCheck {
        command: "echo \"$DOM_IMAGE says no\" >&2; exit 3".into(),
        timeout_s: Some(1),
    });
    fleet.bus.publish_desired(&state).await.unwrap();
    let report = wait_health(&fleet, "hl5", "own.0", HealthState::Unhealthy).await;
    assert_eq!(report.health.unwrap().message, "own.0 says no");
    assert!(agents.exists(), "the agent's own command ran first");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_is_dropped_when_the_desired_image_changes() {
    let fleet = Fleet::start().await;
    let m = machine();
    let slow = image(&fleet, m._tmp.path(), "slow.0").await;
    let next = image(&fleet, m._tmp.path(), "next.0").await;
    let mut cfg = config(
        &fleet,
        "hl6",
        &m,
        Some("[ \"$DOM_IMAGE\" != slow.0 ] || sleep 30"),
    );
    cfg.health_timeout = Duration::from_secs(60);
    let agent = Agent::start(cfg).unwrap();
    fleet.assign("hl6", &slow).await;
    wait_health(&fleet, "hl6", "slow.0", HealthState::Checking).await;
    fleet.assign("hl6", &next).await;
    wait_health(&fleet, "hl6", "next.0", HealthState::Healthy).await;
    let events = fleet.events("hl6").await;
    assert!(
        !events
            .iter()
            .any(|e| e.kind == Event::HEALTH && e.image.as_deref() == Some("slow.0")),
        "{events:#?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_during_a_check_runs_it_again() {
    let fleet = Fleet::start().await;
    let m = machine();
    let record = image(&fleet, m._tmp.path(), "again.0").await;
    let mut hanging = config(&fleet, "hl7", &m, Some("sleep 30"));
    hanging.health_timeout = Duration::from_secs(60);
    let agent = Agent::start(hanging.clone()).unwrap();
    fleet.assign("hl7", &record).await;
    wait_health(&fleet, "hl7", "again.0", HealthState::Checking).await;
    agent.stop().await;

    let ran = m._tmp.path().join("ran-again");
    let command = format!("touch '{}'", ran.display());
    let agent = Agent::start(config(&fleet, "hl7", &m, Some(&command))).unwrap();
    wait_health(&fleet, "hl7", "again.0", HealthState::Healthy).await;
    assert!(ran.exists(), "the check ran again");
    agent.stop().await;
}
