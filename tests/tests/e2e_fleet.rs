//! End to end: the real dominator and real agents (several in this one
//! process, each keeping a temporary root), images added with imagetool's
//! library, and the MDB as the only thing the test edits. The user guide
//! from start to finish, a machine that is down while its MDB record
//! changes three times, and the emergency stop holding a rollout.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dom_bus::{Bus, ConnectArgs};
use dom_model::controls::{UpdatesControl, UpdatesState};
use dom_model::{ImageRecord, MdbRecord, StateReport};
use dom_tests::fixtures::{copy_tree, image_name as name, service_recorder};
use dom_tests::{connect, eventually, wait_allowed, wait_desired, NatsServer};
use dominator::{Dominator, Settings};
use subd::services::ServiceCommand;
use subd::Agent;

/// The repository's user-guide examples.
fn examples() -> PathBuf {
    dom_tests::repo_root().join("ops/examples")
}

struct Fleet {
    server: NatsServer,
    bus: Bus,
    _dominator: Dominator,
    dir: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Self {
        let server = NatsServer::start().unwrap();
        let bus = connect(&server).await;
        let settings = Settings {
            debounce: Duration::from_millis(20),
            ..Settings::default()
        };
        let dominator = Dominator::start(bus.clone(), settings, None).await.unwrap();
        Self {
            server,
            bus,
            _dominator: dominator,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `imagetool add NAME SOURCE FILTER TRIGGERS`, through the library.
    async fn add_image(
        &self,
        image: &str,
        source: &Path,
        filter: &str,
        triggers: &str,
    ) -> ImageRecord {
        let file = |f: &str| {
            if f.is_empty() {
                String::new()
            } else {
                examples().join(f).display().to_string()
            }
        };
        let request =
            imagetool::add::AddRequest::parse(image, source, &file(filter), &file(triggers), None)
                .unwrap()
                .with_hash_cache(None);
        imagetool::add::add(&self.bus, request, false)
            .await
            .unwrap();
        self.bus.image_record(&name(image)).await.unwrap()
    }

    /// `nats pub dom.mdb.HOST '{"RequiredImage":"IMAGE"}'`
    async fn require(&self, host: &str, image: &str) {
        let record = MdbRecord::new(host).requiring(name(image));
        self.bus
            .publish_mdb(host, record.encode().into())
            .await
            .unwrap();
    }

    /// A machine: a root holding its own /etc/hostname and /etc/fstab and
    /// a file no image has, and a service command that records its calls.
    fn machine(&self, host: &str) -> Machine {
        let base = self.dir.path().join(host);
        let root = base.join("root");
        write(&root, "etc/hostname", format!("{host}\n").as_bytes());
        write(&root, "etc/fstab", format!("# {host}'s disks\n").as_bytes());
        write(&root, "srv/junk", b"not in any image\n");
        let (script, log) = service_recorder(&base);
        Machine {
            host: host.to_string(),
            root,
            log,
            script,
            connect: ConnectArgs {
                server: self.server.url(),
                ..ConnectArgs::default()
            },
        }
    }

    async fn state(&self, host: &str) -> Option<StateReport> {
        self.bus.state(host).await.ok().flatten()
    }

    /// Waits until `host` reports it carries `image` and matches it.
    async fn wait_compliant(&self, host: &str, image: &str) -> StateReport {
        eventually(&format!("{host} compliant with {image}"), || async {
            self.state(host).await.filter(|r| {
                r.compliant
                    && r.image.as_deref() == Some(image)
                    && r.desired_image.as_deref() == Some(image)
            })
        })
        .await
    }
}

struct Machine {
    host: String,
    root: PathBuf,
    log: PathBuf,
    script: PathBuf,
    connect: ConnectArgs,
}

impl Machine {
    fn start(&self) -> Agent {
        let mut config = subd::Config::new(self.host.clone(), self.root.clone()).uncapped();
        config.connect = self.connect.clone();
        config.service_command = ServiceCommand::parse(&self.script.display().to_string()).unwrap();
        config.reboot_command = None;
        Agent::start(config).unwrap()
    }

    fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.root.join(path)).ok()
    }

    fn clear_calls(&self) {
        let _ = fs::remove_file(&self.log);
    }

    /// The service calls so far, one line each.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let file = root.join(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, content).unwrap();
}

/// A copy of the user guide's tree, with `edit` applied. The machines'
/// own files, /etc/hostname and /etc/fstab, are left out, so that sparse
/// images leave them alone too.
fn source(dir: &Path, label: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let path = dir.join(format!("src-{label}"));
    copy_tree(&examples().join("path"), &path);
    for own in ["etc/hostname", "etc/fstab"] {
        let _ = fs::remove_file(path.join(own));
    }
    edit(&path);
    path
}

