//! The fleet the end-to-end tests drive: the real dominator and real
//! agents (several in this one process, each keeping a temporary root),
//! images added with imagetool's library, and the MDB as the only thing a
//! test edits.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dom_bus::{Bus, ConnectArgs};
use dom_model::{ImageRecord, MdbRecord, StateReport};
use dom_tests::fixtures::{copy_tree, image_name as name, service_recorder};
use dom_tests::{connect, eventually, NatsServer};
use dominator::{Dominator, Settings};
use subd::services::ServiceCommand;
use subd::Agent;

/// The dominator's settings for tests: it acts 20 ms after a change, and
/// a machine that does not answer holds its rollout back for 2 s only.
pub fn quick() -> Settings {
    Settings {
        debounce: Duration::from_millis(20),
        rollout: dom_model::policy::RolloutPolicy {
            unresponsive_after_s: 2,
            ..Default::default()
        },
        ..Settings::default()
    }
}

/// The repository's user-guide examples.
pub fn examples() -> PathBuf {
    dom_tests::repo_root().join("ops/examples")
}

pub struct Fleet {
    /// What `--server` says: one server's URL or a cluster's list.
    pub servers: String,
    pub bus: Bus,
    /// Its dominator (taken to stop it).
    pub dominator: Option<Dominator>,
    pub dir: tempfile::TempDir,
    _server: Option<NatsServer>,
}

impl Fleet {
    /// A fleet on a server of its own, its dominator quick to act.
    pub async fn start() -> Self {
        let server = NatsServer::start().unwrap();
        let bus = connect(&server).await;
        let mut fleet = Self::on(server.url(), bus, quick()).await;
        fleet._server = Some(server);
        fleet
    }

    /// A fleet on `servers` (whose streams `bus` has made), its dominator
    /// started with `settings`.
    pub async fn on(servers: String, bus: Bus, settings: Settings) -> Self {
        let dominator = Dominator::start(bus.clone(), settings, None).await.unwrap();
        Self {
            dominator: Some(dominator),
            ..Self::without_dominator(servers, bus)
        }
    }

    /// A fleet on `servers` whose dominators the test starts itself.
    pub fn without_dominator(servers: String, bus: Bus) -> Self {
        Self {
            servers,
            bus,
            dominator: None,
            dir: tempfile::tempdir().unwrap(),
            _server: None,
        }
    }

    /// The real imagetool binary, `--quiet`, against the fleet's servers.
    pub async fn imagetool(&self, args: &[&str]) -> dom_tests::Run {
        let mut command = std::process::Command::new(dom_tests::workspace_binary("imagetool"));
        command
            .args(["--server", &self.servers, "--quiet"])
            .args(args)
            .env_remove("DOM_SERVER")
            .env_remove("RUST_LOG");
        let output = tokio::task::spawn_blocking(move || command.output().expect("run imagetool"));
        dom_tests::Run::from(output.await.unwrap())
    }

    /// `imagetool add NAME SOURCE FILTER TRIGGERS`, through the library.
    pub async fn add_image(
        &self,
        image: &str,
        source: &Path,
        filter: &str,
        triggers: &str,
    ) -> ImageRecord {
        self.add_image_with(image, source, filter, triggers, Ok)
            .await
    }

    /// [`Fleet::add_image`], the request edited first (`edit` adds a
    /// health check, say).
    pub async fn add_image_with(
        &self,
        image: &str,
        source: &Path,
        filter: &str,
        triggers: &str,
        edit: impl FnOnce(imagetool::add::AddRequest) -> anyhow::Result<imagetool::add::AddRequest>,
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
        let request = edit(request).unwrap();
        imagetool::add::add(&self.bus, request, false)
            .await
            .unwrap();
        self.bus.image_record(&name(image)).await.unwrap()
    }

    /// Starts an agent for each of `machines`, requires `image` of each,
    /// and waits until every one is compliant with it.
    pub async fn converge(&self, machines: &[Machine], image: &str) -> Vec<Agent> {
        let agents: Vec<Agent> = machines.iter().map(Machine::start).collect();
        for m in machines {
            self.require(&m.host, image).await;
        }
        for m in machines {
            self.wait_compliant(&m.host, image).await;
        }
        agents
    }

