//! Separation of powers, against a real nats-server running the
//! configuration `ops/secure/domsecure` writes: TLS only, one nkey user
//! per role. Each role can do its job, every attempt beyond it fails at
//! once with a clear error, and a refused attempt changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use dom_bus::{Bus, ConnectArgs, FleetKind, FleetUpdate};
use dom_model::{DesiredState, Event, MdbRecord, ObjectId, StateReport};
use dom_store::{ContentStore, NatsStore};
use dom_tests::fixtures::{image_name as name, sparse_record as record};
use dom_tests::{eventually, repo_root, workspace_binary, NatsServer};
use futures::StreamExt;

/// How long any one condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(60);

/// The domsetup binary the script runs.
fn domsetup() -> PathBuf {
    workspace_binary("domsetup")
}

/// Runs `ops/secure/domsecure --dir DIR ARGS`; panics with its output
/// when it fails.
pub(crate) fn domsecure(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(repo_root().join("ops/secure/domsecure"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("DOMSETUP", domsetup())
        .output()
        .expect("domsecure runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "domsecure {args:?}: {text}");
    text
}

/// A secured server: certificates, credentials and configuration made by
/// the script, hosts `web1` and `web1.example.com` added.
struct Secure {
    dir: tempfile::TempDir,
    server: NatsServer,
}

impl Secure {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        domsecure(dir.path(), &["init", "--monitor", "off"]);
        for host in ["web1", "web1.example.com"] {
            domsecure(dir.path(), &["add-host", host]);
        }
        let server = NatsServer::start_with_config(&dir.path().join("nats.conf")).unwrap();
        Self { dir, server }
    }

    /// Connection options of a credential (`operator`, `subd-web1`...),
    /// over TLS.
    fn args(&self, credential: &str) -> ConnectArgs {
        ConnectArgs {
            server: self.server.tls_url(),
            nkey: Some(self.dir.path().join(format!("creds/{credential}.nk"))),
            tls_ca: Some(self.dir.path().join("ca/ca.pem")),
            ..ConnectArgs::default()
        }
    }

    async fn bus(&self, credential: &str) -> Bus {
        Bus::connect(&self.args(credential), credential)
            .await
            .unwrap_or_else(|e| panic!("{credential} connects: {e}"))
    }

    /// The operator's connection, with the streams set up.
    async fn operator(&self) -> Bus {
        let bus = self.bus("operator").await;
        bus.ensure_streams()
            .await
            .expect("the operator sets up streams");
        bus
    }
}

fn desired(host: &str, image: &str) -> DesiredState {
    DesiredState::for_image(host, &record(image))
}

fn event(host: &str, kind: &str) -> Event {
    Event::new(host, kind, "2026-11-26T09:00:01Z", "test")
}

/// Asserts `result` is the permission error for `subject`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>, subject: &str) {
    match result {
        Ok(value) => panic!("{subject}: allowed ({value:?})"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with("permission denied: this credential may not")
                    && message.contains(subject)
                    && !message.contains('\n'),
                "{subject}: {message}"
            );
        }
    }
}

/// How many messages a stream holds, read by the operator.
async fn messages(operator: &Bus, stream: &str) -> u64 {
    let mut stream = operator.js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The operator's MDB record: `host` requires `image`.
async fn require(operator: &Bus, host: &str, image: &str) {
    let record = MdbRecord::new(host).requiring(name(image));
    operator
        .publish_mdb(host, record.encode().into())
        .await
        .unwrap();
}

async fn next_update<S>(feed: &mut std::pin::Pin<&mut S>) -> FleetUpdate
where
    S: futures::Stream<Item = Result<FleetUpdate, dom_bus::BusError>>,
{
    match tokio::time::timeout(DEADLINE, feed.next()).await {
        Ok(Some(Ok(update))) => update,
        Ok(Some(Err(e))) => panic!("fleet feed: {e}"),
        Ok(None) => panic!("fleet feed ended"),
        Err(_) => panic!("fleet feed: nothing within {DEADLINE:?}"),
    }
}

#[tokio::test]
async fn plain_text_to_a_tls_server_is_refused_with_advice() {
    let secure = Secure::start();
    let args = ConnectArgs {
        server: secure.server.url(),
        tls_ca: None,
        ..secure.args("operator")
    };
    let error = Bus::connect(&args, "plain").await.err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains(&secure.server.url())
            && message.contains("--tls-ca")
            && !message.contains('\n'),
        "{message}"
    );
    // With the CA, the same credential is in.
    secure.bus("operator").await;
}

