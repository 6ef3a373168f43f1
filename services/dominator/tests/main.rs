//! The integration tests of dominator: one binary, a module each.

mod browser;
mod burst;
mod common;
mod e2e_fleet;
mod e2e_high_impact;
mod errors;
mod http;
mod restart;
mod rollout;
mod startup;
