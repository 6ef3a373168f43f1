//! The integration tests of dominator: one binary, a module each. Tests
//! across services (agents and the dominator together, the page in a
//! browser) are in the workspace's tests/ crate.

mod burst;
mod common;
mod errors;
mod http;
mod restart;
mod retag;
mod rollout;
mod startup;
mod stop;
