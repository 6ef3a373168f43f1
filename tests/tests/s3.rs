//! Objects in S3-compatible storage (a real moto server) and in a local
//! directory, through the real `imagetool` and in-process agents: images
//! and everything else stay on NATS, the image record says where its
//! objects live, reads are checked as on NATS (size first, then the
//! SHA-512), and machines converge and are kept on their image.

use std::fs;
use std::path::Path;
use std::process::Command;

use dom_bus::ConnectArgs;
use dom_model::ObjectId;
use dom_store::{BlobStore, ContentStore, NatsStore};
use dom_tests::s3::S3Server;
use dom_tests::{connect, eventually, workspace_binary, NatsServer, Run};

use crate::fleet_kit::{quick, sshd_source, Fleet, Machine};

/// `imagetool --server URL ARGS`, with the S3 server's environment.
fn imagetool(server: &NatsServer, args: &[&str]) -> Run {
    Run::from(
        Command::new(workspace_binary("imagetool"))
            .arg("--server")
            .arg(server.url())
            .args(args)
            .envs(dom_tests::s3::ENV)
            .env_remove("DOM_OBJECTS")
            .output()
            .expect("imagetool runs"),
    )
}

/// Every file under `dir`, by path relative to it, with its content.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = dom_tests::files_under(dir)
        .into_iter()
        .map(|f| {
            let content = fs::read(&f).unwrap();
            (f.strip_prefix(dir).unwrap().display().to_string(), content)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_in_s3_round_trip_and_machines_converge_from_there() {
    let server = NatsServer::start().unwrap();
    let s3 = S3Server::start().unwrap();
    s3.bucket("fleet").await.unwrap();
    let objects = "s3://fleet/objects";
    let endpoint = s3.endpoint();
    let with_s3 = ["--objects", objects, "--s3-endpoint", endpoint.as_str()];

    let bus = connect(&server).await;
    let fleet = Fleet::on(server.url(), bus.clone(), quick()).await;
    let src = sshd_source(fleet.dir.path(), 1);
    let big: Vec<u8> = (0..(20u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    fs::write(src.join("srv-data.bin"), &big).unwrap();
    let source = src.display().to_string();

    // The real binary adds the image, its objects going to S3 (the large
    // file in parts) and its record to NATS.
    let mut add = vec!["add", "v.1", source.as_str(), "", ""];
    add.splice(0..0, with_s3);
    let added = imagetool(&server, &add);
    assert_eq!(added.code, 0, "{}", added.stderr);
    let record = bus
        .image_record(&dom_tests::fixtures::image_name("v.1"))
        .await
        .unwrap();
    assert_eq!(record.objects.as_deref(), Some(objects));
    let blob = BlobStore::open(objects, Some(&endpoint)).unwrap();
    let in_s3 = blob.ids().await.unwrap();
    assert!(in_s3.contains(&record.manifest));
    assert!(in_s3.contains(&ObjectId::of(&big)));
    assert!(
        NatsStore::open(&bus)
            .await
            .unwrap()
            .ids()
            .await
            .unwrap()
            .is_empty(),
        "objects went to NATS"
    );

    // `get` writes the tree back whole; pointed elsewhere, it says where
    // the objects are.
    let out = fleet.dir.path().join("out");
    let out_arg = out.display().to_string();
    let mut get = vec!["get", "v.1", out_arg.as_str()];
    get.splice(0..0, with_s3);
    let got = imagetool(&server, &get);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(tree(&out), tree(&src));
    let elsewhere = imagetool(&server, &["get", "v.1", "/nonexistent/x"]);
    assert_eq!(elsewhere.code, 1);
    assert!(
        elsewhere.stderr.contains(
            "image v.1's objects live at s3://fleet/objects (--objects s3://fleet/objects)"
        ),
        "{}",
        elsewhere.stderr
    );

    // Machines pointed at the same storage converge, and a file changed
    // by hand is put back.
    let machines: Vec<Machine> = ["m0", "m1"]
        .iter()
        .map(|host| Machine {
            connect: ConnectArgs {
                server: server.url(),
                objects: Some(objects.into()),
                s3_endpoint: Some(endpoint.clone()),
                ..ConnectArgs::default()
            },
            ..fleet.machine(host)
        })
        .collect();
    let _agents = fleet.converge(&machines, "v.1").await;
    for m in &machines {
        assert_eq!(fs::read(m.root.join("srv-data.bin")).unwrap(), big);
    }
    fs::write(machines[1].root.join("etc/ssh/sshd.conf"), b"changed").unwrap();
    eventually("m1's drift corrected", || async {
        (machines[1].read("etc/ssh/sshd.conf")?
            == fs::read_to_string(src.join("etc/ssh/sshd.conf")).ok()?)
        .then_some(())
    })
    .await;

    // An object replaced in S3 behind the store's back is refused: one of
    // another size before it is read, one of the same size by its hash.
    let conf = fs::read(src.join("etc/ssh/sshd.conf")).unwrap();
    let id = ObjectId::of(&conf);
    let hex = id.to_hex();
    let key = format!("objects/{}/{hex}", &hex[..2]);
    s3.overwrite("fleet", &key, b"short".to_vec())
        .await
        .unwrap();
    let wrong = blob.get_sized(id, conf.len() as u64).await.unwrap_err();
    assert!(
        matches!(wrong, dom_store::StoreError::WrongSize { actual: 5, .. }),
        "{wrong}"
    );
    let mut forged = conf.clone();
    forged[0] ^= 1;
    s3.overwrite("fleet", &key, forged).await.unwrap();
    let corrupt = blob.get_sized(id, conf.len() as u64).await.unwrap_err();
    assert!(
        matches!(corrupt, dom_store::StoreError::Corrupt { .. }),
        "{corrupt}"
    );
    let out = fleet.dir.path().join("out2");
    let out_arg = out.display().to_string();
    let mut get = vec!["get", "v.1", out_arg.as_str()];
    get.splice(0..0, with_s3);
    let refused = imagetool(&server, &get);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(&format!("object {id} is corrupt")),
        "{}",
        refused.stderr
    );
    // A machine that needs it now refuses it, and says so.
    let late = Machine {
        connect: machines[0].connect.clone(),
        ..fleet.machine("m2")
    };
    let _late = late.start();
    fleet.require("m2", "v.1").await;
    eventually("m2 reports the corrupt object", || async {
        let state = fleet.state("m2").await?;
        let error = state.last_update?.error?;
        error.contains("corrupt").then_some(())
    })
    .await;
    assert!(!late.root.join("etc/ssh/sshd.conf").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_in_a_local_directory_round_trip_and_machines_converge_from_there() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects = format!("file://{}", dir.path().join("objects").display());
    let src = sshd_source(dir.path(), 1);
    let source = src.display().to_string();
    let added = imagetool(
        &server,
        &["--objects", &objects, "add", "v.1", &source, "", ""],
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let got = imagetool(&server, &["--objects", &objects, "get", "v.1", &out_arg]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(tree(&out), tree(&src));
    let blob = BlobStore::open(&objects, None).unwrap();
    let stored = blob.ids().await.unwrap().len();
    assert!(stored > 1, "{stored} objects");
    // No temporary file is left beside the objects.
    assert!(dom_tests::files_under(&dir.path().join("objects"))
        .iter()
        .all(|f| f.file_name().unwrap().len() == 128));

    // A machine converges from the directory and is kept on its image;
    // once the image is deleted, a collection empties the directory.
    let mut bus = connect(&server).await;
    bus.objects = Some(objects.clone());
    let fleet = Fleet::on(server.url(), bus.clone(), quick()).await;
    let mut machine = fleet.machine("d0");
    machine.connect.objects = Some(objects.clone());
    let _agent = machine.start();
    fleet.require("d0", "v.1").await;
    fleet.wait_compliant("d0", "v.1").await;
    let conf = "etc/ssh/sshd.conf";
    fs::write(machine.root.join(conf), b"changed").unwrap();
    eventually("d0's drift corrected", || async {
        (machine.read(conf)? == fs::read_to_string(src.join(conf)).ok()?).then_some(())
    })
    .await;
    let deleted = imagetool(&server, &["--objects", &objects, "delete", "v.1"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let collected = imagetool(&server, &["--objects", &objects, "delete-unreferenced"]);
    assert_eq!(collected.code, 0, "{}", collected.stderr);
    assert!(
        collected
            .stdout
            .starts_with(&format!("deleted {stored} unreferenced objects")),
        "{}",
        collected.stdout
    );
    assert!(blob.ids().await.unwrap().is_empty());
}
