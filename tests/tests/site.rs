//! A remote site on a leaf node: the site's server runs JetStream in a
//! domain of its own and mirrors the hub's images stream and object
//! bucket (`domsetup site`); agents at the site read their desired states
//! from the hub and their objects from the site's mirror. Each object
//! crosses the link once, however many machines fetch it, and the state
//! reports reach the hub. With the link cut, the site's machines keep
//! enforcing their images, and an MDB change made at the hub meanwhile
//! reaches them once it is back. Secured as `domsecure add-site` sets it
//! up, the link carries only the agents' traffic and the mirrors'.

use std::fs;
use std::path::Path;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use dom_bus::{ConnectArgs, Layout};
use dom_tests::{connect, connect_bare, eventually, free_port, NatsServer};

use crate::fleet_kit::{quick, sshd_source, Fleet, Machine};
use crate::secure::domsecure;

/// A configuration file for a server in JetStream domain `domain`,
/// storing under `dir`, with `more` appended.
fn config(dir: &Path, domain: &str, more: &str) -> std::path::PathBuf {
    let store = dir.join(format!("store-{domain}"));
    let text = format!(
        "max_payload: 8MB\njetstream {{ domain: {domain}, store_dir: \"{}\" }}\n{more}\n",
        store.display()
    );
    let path = dir.join(format!("{domain}.conf"));
    fs::write(&path, text).unwrap();
    path
}

/// A TCP relay on a free port to the port `to`, which the test cuts and
/// restores: the site's link to the hub.
struct Relay {
    port: u16,
    to: u16,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(to: u16) -> Self {
        let mut relay = Self {
            port: free_port().unwrap(),
            to,
            task: None,
        };
        relay.restore();
        relay
    }

