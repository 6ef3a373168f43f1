//! The integration tests of imagetool: one binary, a module each.

mod archive;
mod bad_input;
mod common;
mod estimate;
mod expiration;
mod from_image;
mod hash_cache;
mod health_check;
mod inspection;
mod usage;
mod user_guide;
