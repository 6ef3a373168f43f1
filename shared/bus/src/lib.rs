//! The event contract on NATS JetStream (DESIGN section 3).
//!
//! This crate is the only place that spells subjects, stream names and the
//! object bucket's name:
//!
//! - [`subjects`]: every subject, built from the fleet's prefix.
//! - [`connect`]: the connection options every tool shares (server, creds,
//!   nkey, TLS, prefix) and [`Bus`], a connected handle.
//! - [`denied`]: permission violations, heard at once, so a denied
//!   publish fails with the subject it names instead of timing out.
//! - [`direct`]: reading streams with batched direct gets, for the roles
//!   that may not create consumers.
//! - [`roles`]: what each role (operator, builder, dominator, subd,
//!   viewer) may do, as nats-server permissions.
//! - [`cli`], [`logging`], [`shutdown`]: what every binary's `main`
//!   shares: parsing flags with one-line errors, the `-v` flags and the
//!   logging set-up, and stopping cleanly on SIGINT or SIGTERM.
//! - [`streams`]: checks the streams and the bucket, creating or updating
//!   them only when needed (and allowed).
//! - [`images`]: publishing, reading, listing and deleting image records.
//! - [`agent`]: desired states, state reports and events, between the
//!   fleet and each machine's agent.
//! - [`fleet`]: the whole fleet's view (MDB, images, states, controls,
//!   desired states), replayed and then followed, for controllers and
//!   dashboards; publishing MDB records and controls.

pub mod agent;
pub mod cli;
pub mod connect;
pub mod denied;
pub mod direct;
pub mod fleet;
pub mod images;
pub mod logging;
pub mod roles;
pub mod shutdown;
pub mod streams;
pub mod subjects;

pub use agent::{DesiredMessage, MessageError, Refused};
pub use connect::{Bus, BusError, ConnectArgs};
pub use direct::StoredMessage;
pub use fleet::{FleetKind, FleetMessage, FleetUpdate};
pub use images::ImageError;
pub use logging::{init_logging, LogArgs};
pub use subjects::Subjects;
