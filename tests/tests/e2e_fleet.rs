//! End to end on one server (see `fleet_kit`): the user guide from start
//! to finish, a machine that is down while its MDB record changes three
//! times, the emergency stop holding a rollout, and machines fetching an
//! image while objects are collected.

use std::fs;

use dom_model::controls::{UpdatesControl, UpdatesState};
use dom_tests::{eventually, wait_allowed, wait_desired};
use subd::Agent;

use crate::fleet_kit::{source, sshd_source, Fleet, Machine};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_fetching_an_image_converge_through_object_collections() {
    converge_through_collections(&Fleet::start().await, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_fetching_from_s3_converge_through_object_collections() {
    let server = dom_tests::NatsServer::start().unwrap();
    let s3 = dom_tests::s3::S3Server::start().unwrap();
    s3.bucket("fleet").await.unwrap();
    let mut bus = dom_tests::connect(&server).await;
    bus.objects = Some("s3://fleet/objects".into());
    bus.s3_endpoint = Some(s3.endpoint());
    // Fewer files: the test server answers one request at a time.
    let fleet = Fleet::on(server.url(), bus, crate::fleet_kit::quick()).await;
    converge_through_collections(&fleet, 300).await;
}

/// Machines fetch an image while collections run, over and over, each
/// deleting what a deleted image left: they converge. The fleet's bus
/// says where the objects live; the machines look there too.
async fn converge_through_collections(fleet: &Fleet, files: usize) {
    let many = |label: &str| {
        source(fleet.dir.path(), label, |path| {
            for file in 0..files {
                let content = format!("{label} file {file}\n");
                crate::fleet_kit::write(path, &format!("srv/data/f{file}"), content.as_bytes());
            }
        })
    };
    // Objects a collection will delete: those of an image deleted.
    fleet.add_image("old.0", &many("old"), "", "").await;
    fleet
        .bus
        .delete_image(&dom_model::Tombstone {
            v: 1,
            name: dom_tests::fixtures::image_name("old.0"),
            deleted: true,
            deleted_at: "2026-12-06T00:00:00Z".into(),
            by: "test".into(),
        })
        .await
        .unwrap();
    fleet.add_image("new.0", &many("new"), "", "").await;
    let machines: Vec<Machine> = ["gc1", "gc2", "gc3"]
        .iter()
        .map(|host| {
            let mut machine = fleet.machine(host);
            machine.connect.objects = fleet.bus.objects.clone();
            machine.connect.s3_endpoint = fleet.bus.s3_endpoint.clone();
            machine
        })
        .collect();
    let _agents: Vec<Agent> = machines.iter().map(Machine::start).collect();
    for m in &machines {
        fleet.require(&m.host, "new.0").await;
    }
    // Collections run while the machines fetch, until all of them are
    // compliant (three at least).
    let mut deleted = Vec::new();
    loop {
        let mut out = Vec::new();
        imagetool::usage::delete_unreferenced(&fleet.bus, false, None, &mut out)
            .await
            .unwrap();
        deleted.push(String::from_utf8(out).unwrap());
        let mut compliant = 0;
        for m in &machines {
            let report = fleet.state(&m.host).await;
            if report.is_some_and(|r| r.compliant && r.image.as_deref() == Some("new.0")) {
                compliant += 1;
            }
        }
        if deleted.len() >= 3 && compliant == machines.len() {
            break;
        }
        assert!(deleted.len() < 2000, "the machines never converged");
    }
    assert!(
        deleted[0].starts_with(&format!("deleted {} unreferenced objects", files + 1)),
        "{deleted:?}"
    );
    for m in &machines {
        fleet.wait_compliant(&m.host, "new.0").await;
        let last = files - 1;
        assert_eq!(
            m.read(&format!("srv/data/f{last}")),
            Some(format!("new file {last}\n"))
        );
    }
}
