//! End-to-end tests across services, against real nats-server processes:
//! agents and the dominator together, the status page in a browser, and a
//! fleet secured by `ops/secure/domsecure` with each role's permissions,
//! the monitoring of `ops/monitoring` against what the services export,
//! and the systemd units of ops/systemd/, checked by `systemd-analyze`.

mod browser;
mod cluster;
mod e2e_adds;
mod e2e_fleet;
mod e2e_high_impact;
mod e2e_rollout;
mod e2e_wait;
mod fleet_kit;
mod monitoring;
mod s3;
mod secure;
mod site;
mod standby;
mod systemd;
