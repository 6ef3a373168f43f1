//! subd: the agent on every machine. It keeps the machine's tree exactly on
//! its required image (DESIGN section 5): scan, plan, fetch, update,
//! report.
//!
//! - [`agent`]: the loop tying it together: [`Agent::start`] runs one
//!   agent on the current runtime (tests start many in one process).
//! - [`config`] and [`cli`]: how an agent is set up, and the flags.
//! - [`link`]: the link to the bus: connecting however long NATS is away,
//!   following the desired state, publishing reports and events.
//! - [`scanner`]: the continuous scan, with a hash cache and a periodic
//!   full rehash, at a share of the disk's speed ([`media`]).
//! - `desired` and `enforce`: taking on a desired state; comparing each
//!   scan with the image and updating.
//! - `confirm`: checking what an update changed without a scan, so its
//!   report goes out at once.
//! - `high_impact`: asking the dominator's permission before an update
//!   that fires HighImpact triggers.
//! - [`converge`]: one fetch-then-apply step; `prefetch`: fetching a
//!   planned image's objects ahead of time.
//! - [`objects`]: the private object cache `<state-dir>/objects`, on the
//!   same file system as the root so that installing is a rename.
//! - [`fetch`]: filling the cache from the bucket (or from content already
//!   on the machine), every object verified.
//! - [`update`]: applying a plan in the original's order, with the
//!   triggers' service stops and starts around it.
//! - [`health`]: the health check after an update, run as a task.
//! - [`space`]: room for a fetch, made by tidying the cache, or the
//!   update refused before anything is fetched.
//! - [`services`]: running the configurable service and reboot commands.
//! - `durable`: making many new files durable at once, by one flush of
//!   the file system or one by one, whichever waits less.
//! - [`persist`]: what the agent keeps in its state directory.
//! - [`report`]: state reports and events.
//! - [`web`]: the status page and metrics on `--http`.
//! - `capture`: serving the last scan's tree and the files' contents to
//!   an operator making an image of the machine (`imagetool adds`).

pub mod agent;
mod capture;
pub mod cli;
pub mod config;
mod confirm;
pub mod converge;
mod desired;
mod durable;
mod enforce;
pub mod fetch;
pub mod health;
mod high_impact;
pub mod link;
pub mod media;
pub mod objects;
pub mod persist;
mod prefetch;
pub mod report;
pub mod scanner;
pub mod services;
pub mod space;
pub mod update;
pub mod web;

pub use agent::{run, Agent, AgentError, Exit};
pub use cli::Cli;
pub use config::Config;
