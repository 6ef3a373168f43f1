//! The integration tests of subd: one binary, a module each.

mod agent_corrupt;
mod agent_crash;
mod agent_drift;
mod agent_filter;
mod agent_health;
mod agent_high_impact;
mod agent_hostile;
mod agent_http;
mod agent_offline;
mod agent_pace;
mod agent_planned;
mod agent_rates;
mod agent_signals;
mod agent_space;
mod agent_sparse;
mod agent_support;
mod agent_triggers;
mod cli_errors;
mod fetch_cache;
mod fetch_store;
mod update_mounts;
mod update_speed;
mod update_support;
mod update_symlinks;
mod update_tree;
mod update_triggers;
