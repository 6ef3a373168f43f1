//! Connecting to a fixture's server, and waiting for what the fleet
//! publishes there.

use dom_bus::{Bus, ConnectArgs};
use dom_model::DesiredState;

use crate::fixtures::eventually;
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
