//! Connecting to a fixture's server, and waiting for what the fleet
//! publishes there.

use dom_bus::{Bus, ConnectArgs};
use dom_model::{DesiredState, MdbRecord};

use crate::fixtures::{eventually, image_name};
use crate::NatsServer;

/// A connection to `server` as `name`, without touching its streams (a
/// test of what happens when they are missing needs that).
pub async fn connect_bare(server: &NatsServer, name: &str) -> Bus {
    let args = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    Bus::connect(&args, name).await.expect("connects")
}

/// A connection to `server`, with the fleet's streams and bucket made.
pub async fn connect(server: &NatsServer) -> Bus {
    let bus = connect_bare(server, "tests").await;
    bus.ensure_streams().await.expect("streams");
    bus
}

/// Waits for `host`'s stored desired state to satisfy `check`; `what`
/// says what is waited for.
pub async fn wait_desired(
    bus: &Bus,
    host: &str,
    what: &str,
    check: impl Fn(&DesiredState) -> bool,
) -> DesiredState {
    eventually(&format!("{host}: {what}"), || async {
        bus.desired(host)
            .await
            .unwrap()
            .and_then(|m| m.state.ok())
            .filter(|d| check(d))
    })
    .await
}

/// Waits for `host`'s desired state to put it on `image` with updates
/// allowed.
pub async fn wait_allowed(bus: &Bus, host: &str, image: &str) -> DesiredState {
    wait_desired(bus, host, &format!("allowed onto {image}"), |d| {
        d.image.as_str() == image && d.updates_allowed
    })
    .await
}

/// Publishes an MDB record saying `host` requires `image`.
pub async fn set_mdb(bus: &Bus, host: &str, image: &str) {
    let record = MdbRecord::new(host).requiring(image_name(image));
    bus.publish_mdb(host, record.encode().into())
        .await
        .expect("MDB record published");
}