#[tokio::test]
async fn without_a_credential_the_server_says_so() {
    let secure = Secure::start();
    let args = ConnectArgs {
        nkey: None,
        ..secure.args("operator")
    };
    let message = Bus::connect(&args, "anonymous")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("--nkey"), "{message}");
}

#[tokio::test]
async fn a_missing_stream_is_named_for_roles_that_cannot_create_it() {
    let secure = Secure::start();
    for credential in ["builder", "dominator", "viewer"] {
        let bus = secure.bus(credential).await;
        let result = if credential == "builder" {
            bus.ensure_image_streams().await
        } else {
            bus.ensure_streams().await
        };
        let message = result.expect_err("no streams yet").to_string();
        assert_eq!(
            message,
            "stream DOM_IMAGES does not exist; an operator must create it: \
             run `domsetup streams` with the operator's credentials",
            "{credential}"
        );
    }
    // Once the operator has, every role gets on with its work.
    secure.operator().await;
    secure
        .bus("builder")
        .await
        .ensure_image_streams()
        .await
        .unwrap();
    secure
        .bus("dominator")
        .await
        .ensure_streams()
        .await
        .unwrap();
    secure.bus("viewer").await.ensure_streams().await.unwrap();
}

#[tokio::test]
async fn an_agent_writes_only_its_own_state_and_events() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let dominator = secure.bus("dominator").await;
    dominator
        .publish_desired(&desired("web1", "sparse.0"))
        .await
        .unwrap();
    dominator
        .publish_desired(&desired("web2", "sparse.0"))
        .await
        .unwrap();
    let subd = secure.bus("subd-web1").await;

    // Its own job.
    subd.publish_state(&StateReport::new("web1")).await.unwrap();
    for kind in dom_bus::roles::AGENT_EVENT_KINDS {
        subd.publish_event(&event("web1", kind)).await.unwrap();
    }
    let own = subd
        .desired("web1")
        .await
        .unwrap()
        .expect("its desired state");
    assert_eq!(own.state.unwrap().image.as_str(), "sparse.0");

    // Nothing more.
    assert_denied(
        subd.publish_desired(&desired("web1", "evil.0")).await,
        "dom.desired.web1",
    );
    assert_denied(
        subd.publish_state(&StateReport::new("web2")).await,
        "dom.state.web2",
    );
    // A host whose name starts with this one's is another host.
    assert_denied(
        subd.publish_state(&StateReport::new("web1.example.com"))
            .await,
        "dom.state.web1.example.com",
    );
    assert_denied(
        subd.publish_event(&event("web1.example.com", Event::UPDATE))
            .await,
        "dom.event.web1.example.com.update",
    );
    assert_denied(
        subd.publish_event(&event("web1", "custom")).await,
        "dom.event.web1.custom",
    );
    assert_denied(
        subd.publish_image(&record("evil.0")).await,
        "dom.image.evil.0",
    );
    assert_denied(
        subd.publish_mdb("web1", Bytes::from_static(b"{}")).await,
        "dom.mdb.web1",
    );
    assert_denied(
        subd.publish_ctl("updates", Bytes::from_static(b"{}")).await,
        "dom.ctl.updates",
    );
    assert_denied(
        subd.desired("web2").await,
        "$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web2",
    );
    assert_denied(
        subd.desired("web1.example.com").await,
        "$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web1.example.com",
    );
    assert_denied(
        subd.follow_desired("web2", None).await.map(|_| ()),
        "$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web2",
    );
    let store = NatsStore::open(&subd).await.unwrap();
    assert_denied(
        store
            .put(ObjectId::of(b"evil"), Bytes::from_static(b"evil"))
            .await,
        "$O.dom-objects.",
    );
    // No stream may be read whole, created, purged or deleted.
    assert_denied(
        subd.guarded(
            |s| s.starts_with("$JS.API."),
            subd.js.delete_stream("DOM_DESIRED"),
        )
        .await
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        "$JS.API.STREAM.DELETE.DOM_DESIRED",
    );
    let purge = async {
        subd.js
            .get_stream_no_info("DOM_STATE")
            .await
            .unwrap()
            .purge()
            .await
    };
    assert_denied(
        subd.guarded(|s| s.starts_with("$JS.API."), purge)
            .await
            .map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        "$JS.API.STREAM.PURGE.DOM_STATE",
    );
    assert_denied(
        subd.guarded(
            |s| s.starts_with("$JS.API."),
            subd.js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "EVIL".into(),
                    subjects: vec!["evil.>".into()],
                    ..Default::default()
                }),
        )
        .await
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        "$JS.API.STREAM.CREATE.EVIL",
    );

    // And nothing changed.
    assert_eq!(messages(&operator, "DOM_DESIRED").await, 2);
    assert_eq!(messages(&operator, "DOM_STATE").await, 1);
    assert_eq!(
        messages(&operator, "DOM_EVENTS").await,
        dom_bus::roles::AGENT_EVENT_KINDS.len() as u64
    );
    assert_eq!(messages(&operator, "DOM_IMAGES").await, 0);
    assert_eq!(messages(&operator, "DOM_MDB").await, 0);
    assert_eq!(messages(&operator, "DOM_CTL").await, 0);
    assert_eq!(messages(&operator, "OBJ_dom-objects").await, 0);
    let web1 = operator.desired("web1").await.unwrap().unwrap();
    assert_eq!(web1.state.unwrap().image.as_str(), "sparse.0");
}

