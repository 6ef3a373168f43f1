//! domsetup's own tests: what a user meets on bad connections. The secured
//! fleet end to end is in the workspace's tests/ crate.

mod connect_errors;
mod site_setup;
