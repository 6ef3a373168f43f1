//! How one agent is set up: which machine it is, which tree it keeps, and
//! how hard it may work. The binary fills this from its flags; tests and
//! benchmarks build it directly, one per agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dom_bus::ConnectArgs;
use dom_model::desired::ScanPercent;

use crate::services::{RebootCommand, ServiceCommand};

/// The original's default: the scan may use 2% of the disk's bandwidth.
pub const DEFAULT_SCAN_SPEED_PERCENT: u32 = 2;
/// How long a health check is tried by default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause between tries of a health check by default.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// The state directory's name under the root, never touched by an image.
pub const STATE_DIR_NAME: &str = ".subd";

/// Everything one agent needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The machine's name on the bus (`dom.desired.<host>`).
    pub host: String,
    /// The tree kept on the image; `/` in production.
    pub root: PathBuf,
    /// Where the agent keeps its last desired state, its manifest, the
    /// object cache and the hash cache. Must be on the root's file system,
    /// so objects are installed by rename.
    pub state_dir: PathBuf,
    pub connect: ConnectArgs,
    /// Run as `COMMAND NAME stop|start|reload` for triggers.
    pub service_command: ServiceCommand,
    /// Run for a trigger with `DoReboot`; `None` refuses reboots.
    pub reboot_command: Option<RebootCommand>,
    /// Share of the disk's read bandwidth the scan may use, 0.001% to
    /// 100%; 100% means no limit at all. A desired state's `config`
    /// overrides it.
    pub scan_speed_percent: ScanPercent,
    /// The disk's read bandwidth in bytes per second; `None` measures it
    /// once and remembers it in the state directory.
    pub media_speed: Option<u64>,
    /// Most bytes per second fetched from the store; `None`: no limit. A
    /// desired state's `config` overrides it.
    pub fetch_rate: Option<u64>,
    /// Pause between the end of one scan and the start of the next.
    pub scan_interval: Duration,
    /// Hold the scans the agent acts on (after a new desired state, after
    /// an update) to the scan rate limit too. By default only background
    /// verification is limited, so the limit never delays an update or
    /// its report.
    pub limit_urgent_scans: bool,
    /// Least time between the starts of two full rehashes (scans that
    /// trust no remembered hash, to catch changes that leave no trace in
    /// the inode's times). Zero: one after the other, as the original
    /// rescans, which only makes sense with a scan rate limit.
    pub rehash_interval: Duration,
    /// Scan worker threads; 0 picks a number from the cores.
    pub scan_threads: usize,
    /// First wait before trying a failed update again; it doubles each
    /// time, up to [`Config::retry_max`].
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Ask the dominator before an update that fires HighImpact triggers,
    /// and wait for its grant (the default). An agent without a dominator
    /// never gets one: turn this off to run such updates unasked.
    pub high_impact_permission: bool,
    /// Where to serve the status page and metrics (`:6969`: every
    /// interface); `None` serves nothing.
    pub http: Option<String>,
    /// Run with `sh -c` after each successful update, until it exits 0
    /// or [`Config::health_timeout`] is up; the image's own check runs
    /// too. `None`: only the image's.
    pub health_command: Option<String>,
    /// How long a health check is tried (an image's own `timeout_s`
    /// overrides it for its check).
    pub health_timeout: Duration,
    /// Pause between two tries of a health check.
    pub health_interval: Duration,
}

impl Config {
    /// An agent for `host` keeping `root`, with the production defaults:
    /// state in `<root>/.subd`, the scan at 2% of the disk's speed.
    pub fn new(host: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            host: host.into(),
            state_dir: default_state_dir(&root),
            root,
            connect: ConnectArgs::default(),
            service_command: ServiceCommand::parse(ServiceCommand::DEFAULT)
                .expect("the default service command parses"),
            reboot_command: Some(
                RebootCommand::parse(RebootCommand::DEFAULT)
                    .expect("the default reboot command parses"),
            ),
            scan_speed_percent: ScanPercent::whole(DEFAULT_SCAN_SPEED_PERCENT),
            media_speed: None,
            fetch_rate: None,
            scan_interval: Duration::from_secs(1),
            limit_urgent_scans: false,
            rehash_interval: Duration::from_secs(3600),
            scan_threads: 0,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            high_impact_permission: true,
            http: None,
            health_command: None,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            health_interval: DEFAULT_HEALTH_INTERVAL,
        }
    }

    /// No limit on scanning or fetching, and short pauses: for tests and
    /// benchmarks, where many agents share one process.
    pub fn uncapped(self) -> Self {
        Self {
            scan_speed_percent: ScanPercent::FULL,
            fetch_rate: None,
            scan_interval: Duration::from_millis(50),
            rehash_interval: Duration::from_secs(3600),
            scan_threads: 2,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(2),
            ..self
        }
    }
}

/// `<root>/.subd`
pub fn default_state_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR_NAME)
}

/// The bytes per second the scan may read: `percent` of `media_speed`, or
/// no limit at 100%.
pub fn scan_rate(percent: u32, media_speed: u64) -> Option<u64> {
    if percent >= 100 {
        None
    } else {
        Some(
            (media_speed / 100)
                .saturating_mul(percent.max(1) as u64)
                .max(1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_rate_is_a_share_of_the_media_speed() {
        assert_eq!(scan_rate(2, 100 << 20), Some((100 << 20) / 100 * 2));
        assert_eq!(scan_rate(100, 100 << 20), None);
        assert_eq!(scan_rate(0, 1000), Some(10));
        assert_eq!(scan_rate(1, 10), Some(1));
    }

    #[test]
    fn state_dir_defaults_under_the_root() {
        let config = Config::new("h1", "/srv/m1");
        assert_eq!(config.state_dir, Path::new("/srv/m1/.subd"));
        assert_eq!(config.scan_speed_percent, ScanPercent::whole(2));
        assert!(config.uncapped().scan_speed_percent.is_full());
    }
}
