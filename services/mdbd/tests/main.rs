//! The integration tests of mdbd: one binary, a module each.

mod follow;
mod stop;
