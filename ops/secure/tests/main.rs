//! The integration tests of secure: one binary, a module each.

mod connect_errors;
mod secure;