/// Adds the user guide's tree as sparse image `sparse.0`, as `bus`.
async fn add_user_guide_image(bus: &Bus) {
    let request = imagetool::add::AddRequest::parse(
        "sparse.0",
        &repo_root().join("ops/examples/path"),
        "",
        "",
        None,
    )
    .unwrap()
    .with_hash_cache(None);
    imagetool::add::add(bus, request, false).await.unwrap();
}

#[tokio::test]
async fn a_builder_adds_images_and_nothing_else() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let builder = secure.bus("builder").await;

    add_user_guide_image(&builder).await;
    assert!(builder.image_record(&name("sparse.0")).await.is_ok());
    let objects = messages(&operator, "OBJ_dom-objects").await;
    assert!(objects > 0);

    assert_denied(
        builder.publish_desired(&desired("web1", "sparse.0")).await,
        "dom.desired.web1",
    );
    assert_denied(
        builder
            .publish_mdb(
                "web1",
                Bytes::from_static(br#"{"RequiredImage":"sparse.0"}"#),
            )
            .await,
        "dom.mdb.web1",
    );
    assert_denied(
        builder
            .publish_ctl("updates", Bytes::from_static(b"{}"))
            .await,
        "dom.ctl.updates",
    );
    assert_denied(
        builder.publish_state(&StateReport::new("web1")).await,
        "dom.state.web1",
    );
    assert_denied(
        builder.desired("web1").await,
        "$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web1",
    );

    // Nor may a builder or an agent delete objects, even unreferenced
    // ones, and trying changes nothing.
    let agent = secure.bus("subd-web1").await;
    builder
        .delete_image(&dom_model::Tombstone {
            v: 1,
            name: name("sparse.0"),
            deleted: true,
            deleted_at: "2026-12-06T00:00:00Z".into(),
            by: "builder".into(),
        })
        .await
        .unwrap();
    for bus in [&builder, &agent] {
        let refused =
            imagetool::usage::delete_unreferenced(bus, false, None, &mut Vec::new()).await;
        let error = refused.expect_err("a collection").to_string();
        assert!(error.starts_with("permission denied"), "{error}");
    }
    assert_eq!(messages(&operator, "OBJ_dom-objects").await, objects);

    assert_eq!(messages(&operator, "DOM_DESIRED").await, 0);
    assert_eq!(messages(&operator, "DOM_MDB").await, 0);
    assert_eq!(messages(&operator, "DOM_CTL").await, 0);
    assert_eq!(messages(&operator, "DOM_STATE").await, 0);
    assert_eq!(messages(&operator, "DOM_IMAGES").await, 2);
    assert_eq!(messages(&operator, "OBJ_dom-objects").await, objects);
}

