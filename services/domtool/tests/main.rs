//! The integration tests of domtool: one binary, a module each.

mod common;
mod controls;
mod flags;
mod fleet;
mod images;
mod mdb;
mod rollout;
mod wait;
