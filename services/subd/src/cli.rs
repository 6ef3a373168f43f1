//! The `subd` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dom_bus::{ConnectArgs, LogArgs};

use dom_model::desired::ScanPercent;

use crate::config::Config;
use crate::services::{RebootCommand, ServiceCommand};

/// Keep this machine exactly on its required image.
///
/// subd scans the machine's tree continuously, follows the machine's
/// desired state on NATS (dom.desired.HOST), fetches and installs what
/// differs from the image, runs the triggers' service commands, and
/// reports on dom.state.HOST and dom.event.HOST.KIND. It keeps its last
/// desired state in the state directory, so it enforces it even when NATS
/// is unreachable.
#[derive(Debug, Parser)]
#[command(name = "subd", version = dom_version::VERSION)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// This machine's name on the bus (default: the system's host name).
    #[arg(long, env = "SUBD_HOSTNAME")]
    pub hostname: Option<String>,
    /// The tree to keep on the image.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Where to keep the last desired state and the object cache; on the
    /// root's file system (default: ROOT/.subd).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run as `CMD NAME stop|start|reload` for triggers.
    #[arg(long, value_name = "CMD", default_value = ServiceCommand::DEFAULT)]
    pub service_command: String,
    /// Run for a trigger with DoReboot; "" refuses reboots.
    #[arg(long, value_name = "CMD", default_value = RebootCommand::DEFAULT)]
    pub reboot_command: String,
    /// Share of the disk's read bandwidth the scan may use, 0.001 to 100
    /// (`0.1` or `2%`; 100 is no limit). The dominator's
    /// `configure-subs` overrides it.
    #[arg(long, value_name = "PERCENT", default_value = "2")]
    pub scan_speed_percent: ScanPercent,
    /// The disk's read speed in bytes per second (default: measured once
    /// and remembered in the state directory).
    #[arg(long, value_name = "BYTES")]
    pub media_speed: Option<u64>,
    /// Most bytes per second to fetch objects at (default: no limit).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub fetch_rate: Option<u64>,
    /// Pause between scans.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub scan_interval: Duration,
    /// Hold the scans an update waits for (after a new desired state, and
    /// after the update, to report it) to the scan's rate limit too. By
    /// default the limit governs background verification only and never
    /// delays acting on a desired state.
    #[arg(long)]
    pub limit_urgent_scans: bool,
    /// Least time between full rehashes, which read every file again at
    /// the scan's rate limit (0: one after the other, as the original).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub rehash_interval: Duration,
    /// Run updates that fire HighImpact triggers without asking the
    /// dominator's permission (for machines no dominator manages; by
    /// default such an update waits for a grant).
    #[arg(long)]
    pub no_high_impact_permission: bool,
    /// Serve the status page and metrics here (`:6969` is every
    /// interface; `off` or "" serves nothing).
    #[arg(long, value_name = "ADDR", default_value = ":6969", value_parser = dom_web::parse_flag)]
    pub http: String,
    /// Run with `sh -c` after each successful update (once the triggers
    /// started their services), until it exits 0; with DOM_HOST,
    /// DOM_IMAGE and DOM_ROOT set. The image's own check runs too.
    #[arg(long, value_name = "CMD")]
    pub health_command: Option<String>,
    /// How long a health check is tried before the machine is reported
    /// unhealthy.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    pub health_timeout: Duration,
    /// Pause between tries of a health check.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,
    /// CPU niceness of the agent (0-19); one started at a lower priority
    /// (systemd's Nice=, `nice -n 19`) keeps it.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub nice: i32,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The agent's configuration; fails with one line on bad values.
    pub fn config(&self) -> Result<Config> {
        let host = match &self.hostname {
            Some(host) => host.clone(),
            None => system_hostname()
                .context("cannot tell this machine's host name; pass --hostname")?,
        };
        if !dom_model::desired::is_valid_host(&host) {
            bail!("invalid host name {host:?}: use letters, digits, '-', '_' and single dots, or pass --hostname");
        }
        let mut config = Config::new(host, self.root.clone());
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        config.connect = self.connect.clone();
        config.service_command = ServiceCommand::parse(&self.service_command)
            .with_context(|| format!("--service-command {:?}", self.service_command))?;
        config.reboot_command = match self.reboot_command.trim() {
            "" => None,
            line => Some(
                RebootCommand::parse(line).with_context(|| format!("--reboot-command {line:?}"))?,
            ),
        };
        config.scan_speed_percent = self.scan_speed_percent;
        config.media_speed = self.media_speed;
        config.fetch_rate = self.fetch_rate;
        config.scan_interval = self.scan_interval;
        config.limit_urgent_scans = self.limit_urgent_scans;
        config.rehash_interval = self.rehash_interval;
        config.high_impact_permission = !self.no_high_impact_permission;
        config.http = dom_web::serves(&self.http).map(str::to_string);
        config.health_command = match self.health_command.as_deref().map(str::trim) {
            None => None,
            Some("") => bail!("--health-command is empty; leave it out for no health command"),
            Some(_) => self.health_command.clone(),
        };
        config.health_timeout = self.health_timeout;
        config.health_interval = self.health_interval;
        Ok(config)
    }
}