#[tokio::test]
async fn a_viewer_reads_everything_and_writes_nothing() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    operator.publish_image(&record("sparse.0")).await.unwrap();
    require(&operator, "web1", "sparse.0").await;
    secure
        .bus("subd-web1")
        .await
        .publish_state(&StateReport::new("web1"))
        .await
        .unwrap();
    let viewer = secure.bus("viewer").await;

    assert_eq!(viewer.images().await.unwrap().len(), 1);
    assert_eq!(
        viewer.last_per_subject(FleetKind::Mdb).await.unwrap().len(),
        1
    );
    assert!(viewer.state("web1").await.unwrap().is_some());
    // A dashboard follows the fleet without a consumer.
    let feed = viewer.watch_fleet(&[FleetKind::Mdb]).await.unwrap();
    let mut feed = std::pin::pin!(feed);
    assert!(matches!(next_update(&mut feed).await, FleetUpdate::Message(m) if m.name == "web1"));
    assert!(matches!(
        next_update(&mut feed).await,
        FleetUpdate::CaughtUp
    ));
    operator
        .publish_mdb("web2", MdbRecord::new("web2").encode().into())
        .await
        .unwrap();
    assert!(matches!(next_update(&mut feed).await, FleetUpdate::Message(m) if m.name == "web2"));

    assert_denied(
        viewer.publish_image(&record("evil.0")).await,
        "dom.image.evil.0",
    );
    assert_denied(
        viewer.publish_mdb("web1", Bytes::from_static(b"")).await,
        "dom.mdb.web1",
    );
    assert_denied(
        viewer
            .publish_ctl("updates", Bytes::from_static(b"{}"))
            .await,
        "dom.ctl.updates",
    );
    assert_denied(
        viewer.publish_desired(&desired("web1", "sparse.0")).await,
        "dom.desired.web1",
    );
    assert_denied(
        viewer.publish_state(&StateReport::new("web1")).await,
        "dom.state.web1",
    );
    assert_denied(
        viewer.publish_event(&event("web1", Event::UPDATE)).await,
        "dom.event.web1.update",
    );
    let store = NatsStore::open(&viewer).await.unwrap();
    assert_denied(
        store
            .put(ObjectId::of(b"evil"), Bytes::from_static(b"evil"))
            .await,
        "$O.dom-objects.",
    );

    assert_eq!(messages(&operator, "DOM_IMAGES").await, 1);
    assert_eq!(messages(&operator, "DOM_MDB").await, 2);
    assert_eq!(messages(&operator, "DOM_STATE").await, 1);
    assert_eq!(messages(&operator, "DOM_DESIRED").await, 0);
    assert_eq!(messages(&operator, "DOM_EVENTS").await, 0);
    assert_eq!(messages(&operator, "DOM_CTL").await, 0);
    assert_eq!(messages(&operator, "OBJ_dom-objects").await, 0);
}

/// Rotating without a gap: a second credential of a role, added by hand
/// as `users/ROLE-next.conf` and gathered by `domsecure reload`, works at
/// once with the role's rights, while the first still does.
#[tokio::test]
async fn a_second_credential_of_a_role_is_taken_on_reload() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let dir = secure.dir.path();
    let entry = Command::new(domsetup())
        .args(["credential", "builder", "--seed"])
        .arg(dir.join("creds/builder-next.nk"))
        .output()
        .unwrap();
    assert!(entry.status.success());
    std::fs::write(dir.join("users/builder-next.conf"), &entry.stdout).unwrap();
    let output = domsecure(dir, &["reload"]);
    assert!(output.contains("reloaded the server"), "{output}");
    let next = eventually("the second credential to be accepted", || async {
        Bus::connect(&secure.args("builder-next"), "builder-next")
            .await
            .ok()
    })
    .await;
    next.publish_image(&record("next.0")).await.unwrap();
    assert_denied(
        next.publish_desired(&desired("web1", "next.0")).await,
        "dom.desired.web1",
    );
    secure
        .bus("builder")
        .await
        .publish_image(&record("first.0"))
        .await
        .unwrap();
    assert_eq!(messages(&operator, "DOM_IMAGES").await, 2);
}

/// The streams whose messages only their own roles may write.
const GUARDED_STREAMS: [&str; 6] = [
    "DOM_DESIRED",
    "DOM_MDB",
    "DOM_CTL",
    "DOM_STATE",
    "DOM_IMAGES",
    "DOM_EVENTS",
];

async fn guarded_counts(operator: &Bus) -> Vec<u64> {
    let mut out = Vec::new();
    for stream in GUARDED_STREAMS {
        out.push(messages(operator, stream).await);
    }
    out
}

