//! The integration tests of domtool: one binary, a module each.

mod common;
mod flags;
mod fleet;
mod mdb;