/// A tree whose sshd.conf says `version`.
fn sshd_source(dir: &Path, version: u32) -> PathBuf {
    source(dir, &format!("sshd-{version}"), |path| {
        let conf = path.join("etc/ssh/sshd.conf");
        let text = fs::read_to_string(&conf).unwrap();
        fs::write(conf, format!("{text}# version {version}\n")).unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_guide_from_start_to_finish() {
    let fleet = Fleet::start().await;
    let machines = [fleet.machine("web1"), fleet.machine("web2.example.com")];
    let _agents: Vec<Agent> = machines.iter().map(Machine::start).collect();
    let guide = source(fleet.dir.path(), "guide", |_| {});

    // imagetool add sparse.0 path "" "", and both machines require it.
    fleet.add_image("sparse.0", &guide, "", "").await;
    for m in &machines {
        fleet.require(&m.host, "sparse.0").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "sparse.0").await;
        let shipped = fs::read_to_string(guide.join("etc/ssh/sshd.conf")).unwrap();
        assert_eq!(m.read("etc/ssh/sshd.conf").unwrap(), shipped);
        // Sparse: nothing is deleted.
        assert!(m.read("srv/junk").is_some());
    }

    // An image whose sshd.conf changed, with the sshd trigger: sshd is
    // started on both machines (sparse.0 had no triggers, so there was
    // nothing to stop).
    let sparse1 = sshd_source(fleet.dir.path(), 1);
    fleet
        .add_image("sparse.1", &sparse1, "", "triggers.sshd")
        .await;
    for m in &machines {
        fleet.require(&m.host, "sparse.1").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "sparse.1").await;
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 1"));
        let calls = m.calls();
        assert!(
            calls.contains(&"sshd start".to_string()),
            "{}: {calls:?}",
            m.host
        );
        m.clear_calls();
    }

    // A normal image with the filter: each machine keeps its own
    // /etc/hostname and /etc/fstab and loses what the image lacks.
    let image0 = sshd_source(fleet.dir.path(), 2);
    fleet
        .add_image("image.0", &image0, "filter", "triggers")
        .await;
    for m in &machines {
        fleet.require(&m.host, "image.0").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "image.0").await;
        assert_eq!(m.read("etc/hostname").unwrap(), format!("{}\n", m.host));
        assert_eq!(
            m.read("etc/fstab").unwrap(),
            format!("# {}'s disks\n", m.host)
        );
        assert!(m.read("srv/junk").is_none(), "{}: junk kept", m.host);
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 2"));
        // sparse.1's sshd trigger stops sshd around the change, image.0's
        // starts it again.
        let calls = m.calls();
        let stop = calls.iter().position(|c| c == "sshd stop");
        let start = calls.iter().rposition(|c| c == "sshd start");
        assert!(
            matches!((stop, start), (Some(s), Some(t)) if s < t),
            "{}: {calls:?}",
            m.host
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_down_during_three_changes_catches_up() {
    let fleet = Fleet::start().await;
    let up = fleet.machine("up1");
    let down = fleet.machine("down1");
    let _up = up.start();
    let agent = down.start();
    for version in 0..4 {
        let src = sshd_source(fleet.dir.path(), version);
        fleet
            .add_image(&format!("sparse.{version}"), &src, "", "")
            .await;
    }
    for m in [&up, &down] {
        fleet.require(&m.host, "sparse.0").await;
    }
    for m in [&up, &down] {
        fleet.wait_compliant(&m.host, "sparse.0").await;
    }

    agent.stop().await;
    for version in 1..4 {
        let image = format!("sparse.{version}");
        for m in [&up, &down] {
            fleet.require(&m.host, &image).await;
        }
        // The machine that is up follows each change.
        fleet.wait_compliant(&up.host, &image).await;
    }
    // The machine that was down is told the last one and goes straight
    // to it.
    wait_allowed(&fleet.bus, &down.host, "sparse.3").await;
    assert!(down
        .read("etc/ssh/sshd.conf")
        .unwrap()
        .contains("# version 0"));
    let _down = down.start();
    fleet.wait_compliant(&down.host, "sparse.3").await;
    assert!(down
        .read("etc/ssh/sshd.conf")
        .unwrap()
        .contains("# version 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emergency_stop_holds_a_rollout() {
    let fleet = Fleet::start().await;
    let machines = [fleet.machine("db1"), fleet.machine("db2")];
    let _agents: Vec<Agent> = machines.iter().map(Machine::start).collect();
    for version in 0..2 {
        let src = sshd_source(fleet.dir.path(), version);
        fleet
            .add_image(&format!("sparse.{version}"), &src, "", "")
            .await;
    }
    for m in &machines {
        fleet.require(&m.host, "sparse.0").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "sparse.0").await;
    }

    let stop = UpdatesControl::new(
        UpdatesState::Disabled,
        "bad sshd in sparse.1",
        "alice@ops1",
        &dom_bus::stamp::now_rfc3339(),
    );
    fleet
        .bus
        .publish_ctl("updates", stop.encode().into())
        .await
        .unwrap();
    for m in &machines {
        wait_desired(&fleet.bus, &m.host, "held", |d| !d.updates_allowed).await;
    }
    for m in &machines {
        fleet.require(&m.host, "sparse.1").await;
    }
    // Each agent is told about sparse.1 and leaves the machine as it is.
    for m in &machines {
        eventually(&format!("{} told of sparse.1, held", m.host), || async {
            fleet
                .state(&m.host)
                .await
                .filter(|r| r.desired_image.as_deref() == Some("sparse.1") && !r.compliant)
        })
        .await;
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 0"));
        assert_eq!(
            fleet.state(&m.host).await.unwrap().image.as_deref(),
            Some("sparse.0")
        );
    }

    let go = UpdatesControl::new(
        UpdatesState::Enabled,
        "sparse.1 checked",
        "alice@ops1",
        &dom_bus::stamp::now_rfc3339(),
    );
    fleet
        .bus
        .publish_ctl("updates", go.encode().into())
        .await
        .unwrap();
    for m in &machines {
        fleet.wait_compliant(&m.host, "sparse.1").await;
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 1"));
    }
}
