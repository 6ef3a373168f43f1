//! The integration tests of imagetool: one binary, a module each.

mod bad_input;
mod common;
mod expiration;
mod hash_cache;
mod health_check;
mod inspection;
mod usage;
mod user_guide;
