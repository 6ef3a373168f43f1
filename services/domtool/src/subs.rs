//! `configure-subs` and `get-subs-configuration`: the agents' settings
//! (scan speed, fetch rate) the dominator hands out in every desired
//! state, for the fleet (`dom.ctl.subs-config`) and for single machines
//! over the fleet's (`dom.ctl.subs-config.<host>`).

use std::process::ExitCode;

use anyhow::bail;
use bytes::Bytes;
use dom_bus::stamp::{now_rfc3339, who};
use dom_bus::{outln, Bus, FleetKind};
use dom_model::controls::{control_name, Control, SubsConfig, CONTROL_VERSION, SUBS_CONFIG};
use dom_model::desired::{AgentConfig, ScanPercent};

/// What `configure-subs` was asked to do.
#[derive(Debug, Default)]
pub struct Change {
    pub host: Option<String>,
    pub scan_speed_percent: Option<ScanPercent>,
    pub fetch_rate: Option<u64>,
    pub clear: bool,
}

/// `domtool configure-subs`.
pub async fn configure(bus: &Bus, change: Change) -> anyhow::Result<ExitCode> {
    if let Some(host) = &change.host {
        crate::mdb::check_host(host)?;
    }
    if !change.clear && change.scan_speed_percent.is_none() && change.fetch_rate.is_none() {
        bail!("name a setting (--scan-speed-percent, --fetch-rate) or --clear");
    }
    let name = match &change.host {
        Some(host) => control_name(SUBS_CONFIG, host),
        None => SUBS_CONFIG.to_string(),
    };
    let whose = change.host.as_deref().unwrap_or("the fleet");
    if change.clear {
        bus.publish_ctl(&name, Bytes::new()).await?;
        let now = match change.host {
            Some(_) => "the fleet's",
            None => "the agents' own",
        };
        outln!("settings of {whose} cleared: {now} apply");
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = match crate::controls::standing(bus, &name).await? {
        Some(Control::SubsConfig(standing)) => standing.config,
        _ => AgentConfig::default(),
    };
    config.scan_speed_percent = change.scan_speed_percent.or(config.scan_speed_percent);
    config.fetch_rate = change.fetch_rate.or(config.fetch_rate);
    let control = SubsConfig {
        v: CONTROL_VERSION,
        host: change.host.clone(),
        config,
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(&name, control.encode().into()).await?;
    outln!("settings of {whose}: {}", settings(&control));
    Ok(ExitCode::SUCCESS)
}

/// `domtool get-subs-configuration`.
pub async fn show(bus: &Bus) -> anyhow::Result<ExitCode> {
    let mut fleet = None;
    let mut hosts = Vec::new();
    for message in bus.last_per_subject(FleetKind::Ctl).await? {
        match Control::decode(&message.name, &message.payload) {
            Ok(Control::SubsConfig(config)) if config.host.is_none() => fleet = Some(config),
            Ok(Control::SubsConfig(config)) => hosts.push(config),
            Ok(_) => {}
            Err(e) => tracing::warn!("skipped: {e}"),
        }
    }
    match &fleet {
        Some(config) => outln!("fleet: {}", stamped(config)),
        None => outln!("fleet: the agents' own settings"),
    }
    for config in &hosts {
        let host = config.host.as_deref().unwrap_or_default();
        outln!("{host}: {}", stamped(config));
    }
    Ok(ExitCode::SUCCESS)
}

fn stamped(config: &SubsConfig) -> String {
    format!(
        "{}, set by {} at {}",
        settings(config),
        or_unknown(&config.by),
        or_unknown(&config.when)
    )
}

/// The settings, each named; those not set are the fleet's (for a
/// machine's own) or the agents' own.
pub fn settings(config: &SubsConfig) -> String {
    let otherwise = match config.host {
        Some(_) => "the fleet's",
        None => "the agent's",
    };
    let scan = match config.config.scan_speed_percent {
        Some(percent) => format!("scan speed {percent}"),
        None => format!("scan speed {otherwise}"),
    };
    let fetch = match config.config.fetch_rate {
        Some(rate) => format!("fetch rate {rate} bytes/s"),
        None => format!("fetch rate {otherwise}"),
    };
    format!("{scan}, {fetch}")
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "?"
    } else {
        text
    }
}
