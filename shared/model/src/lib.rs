//! The pure core of the fleet manager: data types and algorithms with no I/O.
//!
//! - [`path`]: the rules every image path obeys (absolute, normalised, never
//!   escaping the root).
//! - [`object`]: object ids, the SHA-512 of a file's content.
//! - [`filter`]: the regex filter that keeps paths out of a normal image.
//! - [`triggers`]: which services to restart when which paths change.
//! - [`manifest`]: the full tree of an image and its deterministic encoding.
//! - [`image`]: image names and the image record published on the bus.
//! - [`diff`]: what differs between two manifests.
//! - [`overlay`]: images from images, an archive laid over an image's
//!   tree or put in place of some of its files.
//! - [`plan`]: the convergence plan, the work that turns a machine's tree
//!   into its image.
//! - [`desired`]: the desired state the dominator hands each machine.
//! - [`report`]: what a machine says back: its state report and events.
//! - [`mdb`]: the MDB record, which image each machine should carry, and
//!   the original's `mdb.json` file.
//! - [`controls`]: the operators' fleet controls on `dom.ctl.<control>`
//!   (the emergency stop, safety-shutoff clearances).
//! - [`policy`]: the dominator's decisions: what each machine's desired
//!   state should be, which machines may update now, and why others wait.
//! - [`text`]: sizes as people read them, bounded echoes of others' text.
//!
//! Nothing here touches the network, the file system or a clock, so every
//! rule can be tested exhaustively and reused by every service.

pub mod controls;
pub mod desired;
pub mod diff;
pub mod filter;
pub mod image;
pub mod manifest;
pub mod mdb;
pub mod object;
pub mod overlay;
pub mod path;
pub mod plan;
pub mod policy;
pub mod report;
pub mod text;
pub mod triggers;

pub use desired::DesiredState;
pub use filter::Filter;
pub use image::{ImageMessage, ImageName, ImageRecord, Tombstone};
pub use manifest::{Entry, Inode, Manifest};
pub use mdb::{MdbChange, MdbRecord};
pub use object::ObjectId;
pub use plan::Plan;
pub use policy::{decide, Decision, Fleet, FleetControls, HoldReason, MachineStatus};
pub use report::{Event, StateReport};
pub use triggers::{Trigger, Triggers};
