//! The integration tests of imagetool: one binary, a module each.

mod bad_input;
mod common;
mod copy;
mod expiration;
mod find_latest;
mod hash_cache;
mod health_check;
mod metadata;
mod records;
mod usage;
mod user_guide;
