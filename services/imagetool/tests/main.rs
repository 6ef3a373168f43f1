//! The integration tests of imagetool: one binary, a module each.

mod archive;
mod bad_input;
mod common;
mod copy;
mod estimate;
mod expiration;
mod find_latest;
mod from_image;
mod hash_cache;
mod health_check;
mod inspection;
mod metadata;
mod records;
mod usage;
mod user_guide;
