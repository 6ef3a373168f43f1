//! subd: the agent on every machine. It keeps the machine's tree exactly on
//! its required image (DESIGN section 5): scan, plan, fetch, update,
//! report.
//!
//! - [`objects`]: the private object cache `<state-dir>/objects`, on the
//!   same file system as the root so that installing is a rename.
//! - [`fetch`]: filling the cache from the bucket (or from content already
//!   on the machine), every object verified.
//! - [`update`]: applying a plan in the original's order, with the
//!   triggers' service stops and starts around it.
//! - [`services`]: running the configurable service and reboot commands.
//! - [`agent`]: the loop tying it together, following the desired state on
//!   the bus and reporting.

pub mod agent;
pub mod fetch;
pub mod objects;
pub mod services;
pub mod update;