/// A duration above zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a duration of 0 leaves no time to check".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The kernel's host name.
pub fn system_hostname() -> Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        bail!("gethostname: {}", std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("subd").chain(args.iter().copied()))?;
        cli.config()
    }

    #[test]
    fn defaults() {
        let config = parse(&["--hostname", "web1.example.com"]).unwrap();
        assert_eq!(config.root, PathBuf::from("/"));
        assert_eq!(config.state_dir, PathBuf::from("/.subd"));
        assert_eq!(config.scan_speed_percent, ScanPercent::whole(2));
        assert_eq!(config.health_command, None);
        assert_eq!(config.health_timeout, Duration::from_secs(60));
        assert_eq!(config.health_interval, Duration::from_secs(2));
        assert_eq!(config.service_command.to_string(), "service");
        assert!(config.reboot_command.is_some());
        assert!(config.high_impact_permission);
        assert!(!config.limit_urgent_scans);
    }

    #[test]
    fn every_option() {
        let config = parse(&[
            "--server",
            "nats://n1:4222",
            "--hostname",
            "h1",
            "--root",
            "/srv/m",
            "--service-command",
            "/bin/echo svc",
            "--reboot-command",
            "",
            "--scan-speed-percent",
            "100",
            "--fetch-rate",
            "1000",
            "--scan-interval",
            "250ms",
            "--prefix",
            "fleet-b",
            "--no-high-impact-permission",
            "--limit-urgent-scans",
            "--health-command",
            "curl -fs localhost",
            "--health-timeout",
            "5s",
            "--health-interval",
            "500ms",
        ])
        .unwrap();
        assert_eq!(config.health_command.as_deref(), Some("curl -fs localhost"));
        assert_eq!(config.health_timeout, Duration::from_secs(5));
        assert_eq!(config.health_interval, Duration::from_millis(500));
        assert!(config.scan_speed_percent.is_full());
        assert_eq!(config.state_dir, PathBuf::from("/srv/m/.subd"));
        assert_eq!(config.connect.server, "nats://n1:4222");
        assert_eq!(config.connect.prefix, "fleet-b");
        assert_eq!(config.service_command.to_string(), "/bin/echo svc");
        assert!(config.reboot_command.is_none());
        assert_eq!(config.fetch_rate, Some(1000));
        assert_eq!(config.scan_interval, Duration::from_millis(250));
        assert!(!config.high_impact_permission);
        assert!(config.limit_urgent_scans);
    }

    #[test]
    fn the_scan_speed_may_be_a_fraction() {
        let config = parse(&["--hostname", "h1", "--scan-speed-percent", "0.1"]).unwrap();
        assert_eq!(config.scan_speed_percent, "0.1".parse().unwrap());
        let config = parse(&["--hostname", "h1", "--scan-speed-percent", "2%"]).unwrap();
        assert_eq!(config.scan_speed_percent, ScanPercent::whole(2));
    }

    #[test]
    fn off_and_empty_both_serve_no_http() {
        for off in ["off", ""] {
            let config = parse(&["--hostname", "h1", "--http", off]).unwrap();
            assert_eq!(config.http, None, "{off:?}");
        }
        let config = parse(&["--hostname", "h1"]).unwrap();
        assert_eq!(config.http.as_deref(), Some(":6969"));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--hostname", "bad host"][..],
            &["--hostname", "h1", "--scan-speed-percent", "0"],
            &["--hostname", "h1", "--fetch-rate", "0"],
            &["--hostname", "h1", "--service-command", "'unclosed"],
            &["--hostname", "h1", "--http", "nonsense"],
            &["--hostname", "h1", "--scan-speed-percent", "101"],
            &["--hostname", "h1", "--scan-speed-percent", "fast"],
            &["--hostname", "h1", "--health-command", " "],
            &["--hostname", "h1", "--health-timeout", "0s"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
