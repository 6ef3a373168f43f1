//! Fetching objects from the fleet's object bucket on a real nats-server:
//! every object verified, corrupt ones refused, content already on the
//! machine copied instead of fetched.

use std::fs;
use std::sync::Arc;
use std::time::Instant;

use crate::update_support::*;
use bytes::Bytes;
use dom_bus::{Bus, ConnectArgs};
use dom_model::{Filter, ObjectId};
use dom_scan::RateLimit;
use dom_store::{ContentStore, NatsStore};
use dom_tests::NatsServer;
use subd::fetch::{self, fetch, FetchError, FetchOptions, FetchProgress};

async fn store(server: &NatsServer) -> NatsStore {
    let args = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&args, "subd-test").await.unwrap();
    NatsStore::open(&bus).await.unwrap()
}

/// Uploads every file of a source tree, as `imagetool add` would.
async fn upload(store: &NatsStore, src: &Source) {
    upload_forging(store, src, None).await
}

/// As [`upload`], storing `forged`'s content (of the same size) under the
/// id of the file whose content is `forged.0`.
async fn upload_forging(store: &NatsStore, src: &Source, forged: Option<(&[u8], &[u8])>) {
    let forged = forged.map(|(real, evil)| (ObjectId::of(real), evil));
    for entry in src.image().entries {
        if let dom_model::Inode::File { object, .. } = entry.inode {
            let content = match forged {
                Some((id, evil)) if id == object => evil.to_vec(),
                _ => fs::read(src.root().join(entry.path.trim_start_matches('/'))).unwrap(),
            };
            store.put(object, Bytes::from(content)).await.unwrap();
        }
    }
}

#[tokio::test]
async fn fetched_objects_are_installed() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    for i in 0..50 {
        src.file(&format!("/usr/share/doc/f{i}"), &format!("document {i}\n"));
    }
    src.file("/usr/lib/big", &"x".repeat(3 << 20));
    upload(&store, &src).await;

    let m = Machine::new();
    let image = src.image();
    let plan = m.plan(&image, None);
    assert_eq!(plan.fetch.len(), 51);
    let progress = FetchProgress::default();
    let stats = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!((stats.objects, stats.reused), (51, 0));
    assert_eq!(stats.bytes, plan.fetch_bytes());
    assert_eq!(
        progress.objects.load(std::sync::atomic::Ordering::Relaxed),
        51
    );

    let out = m.apply(&plan);
    assert!(out.ok, "{:?}", out.error);
    assert!(m.plan(&image, None).is_empty());
    assert_eq!(read(&m.root, "/usr/share/doc/f7"), "document 7\n");

    // A second fetch for the same plan finds nothing to do.
    let again = fetch(
        &store,
        &m.cache,
        &m.root,
        &m.plan(&image, None),
        &FetchOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(again, Default::default());
}

#[tokio::test]
async fn a_corrupt_object_is_refused_and_never_installed() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    src.file("/etc/passwd", "root:x:0:0\n")
        .file("/etc/motd", "hello\n");
    // The bucket holds other content under /etc/passwd's id.
    let good = ObjectId::of(b"root:x:0:0\n");
    store
        .put(good, Bytes::from_static(b"evil:x:0:0\n"))
        .await
        .unwrap();
    store
        .put(ObjectId::of(b"hello\n"), Bytes::from_static(b"hello\n"))
        .await
        .unwrap();

    let m = Machine::new();
    write(&m.root, "/etc/passwd", "root:x:0:0:old\n");
    let plan = m.plan(&src.image(), None);
    let err = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Corrupt { id, .. } if id == good),
        "{err}"
    );
    assert!(err.to_string().contains(&good.to_hex()));
    assert!(!m.cache.contains(&good));

    let out = m.apply(&plan);
    assert!(!out.ok);
    assert_eq!(read(&m.root, "/etc/passwd"), "root:x:0:0:old\n");
    assert!(!m.path("/etc/motd").exists());
}

#[tokio::test]
async fn a_missing_object_is_named() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    src.file("/etc/motd", "not uploaded\n");
    let m = Machine::new();
    let plan = m.plan(&src.image(), None);
    let err = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap_err();
    let id = ObjectId::of(b"not uploaded\n");
    assert!(matches!(err, FetchError::Missing(i) if i == id), "{err}");
    assert_eq!(err.to_string(), format!("object {id} is not in the store"));
}