/// The server answers a JetStream request on whatever reply subject the
/// asker names, and a consumer delivers wherever its creator says; it
/// checks neither against the asker's permissions. Builders, agents and
/// viewers live in accounts of their own that import no consumer
/// requests, so they cannot use either to have the server write into a
/// stream for them: not even a builder that stored a forged desired state
/// as an object and asks for it to be answered on `dom.desired.web1`.
#[tokio::test]
async fn no_credential_has_the_server_write_into_a_stream_for_it() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let builder = secure.bus("builder").await;
    let forged = Bytes::from(desired("web1", "evil.0").encode());
    NatsStore::open(&builder)
        .await
        .unwrap()
        .put(ObjectId::of(&forged), forged.clone())
        .await
        .unwrap();
    secure
        .bus("dominator")
        .await
        .publish_desired(&desired("web1", "base.0"))
        .await
        .unwrap();
    let objects = operator.subjects.object_stream();
    let object_api = format!("$JS.API.DIRECT.GET.{objects}");
    let first_chunk = serde_json::json!({
        "seq": 1,
        "next_by_subj": format!("{}>", operator.subjects.object_chunk_prefix()),
    })
    .to_string();
    let targets = [
        "dom.desired.web1",
        "dom.mdb.web1",
        "dom.ctl.updates",
        "dom.state.web2",
        "dom.image.evil.1",
        "dom.event.web2.update",
    ];
    let before = guarded_counts(&operator).await;
    let attempts = [
        ("builder", object_api.clone(), first_chunk.clone()),
        ("subd-web1", object_api.clone(), first_chunk.clone()),
        (
            "subd-web1",
            "$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web1".to_string(),
            String::new(),
        ),
        ("viewer", object_api.clone(), first_chunk.clone()),
    ];
    for (credential, request, payload) in attempts {
        let bus = secure.bus(credential).await;
        for target in targets {
            bus.client
                .publish_with_reply(request.clone(), target, payload.clone().into())
                .await
                .unwrap();
        }
        // A push consumer over the objects, delivering onto a desired
        // state's subject.
        let create = serde_json::json!({
            "stream_name": objects,
            "config": {
                "deliver_subject": "dom.desired.web1",
                "deliver_policy": "all",
                "ack_policy": "none",
            },
        });
        let created = bus
            .guarded(
                |s| s.starts_with("$JS.API.CONSUMER."),
                bus.client.request(
                    format!("$JS.API.CONSUMER.CREATE.{objects}"),
                    create.to_string().into(),
                ),
            )
            .await;
        assert!(
            !matches!(created, Ok(Ok(_))),
            "{credential} created a consumer"
        );
        // The same request answered to the asker: the ones before it on
        // this connection have been handled.
        let answer = bus
            .client
            .request(request.clone(), payload.clone().into())
            .await
            .unwrap();
        assert!(!answer.payload.is_empty(), "{credential}: {request}");
    }
    // The control: the operator, inside the streams' account, can do it,
    // and the test sees it.
    operator
        .client
        .publish_with_reply(object_api, "dom.mdb.web9", first_chunk.into())
        .await
        .unwrap();
    eventually("the operator's copy", || async {
        (messages(&operator, "DOM_MDB").await > before[1]).then_some(())
    })
    .await;
    let mut expected = before;
    expected[1] += 1;
    assert_eq!(guarded_counts(&operator).await, expected);
    // The agent still reads the dominator's desired state.
    let subd = secure.bus("subd-web1").await;
    let read = subd.desired("web1").await.unwrap().unwrap();
    assert_eq!(read.state.unwrap().image.as_str(), "base.0");
}

