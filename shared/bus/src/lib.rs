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
//! - [`output`]: printing for people and scripts ([`outln!`]), quiet
//!   when the reader has gone.
//! - [`streams`]: checks the streams and the bucket, creating or updating
//!   them only when needed (and allowed).
//! - [`images`]: publishing, reading, listing and deleting image records.
//! - [`agent`]: desired states, state reports and events, between the
//!   fleet and each machine's agent.
//! - [`fleet`]: the whole fleet's messages (MDB, images, states,
//!   controls, desired states), replayed and then followed, for
//!   controllers and dashboards; publishing MDB records and controls.
//! - [`view`]: those messages folded into one view of the fleet, the same
//!   for the dominator and every tool.
//! - [`history`]: reading back: one subject's last message, the MDB
//!   record a refused payload hides, a host's last events.
//! - [`tail`]: following what happens: recent events then new ones, and
//!   everything under the fleet's prefix.
//! - [`stamp`]: when and by whom a message was made.
//! - [`capture`]: asking a machine's agent for its tree and its files,
//!   chunk by chunk, to make an image of it (`imagetool adds`).

pub mod agent;
pub mod capture;
pub mod cli;
pub mod connect;
pub mod denied;
pub mod direct;
pub mod elections;
pub mod fleet;
pub mod history;
pub mod images;
pub mod lease;
pub mod logging;
pub mod output;
pub mod roles;
pub mod shutdown;
pub mod stamp;
pub mod streams;
pub mod subjects;
pub mod tail;
pub mod view;

pub use agent::{DesiredMessage, MessageError, Published, Refused};
pub use connect::{Bus, BusError, ConnectArgs};
pub use direct::StoredMessage;
pub use fleet::{FleetKind, FleetMessage, FleetUpdate};
pub use images::ImageError;
pub use lease::{LeaseRecord, Standing};
pub use logging::{init_logging, LogArgs};
pub use streams::{Layout, StreamPlace, StreamUsage};
pub use subjects::Subjects;
pub use tail::Heard;
pub use view::{Applied, View};