/// What is logged while a test runs, for asserting on.
#[derive(Clone, Default)]
struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn many_missing_objects_are_one_error_that_counts_them_and_no_log_flood() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    for i in 0..50 {
        src.file(&format!("/data/f{i:02}"), &format!("not uploaded {i}\n"));
    }
    let m = Machine::new();
    let plan = m.plan(&src.image(), None);
    let logged = Logged::default();
    let writer = logged.clone();
    let _guard = tracing_subscriber::util::SubscriberInitExt::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .finish(),
    );
    let err = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Several { others: 49, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("is not in the store; 49 more objects not fetched"),
        "{message}"
    );
    // The caller logs this one error; the fetch adds no line per object.
    let logged = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logged, "", "the fetch logged: {logged}");
}

#[tokio::test]
async fn content_already_on_the_machine_is_copied_not_fetched() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let m = Machine::new();
    write(&m.root, "/opt/old/app.jar", "the application\n");
    let src = Source::new();
    src.file("/opt/new/app.jar", "the application\n");
    let image = src.image();
    let plan = m.plan(&image, Some(&Filter::empty()));
    assert_eq!(plan.reuse.len(), 1);

    // The bucket is empty: everything must come from the machine.
    let stats = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap();
    assert_eq!((stats.objects, stats.reused), (0, 1));
    let out = m.apply(&plan);
    assert!(out.ok, "{:?}", out.error);
    assert_eq!(read(&m.root, "/opt/new/app.jar"), "the application\n");
    assert!(!m.path("/opt/old").exists());
}

#[tokio::test]
async fn a_machine_file_changed_since_the_scan_is_fetched_instead() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let m = Machine::new();
    write(&m.root, "/opt/old/app.jar", "the application\n");
    let src = Source::new();
    src.file("/opt/new/app.jar", "the application\n");
    upload(&store, &src).await;
    let plan = m.plan(&src.image(), None);
    assert_eq!(plan.reuse.len(), 1);
    write(&m.root, "/opt/old/app.jar", "edited since\n");

    let stats = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap();
    assert_eq!((stats.objects, stats.reused), (1, 0));
    assert!(m.apply(&plan).ok);
    assert_eq!(read(&m.root, "/opt/new/app.jar"), "the application\n");
}

#[tokio::test]
async fn the_rate_limit_holds() {
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    for i in 0..8 {
        src.file(&format!("/data/{i}"), &i.to_string().repeat(256 << 10));
    }
    upload(&store, &src).await;
    let m = Machine::new();
    let plan = m.plan(&src.image(), None);
    let options = FetchOptions {
        rate: Some(Arc::new(RateLimit::new(4 << 20))),
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let stats = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &options,
        &FetchProgress::default(),
    )
    .await
    .unwrap();
    assert_eq!(stats.bytes, 2 << 20);
    // 2 MiB at 4 MiB/s is 500 ms, less the bursts the limit allows.
    assert!(
        started.elapsed().as_millis() >= 350,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_whole_image_read_in_stream_order_is_checked_object_by_object() {
    // Enough objects that the store reads them in bulk (dom_store's
    // bulk.rs): what arrives that way is checked as every read is.
    let server = NatsServer::start().unwrap();
    let store = store(&server).await;
    let src = Source::new();
    for i in 0..2000 {
        src.file(&format!("/usr/share/f{i}"), &format!("file {i}\n"));
    }
    src.file("/usr/lib/big", &"y".repeat(3 << 20));
    // Other content of the same size under file 1000's id.
    let forged = ObjectId::of(b"file 1000\n");
    upload_forging(&store, &src, Some((b"file 1000\n", b"evil 1000\n"))).await;

    let m = Machine::new();
    write(&m.root, "/usr/share/f5", "file 5\n");
    let plan = m.plan(&src.image(), None);
    let err = fetch(
        &store,
        &m.cache,
        &m.root,
        &plan,
        &FetchOptions::default(),
        &FetchProgress::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Corrupt { id, .. } if id == forged),
        "{err}"
    );
    assert!(!m.cache.contains(&forged));
    // Everything else came, once each.
    let missing = fetch::missing(&plan, &m.cache);
    assert_eq!(
        missing.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![forged]
    );
}