/// The user guide over TLS, each part with its own credential: imagetool
/// as the builder, the MDB record as the operator, the dominator as the
/// dominator, and the agent of a machine added while the server runs.
#[tokio::test]
async fn the_user_guide_works_with_each_role() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let viewer = secure.bus("viewer").await;

    let builder = secure.bus("builder").await;
    add_user_guide_image(&builder).await;

    let settings = dominator::Settings {
        debounce: Duration::from_millis(20),
        ..dominator::Settings::default()
    };
    let dominator = dominator::Dominator::start(secure.bus("dominator").await, settings, None)
        .await
        .unwrap();

    // The dominator is following the fleet before a machine is added.
    require(&operator, "web1", "sparse.0").await;
    eventually("the dominator to follow the fleet", || async {
        viewer.desired("web1").await.ok().flatten()
    })
    .await;

    // A machine added while the server runs: one command, and its
    // credential works without a restart. The server reloads its
    // accounts; what the dominator follows goes on.
    let host = "db1.example.com";
    let output = domsecure(secure.dir.path(), &["add-host", host]);
    assert!(output.contains("reloaded the server"), "{output}");
    let credential = format!("subd-{host}");
    eventually("the new credential to be accepted", || async {
        Bus::connect(&secure.args(&credential), "probe").await.ok()
    })
    .await;

    require(&operator, host, "sparse.0").await;

    let machine = tempfile::tempdir().unwrap();
    let root = machine.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut config = subd::Config::new(host, &root).uncapped();
    config.connect = secure.args(&credential);
    config.service_command = subd::services::ServiceCommand::parse("true").unwrap();
    config.reboot_command = None;
    let agent = subd::Agent::start(config).unwrap();

    let report = eventually("the machine to carry sparse.0", || async {
        viewer
            .state(host)
            .await
            .ok()
            .flatten()
            .filter(|r| r.compliant && r.image.as_deref() == Some("sparse.0"))
    })
    .await;
    assert_eq!(report.host, host);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/ssh/sshd.conf")).unwrap(),
        std::fs::read_to_string(repo_root().join("ops/examples/path/etc/ssh/sshd.conf")).unwrap()
    );
    let events = viewer.events(host).await.unwrap();
    assert!(events.iter().any(|e| e.kind == Event::UPDATE), "{events:?}");
    agent.stop().await;

    // Stopped cleanly, the dominator may free its lease for a standby.
    assert!(viewer.lease_holder(dominator::herd::LEASE).await.is_some());
    dominator.stop().await;
    assert_eq!(viewer.lease_holder(dominator::herd::LEASE).await, None);
}

/// Runs the real imagetool binary with `credential`'s nkey, over TLS.
async fn imagetool_as(secure: &Secure, credential: &str, args: &[&str]) -> dom_tests::Run {
    let connect = secure.args(credential);
    let mut command = Command::new(workspace_binary("imagetool"));
    command
        .arg("--server")
        .arg(&connect.server)
        .arg("--nkey")
        .arg(connect.nkey.unwrap())
        .arg("--tls-ca")
        .arg(connect.tls_ca.unwrap())
        .arg("--quiet")
        .args(args)
        .env_remove("DOM_SERVER")
        .env_remove("RUST_LOG");
    let output = tokio::task::spawn_blocking(move || command.output().expect("run imagetool"));
    dom_tests::Run::from(output.await.unwrap())
}

#[tokio::test]
async fn only_an_operator_captures_a_machine() {
    let secure = Secure::start();
    let operator = secure.operator().await;
    let machine = tempfile::tempdir().unwrap();
    let root = machine.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), "golden\n").unwrap();
    let mut config = subd::Config::new("web1", &root).uncapped();
    config.connect = secure.args("subd-web1");
    config.service_command = subd::services::ServiceCommand::parse("true").unwrap();
    config.reboot_command = None;
    let agent = subd::Agent::start(config).unwrap();
    eventually("web1 scanned", || async {
        operator
            .state("web1")
            .await
            .ok()
            .flatten()
            .filter(|r| r.generation > 0)
    })
    .await;

    // A builder may add images, but not ask an agent for its machine.
    let error = imagetool_as(&secure, "builder", &["adds", "golden.b", "web1"])
        .await
        .one_line_error();
    assert_eq!(
        error,
        "imagetool: permission denied: this credential may not publish to dom.capture.web1"
    );
    // Nor may another machine's agent.
    let other = secure.bus("subd-web1.example.com").await;
    let request = dom_bus::capture::CaptureRequest {
        v: dom_bus::capture::CAPTURE_VERSION,
        session: "s".into(),
        by: "web1.example.com".into(),
        ask: dom_bus::capture::Ask::Tree {
            offset: 0,
            manifest: None,
        },
    };
    let answers = other.capture_answers().await.unwrap();
    assert_denied(
        other.ask_capture(&answers, "web1", &request).await,
        "dom.capture.web1",
    );
    assert_eq!(messages(&operator, "DOM_IMAGES").await, 0);

    // The operator may, across the accounts; the agent answers.
    let out = imagetool_as(&secure, "operator", &["adds", "golden.0", "web1"])
        .await
        .ok();
    assert!(
        out.starts_with("added golden.0 from web1: 1 files,")
            && out.contains(" 1 objects uploaded"),
        "{out}"
    );
    assert_eq!(messages(&operator, "DOM_IMAGES").await, 1);
    let events = eventually("the capture event", || async {
        let events = operator.events("web1").await.ok()?;
        events.into_iter().find(|e| e.kind == Event::CAPTURE)
    })
    .await;
    assert_eq!(events.details["objects"], 1, "{events:?}");
    agent.stop().await;
}
