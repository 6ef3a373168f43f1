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
//! - [`plan`]: the convergence plan, the work that turns a machine's tree
//!   into its image.
//!
//! Nothing here touches the network, the file system or a clock, so every
//! rule can be tested exhaustively and reused by every service.

pub mod diff;
pub mod filter;
pub mod image;
pub mod manifest;
pub mod object;
pub mod path;
pub mod plan;
pub mod triggers;

pub use filter::Filter;
pub use image::{ImageMessage, ImageName, ImageRecord, Tombstone};
pub use manifest::{Entry, Inode, Manifest};
pub use object::ObjectId;
pub use plan::Plan;
pub use triggers::{Trigger, Triggers};