    /// Runs the domtool binary against the fleet's server.
    pub async fn domtool(&self, args: &[&str]) -> dom_tests::Run {
        let mut command = std::process::Command::new(dom_tests::workspace_binary("domtool"));
        command
            .args(["--server", &self.servers])
            .args(args)
            .env_remove("DOM_SERVER")
            .env_remove("RUST_LOG");
        let output = tokio::task::spawn_blocking(move || command.output().expect("run domtool"));
        dom_tests::Run::from(output.await.unwrap())
    }

    /// `nats pub dom.mdb.HOST '{"RequiredImage":"IMAGE"}'`
    pub async fn require(&self, host: &str, image: &str) {
        let record = MdbRecord::new(host).requiring(name(image));
        self.bus
            .publish_mdb(host, record.encode().into())
            .await
            .unwrap();
    }

    /// A machine: a root holding its own /etc/hostname and /etc/fstab and
    /// a file no image has, and a service command that records its calls.
    pub fn machine(&self, host: &str) -> Machine {
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
                server: self.servers.clone(),
                ..ConnectArgs::default()
            },
        }
    }

    pub async fn state(&self, host: &str) -> Option<StateReport> {
        self.bus.state(host).await.ok().flatten()
    }

    /// Waits until `host` reports it carries `image` and matches it.
    pub async fn wait_compliant(&self, host: &str, image: &str) -> StateReport {
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

pub struct Machine {
    pub host: String,
    pub root: PathBuf,
    pub log: PathBuf,
    pub script: PathBuf,
    pub connect: ConnectArgs,
}

impl Machine {
    pub fn start(&self) -> Agent {
        self.start_with(|_| {})
    }

    /// Starts its agent with `edit` applied to the test configuration.
    pub fn start_with(&self, edit: impl FnOnce(&mut subd::Config)) -> Agent {
        let mut config = subd::Config::new(self.host.clone(), self.root.clone()).uncapped();
        config.connect = self.connect.clone();
        config.service_command = ServiceCommand::parse(&self.script.display().to_string()).unwrap();
        config.reboot_command = None;
        edit(&mut config);
        Agent::start(config).unwrap()
    }

    pub fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.root.join(path)).ok()
    }

    pub fn clear_calls(&self) {
        let _ = fs::remove_file(&self.log);
    }

    /// The service calls so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        dom_tests::fixtures::recorded_calls(&self.log)
    }
}

pub fn write(root: &Path, path: &str, content: &[u8]) {
    let file = root.join(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, content).unwrap();
}

/// A copy of the user guide's tree, with `edit` applied. The machines'
/// own files, /etc/hostname and /etc/fstab, are left out, so that sparse
/// images leave them alone too.
pub fn source(dir: &Path, label: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let path = dir.join(format!("src-{label}"));
    copy_tree(&examples().join("path"), &path);
    for own in ["etc/hostname", "etc/fstab"] {
        let _ = fs::remove_file(path.join(own));
    }
    edit(&path);
    path
}

/// A tree whose sshd.conf says `version`.
pub fn sshd_source(dir: &Path, version: u32) -> PathBuf {
    source(dir, &format!("sshd-{version}"), |path| {
        let conf = path.join("etc/ssh/sshd.conf");
        let text = fs::read_to_string(&conf).unwrap();
        fs::write(conf, format!("{text}# version {version}\n")).unwrap();
    })
}

/// Moves the leadership of `stream` to the server named `to`, unless it
/// leads already.
pub async fn lead_from(bus: &Bus, stream: &str, to: &str) {
    let leads = || async {
        let places = bus.stream_places().await.ok()?;
        let place = places.into_iter().find(|p| p.stream == stream)?;
        (place.leader.as_deref() == Some(to)).then_some(())
    };
    if leads().await.is_some() {
        return;
    }
    let request = serde_json::json!({ "placement": { "preferred": to } });
    bus.client
        .request(
            format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
            request.to_string().into(),
        )
        .await
        .expect("stepdown answered");
    eventually(&format!("{to} leading {stream}"), leads).await;
}
