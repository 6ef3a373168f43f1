//! The integration tests of bus: one binary, a module each.

mod desired;
mod fleet;
mod lease;
mod servers;
