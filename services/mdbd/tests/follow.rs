//! mdbd against a real nats-server: only changes are published, removals
//! included, and a bad file publishes nothing until it is fixed.

use std::path::Path;
use std::time::Duration;

use dom_bus::{Bus, FleetKind};
use dom_model::{ImageName, MdbRecord};
use dom_tests::connect;
use dom_tests::NatsServer;
use mdbd::Watcher;

async fn mdb_sequence(bus: &Bus) -> u64 {
    let mut stream = bus.js.get_stream(bus.subjects.mdb_stream()).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// The MDB on the bus: host and required image, removals left out.
async fn mdb(bus: &Bus) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for message in bus.last_per_subject(FleetKind::Mdb).await.unwrap() {
        if let Some(record) = MdbRecord::decode(&message.name, &message.payload).unwrap() {
            let image = record
                .required_image
                .map(|i| i.to_string())
                .unwrap_or_default();
            out.push((message.name, image));
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(h, i)| (h.to_string(), i.to_string()))
        .collect()
}

/// Replaces the file atomically, as the program that owns it would.
fn replace(path: &Path, content: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, content).unwrap();
    std::fs::rename(&new, path).unwrap();
}

#[tokio::test]
async fn publishes_only_changes_including_removals() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    for (host, image) in [("web0", "sparse.0"), ("web1", "sparse.0")] {
        let record = MdbRecord::new(host).requiring(ImageName::parse(image).unwrap());
        bus.publish_mdb(host, record.encode().into()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    replace(
        &file,
        r#"[{"Hostname":"web1","RequiredImage":"sparse.0","IpAddress":"10.0.0.1"},
            {"Hostname":"web2","RequiredImage":"sparse.1"}]"#,
    );

    let start = mdb_sequence(&bus).await;
    let mut watcher = Watcher::new(bus.clone(), file.clone(), Duration::from_secs(1))
        .await
        .unwrap();
    watcher.check().await;
    // web2 added, web0 removed; web1 unchanged.
    assert_eq!(mdb_sequence(&bus).await, start + 2);
    assert_eq!(
        mdb(&bus).await,
        pairs(&[("web1", "sparse.0"), ("web2", "sparse.1")])
    );
    // Nothing changed, nothing published.
    watcher.check().await;
    assert_eq!(mdb_sequence(&bus).await, start + 2);

    replace(&file, r#"[{"Hostname":"web2","RequiredImage":"sparse.2"}]"#);
    watcher.check().await;
    assert_eq!(mdb_sequence(&bus).await, start + 4);
    assert_eq!(mdb(&bus).await, pairs(&[("web2", "sparse.2")]));

    // Bad files publish nothing, and say why.
    let progress = watcher.progress();
    for bad in [
        "[{\"Hostname\":\"web2\",",
        "",
        r#"[{"Hostname":"web3"},{"Hostname":"web3"}]"#,
        r#"[{"Hostname":"web3","RequiredImage":7}]"#,
    ] {
        replace(&file, bad);
        watcher.check().await;
        assert_eq!(mdb_sequence(&bus).await, start + 4, "{bad:?}");
        let error = progress.borrow().error.clone().expect("an error");
        assert!(!error.contains('\n'), "{error}");
    }
    // Until it is fixed.
    replace(
        &file,
        r#"{"Machines":[{"Hostname":"web2","RequiredImage":"sparse.2"},{"Hostname":"web3"}]}"#,
    );
    watcher.check().await;
    assert_eq!(mdb_sequence(&bus).await, start + 5);
    assert!(progress.borrow().error.is_none());

    // A restarted mdbd with the same file publishes nothing.
    let mut again = Watcher::new(bus.clone(), file.clone(), Duration::from_secs(1))
        .await
        .unwrap();
    again.check().await;
    assert_eq!(mdb_sequence(&bus).await, start + 5);
}

#[tokio::test]
async fn follows_the_file_on_its_own() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    let watcher = Watcher::new(bus.clone(), file.clone(), Duration::from_millis(20))
        .await
        .unwrap();
    let mut progress = watcher.progress();
    let task = tokio::spawn(watcher.run());
    let deadline = Duration::from_secs(20);

    // No file yet: it waits.
    tokio::time::timeout(deadline, progress.wait_for(|p| p.error.is_some()))
        .await
        .unwrap()
        .unwrap();
    replace(&file, r#"[{"Hostname":"web1","RequiredImage":"sparse.0"}]"#);
    tokio::time::timeout(
        deadline,
        progress.wait_for(|p| p.published == 1 && p.in_step),
    )
    .await
    .unwrap()
    .unwrap();
    replace(&file, "[]");
    tokio::time::timeout(
        deadline,
        progress.wait_for(|p| p.published == 2 && p.in_step),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(mdb(&bus).await.is_empty());
    task.abort();
}
