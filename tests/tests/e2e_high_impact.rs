//! End to end: HighImpact grants. The real dominator with
//! `--max-high-impact 1` and two real agents whose updates fire a
//! HighImpact trigger: both converge, each only under a grant, and no
//! desired state published on the bus ever leaves two machines holding a
//! grant at once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dom_bus::{Bus, ConnectArgs};
use dom_model::DesiredState;
use dom_tests::fixtures::{image_name as name, service_recorder};
use dom_tests::{connect, eventually, set_mdb, NatsServer, DEADLINE};
use dominator::{Dominator, Settings};
use futures::StreamExt;
use subd::services::ServiceCommand;
use subd::Agent;

const TRIGGERS: &str = r#"[{"MatchLines": ["/etc/db/.*"], "Service": "db", "HighImpact": true}]"#;

/// One machine: a root, an agent, and a service command that records its
/// calls.
struct Machine {
    host: String,
    root: PathBuf,
    log: PathBuf,
    _agent: Agent,
}

impl Machine {
    fn start(server: &NatsServer, dir: &Path, host: &str) -> Self {
        let base = dir.join(host);
        let root = base.join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hostname"), format!("{host}\n")).unwrap();
        let (script, log) = service_recorder(&base);
        let mut config = subd::Config::new(host, root.clone()).uncapped();
        config.connect = ConnectArgs {
            server: server.url(),
            ..ConnectArgs::default()
        };
        config.service_command = ServiceCommand::parse(&script.display().to_string()).unwrap();
        config.reboot_command = None;
        Self {
            host: host.to_string(),
            root,
            log,
            _agent: Agent::start(config).unwrap(),
        }
    }

    /// The service calls so far, and forgets them.
    fn take_calls(&self) -> Vec<String> {
        let calls = fs::read_to_string(&self.log).unwrap_or_default();
        let _ = fs::remove_file(&self.log);
        calls.lines().map(str::to_string).collect()
    }

    fn db_conf(&self) -> String {
        fs::read_to_string(self.root.join("etc/db/db.conf")).unwrap_or_default()
    }
}

/// Adds a sparse image whose /etc/db/db.conf says `version`, with the
/// HighImpact db trigger.
async fn add_image(bus: &Bus, dir: &Path, image: &str, version: u32) {
    let src = dir.join(format!("src-{image}"));
    fs::create_dir_all(src.join("etc/db")).unwrap();
    fs::write(src.join("etc/db/db.conf"), format!("version {version}\n")).unwrap();
    let triggers = dir.join(format!("triggers-{image}.json"));
    fs::write(&triggers, TRIGGERS).unwrap();
    let request =
        imagetool::add::AddRequest::parse(image, &src, "", &triggers.display().to_string(), None)
            .unwrap()
            .with_hash_cache(None);
    imagetool::add::add(bus, request, false).await.unwrap();
    bus.image_record(&name(image)).await.unwrap();
}

/// Every desired state published, in the order the server took them.
async fn record_desired(bus: &Bus) -> Arc<Mutex<Vec<DesiredState>>> {
    let mut messages = bus
        .client
        .subscribe(bus.subjects.all("desired"))
        .await
        .unwrap();
    bus.client.flush().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let state = DesiredState::decode(&message.payload).expect("a valid desired state");
            into.lock().unwrap().push(state);
        }
    });
    seen
}

/// Replays `seen`: the most machines whose latest desired state carried
/// a grant at any one time, and how many grants each machine was given.
fn replay(seen: &[DesiredState]) -> (usize, BTreeMap<String, usize>) {
    let mut holding: BTreeMap<&str, bool> = BTreeMap::new();
    let mut given: BTreeMap<String, usize> = BTreeMap::new();
    let mut most = 0;
    for state in seen {
        let before = holding.insert(&state.host, state.high_impact_granted);
        if state.high_impact_granted && before != Some(true) {
            *given.entry(state.host.clone()).or_default() += 1;
        }
        most = most.max(holding.values().filter(|h| **h).count());
    }
    (most, given)
}

/// Waits until both machines carry `image`, compliant.
async fn wait_compliant(bus: &Bus, machines: &[Machine], image: &str) {
    for m in machines {
        eventually(&format!("{} compliant with {image}", m.host), || async {
            bus.state(&m.host).await.ok().flatten().filter(|r| {
                r.compliant
                    && r.image.as_deref() == Some(image)
                    && r.desired_image.as_deref() == Some(image)
                    && r.high_impact.is_none()
            })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cap_of_one_machines_take_turns_at_high_impact_updates() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let seen = record_desired(&bus).await;
    let settings = Settings {
        max_high_impact: 1,
        debounce: Duration::from_millis(20),
        ..Settings::default()
    };
    let dominator = Dominator::start(bus.clone(), settings, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let machines = [
        Machine::start(&server, dir.path(), "db1"),
        Machine::start(&server, dir.path(), "db2.example.com"),
    ];

    // The first install: the new image's triggers fire on both machines.
    add_image(&bus, dir.path(), "db.0", 0).await;
    for m in &machines {
        set_mdb(&bus, &m.host, "db.0").await;
    }
    wait_compliant(&bus, &machines, "db.0").await;
    for m in &machines {
        assert_eq!(m.db_conf(), "version 0\n", "{}", m.host);
        assert_eq!(m.take_calls(), ["db stop", "db start"], "{}", m.host);
    }

    // An update: the old image's trigger stops db, the new one starts it.
    add_image(&bus, dir.path(), "db.1", 1).await;
    for m in &machines {
        set_mdb(&bus, &m.host, "db.1").await;
    }
    wait_compliant(&bus, &machines, "db.1").await;
    for m in &machines {
        assert_eq!(m.db_conf(), "version 1\n", "{}", m.host);
        assert_eq!(m.take_calls(), ["db stop", "db start"], "{}", m.host);
    }

    // Every grant is taken back once its machine is done.
    eventually("every grant taken back", || async {
        let seen = seen.lock().unwrap();
        let last = |host: &str| seen.iter().rev().find(|d| d.host == host).cloned();
        machines
            .iter()
            .all(|m| {
                last(&m.host).is_some_and(|d| !d.high_impact_granted && d.image.as_str() == "db.1")
            })
            .then_some(())
    })
    .await;
    let (most, given) = replay(&seen.lock().unwrap());
    assert_eq!(most, 1, "two machines held a grant at once: {given:?}");
    for m in &machines {
        assert!(
            given.get(&m.host).is_some_and(|n| *n >= 2),
            "{} was not granted once per update: {given:?}",
            m.host
        );
    }

    // The status shows the cap and nobody asking.
    let board = dominator.board().clone();
    tokio::time::timeout(
        DEADLINE,
        board.wait_for(|s| {
            s.decision.as_ref().is_some_and(|d| {
                d.summary.max_high_impact == 1
                    && d.summary.high_impact == 0
                    && d.summary.compliant == 2
                    && d.machines.iter().all(|m| !m.high_impact_requested)
            })
        }),
    )
    .await
    .expect("the status settles");
}