    /// Relays again.
    fn restore(&mut self) {
        let (port, to) = (self.port, self.to);
        self.task = Some(tokio::spawn(async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            // Dropped with the task: every relayed connection ends with it.
            let mut links = tokio::task::JoinSet::new();
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                links.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the link and refuses new ones.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How many leaf nodes the hub has, from its monitoring port.
async fn leaves(monitor: u16) -> usize {
    let url = format!("http://127.0.0.1:{monitor}/leafz");
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let leafz: serde_json::Value = serde_json::from_str(&text).unwrap();
    leafz["leafs"].as_array().map_or(0, Vec::len)
}

/// Bytes the hub has sent its leaf nodes, from its monitoring port.
async fn sent_to_leaves(monitor: u16) -> u64 {
    let url = format!("http://127.0.0.1:{monitor}/leafz");
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let leafz: serde_json::Value = serde_json::from_str(&text).unwrap();
    leafz["leafs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["out_bytes"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn machines_at_a_site_fetch_from_its_mirror_and_report_to_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (leaf_port, monitor) = (free_port().unwrap(), free_port().unwrap());
    let hub_config = config(
        dir.path(),
        "hub",
        &format!(
            "http: \"127.0.0.1:{monitor}\"\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}"
        ),
    );
    let hub = NatsServer::start_with_config(&hub_config).unwrap();
    let mut link = Relay::start(leaf_port);
    let site_config = config(
        dir.path(),
        "site1",
        &format!(
            "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{}\" }} ] }}",
            link.port
        ),
    );
    let site = NatsServer::start_with_config(&site_config).unwrap();

    // The fleet at the hub: its dominator, and an image with 2 MiB of
    // content no other image has.
    let hub_bus = connect(&hub).await;
    let fleet = Fleet::on(hub.url(), hub_bus.clone(), quick()).await;
    let src = sshd_source(fleet.dir.path(), 1);
    let big: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(src.join("srv-data.bin"), &big).unwrap();
    fleet.add_image("v.1", &src, "", "").await;

    // The site's mirrors, once the leaf connection is up.
    let site_bus = connect_bare(&site, "tests").await;
    let layout = Layout::default();
    eventually("the site's mirrors made", || async {
        site_bus.ensure_site_mirrors("hub", &layout).await.ok()
    })
    .await;
    let objects = hub_bus.subjects.object_stream();
    let hub_count = hub_bus
        .js
        .get_stream(&objects)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    eventually("the site's bucket mirrored", || async {
        let mut mirror = site_bus.js.get_stream(&objects).await.ok()?;
        (mirror.info().await.ok()?.state.messages == hub_count).then_some(())
    })
    .await;
    let before = sent_to_leaves(monitor).await;

    // Three machines at the site.
    let at_site = ConnectArgs {
        server: site.url(),
        domain: Some("hub".into()),
        objects_domain: Some("site1".into()),
        ..ConnectArgs::default()
    };
    let hosts = ["s0", "s1", "s2"];
    let machines: Vec<Machine> = hosts
        .iter()
        .map(|h| Machine {
            connect: at_site.clone(),
            ..fleet.machine(h)
        })
        .collect();
    let _agents: Vec<subd::Agent> = machines.iter().map(Machine::start).collect();
    for host in hosts {
        fleet.require(host, "v.1").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "v.1").await;
        assert_eq!(fs::read(m.root.join("srv-data.bin")).unwrap(), big);
    }

    // The objects crossed the link once, with the site's mirror; the
    // machines' fetches did not (each would be another 2 MiB).
    let carried = sent_to_leaves(monitor).await - before;
    eprintln!(
        "the hub sent its leaf {carried} bytes for {} machines",
        hosts.len()
    );
    assert!(
        carried < big.len() as u64,
        "{carried} bytes crossed the link after the mirror had the objects"
    );

    // The link is cut. The machines keep enforcing their image; an MDB
    // change made at the hub meanwhile reaches them once it is back.
    let src = sshd_source(fleet.dir.path(), 2);
    fleet.add_image("v.2", &src, "", "").await;
    link.cut();
    eventually("the link down", || async {
        (leaves(monitor).await == 0).then_some(())
    })
    .await;
    fs::write(machines[1].root.join("srv-data.bin"), b"changed by hand").unwrap();
    eventually("s1 corrected while cut off", || async {
        (fs::read(machines[1].root.join("srv-data.bin")).ok()? == big).then_some(())
    })
    .await;
    fleet.require("s0", "v.2").await;
    link.restore();
    fleet.wait_compliant("s0", "v.2").await;
    assert!(
        fs::read_to_string(machines[0].root.join("etc/ssh/sshd.conf"))
            .unwrap()
            .contains("# version 2")
    );

    // An operator at the hub captures a machine at the site: the request
    // and the agent's answers cross the link. The machine's own files
    // (its host name) come from it; the image's were in the bucket.
    let captured = fleet.imagetool(&["adds", "s1.golden", "s1"]).await.ok();
    assert!(
        captured.starts_with("added s1.golden from s1: 8 files, 2.0 MiB, 3 objects uploaded"),
        "{captured}"
    );
    for (path, content) in [("/etc/hostname", &b"s1\n"[..]), ("/srv-data.bin", &big[..])] {
        let out = fleet.dir.path().join(path.replace('/', "-"));
        fleet
            .imagetool(&[
                "get-file-in-image",
                "s1.golden",
                path,
                out.to_str().unwrap(),
            ])
            .await
            .ok();
        assert_eq!(fs::read(&out).unwrap(), content, "{path}");
    }
}

/// Connection options of a credential over TLS: `seed` an nkey seed file,
/// `ca` the fleet's CA.
fn secured(server: String, seed: &Path, ca: &Path) -> ConnectArgs {
    ConnectArgs {
        server,
        nkey: Some(seed.to_path_buf()),
        tls_ca: Some(ca.to_path_buf()),
        ..ConnectArgs::default()
    }
}

/// A secured hub and site, as `domsecure init --domain --leafnodes` and
/// `domsecure add-site` write them: TLS on the link, which the site makes
/// with a credential of its own that only a leaf connection may use, and
/// the site's agents in an account of their own on the site's server,
/// with their own credentials. The site's machines converge from its
/// mirror; nothing but the agents' traffic and the mirrors' crosses
/// towards the hub, and no capture request crosses towards the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secured_site_links_with_its_own_credential_and_carries_only_the_agents_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (hub_dir, site_dir) = (dir.path().join("hub"), dir.path().join("site1"));
    let (leaf_port, monitor) = (free_port().unwrap(), free_port().unwrap());
    let leafnodes = format!("127.0.0.1:{leaf_port}");
    let monitoring = format!("127.0.0.1:{monitor}");
    domsecure(
        &hub_dir,
        &[
            "init",
            "--monitor",
            &monitoring,
            "--domain",
            "hub",
            "--leafnodes",
            &leafnodes,
        ],
    );
    let hub_url = format!("tls://127.0.0.1:{leaf_port}");
    let site_path = site_dir.display().to_string();
    domsecure(
        &hub_dir,
        &[
            "add-site",
            "site1",
            "--site-dir",
            &site_path,
            "--hub-url",
            &hub_url,
            "--monitor",
            "off",
        ],
    );
    for host in ["s0", "s1"] {
        domsecure(&site_dir, &["add-host", host]);
    }
    let leaf = fs::metadata(site_dir.join("leaf.conf")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&leaf.permissions()) & 0o077,
        0,
        "the link's seed is readable by others"
    );
    let hub = NatsServer::start_with_config(&hub_dir.join("nats.conf")).unwrap();
    let site = NatsServer::start_with_config(&site_dir.join("nats.conf")).unwrap();
    let ca = hub_dir.join("ca/ca.pem");
    let creds = |dir: &Path, name: &str| dir.join(format!("creds/{name}.nk"));

    // The site's credential opens no client connection to the hub.
    let refused = dom_bus::Bus::connect(
        &secured(hub.tls_url(), &creds(&hub_dir, "site-site1"), &ca),
        "tests",
    )
    .await;
    assert!(
        refused.is_err(),
        "the site's credential connects as a client"
    );

    let operator = dom_bus::Bus::connect(
        &secured(hub.tls_url(), &creds(&hub_dir, "operator"), &ca),
        "tests",
    )
    .await
    .unwrap();
    operator.ensure_streams().await.unwrap();
    // The dominator with its own credential; the operator adds images
    // and sets the MDB.
    let dominator = dom_bus::Bus::connect(
        &secured(hub.tls_url(), &creds(&hub_dir, "dominator"), &ca),
        "dominator",
    )
    .await
    .unwrap();
    let mut fleet = Fleet::on(hub.tls_url(), dominator, quick()).await;
    fleet.bus = operator.clone();
    let src = sshd_source(fleet.dir.path(), 1);
    let big: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    fs::write(src.join("srv-data.bin"), &big).unwrap();
    fleet.add_image("v.1", &src, "", "").await;

    // The operator sets the site's mirrors up with the hub's credential.
    let at_site = dom_bus::Bus::connect(
        &secured(site.tls_url(), &creds(&hub_dir, "operator"), &ca),
        "tests",
    )
    .await
    .unwrap();
    eventually("the site's mirrors made", || async {
        at_site
            .ensure_site_mirrors("hub", &Layout::default())
            .await
            .ok()
    })
    .await;

    let machines: Vec<Machine> = ["s0", "s1"]
        .iter()
        .map(|host| Machine {
            connect: ConnectArgs {
                domain: Some("hub".into()),
                objects_domain: Some("site1".into()),
                ..secured(
                    site.tls_url(),
                    &creds(&site_dir, &format!("subd-{host}")),
                    &site_dir.join("ca/ca.pem"),
                )
            },
            ..fleet.machine(host)
        })
        .collect();
    let _agents = fleet.converge(&machines, "v.1").await;
    for m in &machines {
        assert_eq!(fs::read(m.root.join("srv-data.bin")).unwrap(), big);
    }

    // An agent at the site reads its own desired state, no other.
    let s0 = dom_bus::Bus::connect(&machines[0].connect, "tests")
        .await
        .unwrap();
    assert!(s0.desired("s0").await.unwrap().is_some());
    let other = s0.desired("s1").await;
    assert!(
        other.as_ref().is_err_and(|e| e.is_permission_denied()),
        "s0 read s1's desired state: {other:?}"
    );

    // The operator at the hub cannot capture a machine at a secured
    // site: the link does not carry capture requests, since a site's
    // server in other hands could then answer for any machine.
    let operator_seed = creds(&hub_dir, "operator");
    let as_operator = [
        "--nkey",
        operator_seed.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ];
    let refused = fleet
        .imagetool(&[&as_operator[..], &["adds", "s1.golden", "s1"]].concat())
        .await;
    assert_eq!(
        refused.one_line_error(),
        "imagetool: no agent answered for s1 on dom.capture.s1; is subd running and connected?"
    );

    // A site's server in other hands, with the site's credential and no
    // rules of its own, can send the hub no MDB record, desired state,
    // image or control; an event it sends after them does cross, so they
    // had their chance.
    let seed = fs::read_to_string(creds(&hub_dir, "site-site1")).unwrap();
    let rogue_config = dir.path().join("rogue.conf");
    fs::write(
        &rogue_config,
        format!(
            "leafnodes {{ remotes: [ {{ url: \"{hub_url}\", nkey: \"{}\", tls: {{ ca_file: \"{}\" }} }} ] }}\n",
            seed.trim(),
            ca.display()
        ),
    )
    .unwrap();
    let rogue = NatsServer::start_with_config(&rogue_config).unwrap();
    eventually("the rogue server linked", || async {
        (leaves(monitor).await == 2).then_some(())
    })
    .await;
    let mdb = operator.subjects.mdb_stream();
    let desired = operator.subjects.desired_stream();
    let images = operator.subjects.images_stream();
    let controls = operator.subjects.ctl_stream();
    let count = |stream: String| {
        let operator = operator.clone();
        async move {
            let mut stream = operator.js.get_stream(&stream).await.unwrap();
            stream.info().await.unwrap().state.messages
        }
    };
    let counts = || async {
        (
            count(mdb.clone()).await,
            count(desired.clone()).await,
            count(images.clone()).await,
            count(controls.clone()).await,
        )
    };
    let before = counts().await;
    let rogue_bus = connect_bare(&rogue, "rogue").await;
    let s = &rogue_bus.subjects;
    let forged =
        dom_model::MdbRecord::new("evil").requiring(dom_tests::fixtures::image_name("v.1"));
    let marker = dom_model::Event::new(
        "s0",
        dom_model::Event::DRIFT,
        "2026-12-06T21:00:00Z",
        "marker",
    );
    for (subject, payload) in [
        (s.mdb("evil"), forged.encode()),
        (s.desired("s0"), b"{}".to_vec()),
        (s.image("forged"), b"{}".to_vec()),
        (s.ctl("updates"), b"{}".to_vec()),
        (s.event("s0", &marker.kind), marker.encode()),
    ] {
        rogue_bus
            .client
            .publish(subject, payload.into())
            .await
            .unwrap();
    }
    rogue_bus.client.flush().await.unwrap();
    eventually("the marker event at the hub", || async {
        let events = operator.events("s0").await.ok()?;
        events.iter().any(|e| e.message == "marker").then_some(())
    })
    .await;
    assert_eq!(
        before,
        counts().await,
        "(MDB, desired, images, controls) messages at the hub"
    );
}
