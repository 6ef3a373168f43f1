//! `domtool wait HOST... --image IMAGE`: follows the machines' state
//! reports until every one carries the image and is healthy, for scripts
//! that move machines and must know when they are there.
//!
//! A machine is there when its report says it applied the image and has
//! no deviations, and its health check on the image passed (a report
//! without `health` comes from an agent without checks: compliant is
//! healthy). It has failed when its last update to the image failed or
//! its health check on the image did. A failure already reported when
//! waiting begins counts, because it is where the machine stands; with
//! `--ignore-earlier` only updates and checks that start afterwards
//! count, told apart by their `started` times.
//!
//! Exit status: 0 there, 1 failed (one line per machine on stderr),
//! [`TIMED_OUT`] at the timeout (one line per machine not there, saying
//! where it stands).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use dom_bus::{outln, Bus, FleetKind, FleetUpdate};
use dom_model::report::{HealthState, UpdateResult};
use dom_model::{ImageName, StateReport};
use futures::{Stream, StreamExt};

/// The exit status at the timeout.
pub const TIMED_OUT: u8 = 3;
/// The exit status when a machine failed.
pub const FAILED: u8 = 1;

/// When the last update and health check a machine reported before
/// waiting began started: results with these times do not count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Earlier {
    pub update: Option<String>,
    pub health: Option<String>,
}

impl Earlier {
    pub fn of(report: Option<&StateReport>) -> Self {
        Self {
            update: report
                .and_then(|r| r.last_update.as_ref())
                .map(|u| u.started.clone()),
            health: report
                .and_then(|r| r.health.as_ref())
                .map(|h| h.started.clone()),
        }
    }
}

/// Where a machine stands against the image waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It carries the image and is healthy.
    There,
    /// Its update to the image or its health check failed: why, one line.
    Failed(String),
    /// Not there yet: where it is, for people.
    NotYet(String),
}

/// Judges `report` against `image`. `earlier`: the results to pass over
/// (`None`: every result counts).
pub fn standing(report: Option<&StateReport>, image: &str, earlier: Option<&Earlier>) -> Standing {
    let Some(report) = report else {
        return Standing::NotYet("no state report yet".into());
    };
    let counts = |seen: Option<&Option<String>>, started: &str| {
        seen.is_none_or(|seen| seen.as_deref() != Some(started))
    };
    let mut before = None;
    if let Some(update) = report
        .last_update
        .as_ref()
        .filter(|u| u.image == image && !u.ok)
    {
        let why = format!("update to {image} failed: {}", update_error(update));
        if counts(earlier.map(|e| &e.update), &update.started) {
            return Standing::Failed(why);
        }
        before = Some(why);
    }
    if let Some(health) = report.health.as_ref().filter(|h| h.failed_on(image)) {
        let why = match health.state {
            HealthState::TimedOut => format!("health check on {image} timed out"),
            _ => format!("unhealthy on {image}"),
        };
        let why = match health.message.as_str() {
            "" => why,
            message => format!("{why}: {message}"),
        };
        if counts(earlier.map(|e| &e.health), &health.started) {
            return Standing::Failed(why);
        }
        before = Some(why);
    }
    let before = before
        .map(|why| format!(" (before waiting began: {why})"))
        .unwrap_or_default();
    let on = report.image.as_deref() == Some(image) && report.compliant;
    if on {
        return match &report.health {
            None => Standing::There,
            Some(health) if health.healthy_on(image) => Standing::There,
            Some(health) if health.image == image && health.state == HealthState::Checking => {
                Standing::NotYet(format!("on {image}, health check running{before}"))
            }
            Some(_) => Standing::NotYet(format!(
                "on {image}, no passing health check on it yet{before}"
            )),
        };
    }
    let current = report.image.as_deref().unwrap_or("no image");
    let mut at = match report.desired_image.as_deref() {
        _ if report.updating => format!("on {current}, updating"),
        _ if report.fetching => format!("on {current}, fetching"),
        Some(desired) if desired == image => {
            format!(
                "on {current}, {} deviations from {image}",
                report.deviations
            )
        }
        Some(desired) => format!("on {current}, told to carry {desired}"),
        None => format!("on {current}, told nothing yet"),
    };
    if let Some(error) = &report.error {
        at.push_str(&format!("; agent error: {error}"));
    }
    Standing::NotYet(at + &before)
}

fn update_error(update: &UpdateResult) -> String {
    match (&update.error, update.trigger_failures.as_slice()) {
        (Some(error), _) => error.clone(),
        (None, []) => "no reason given".into(),
        (None, failures) => failures.join("; "),
    }
}

type Feed = Pin<Box<dyn Stream<Item = Result<FleetUpdate, dom_bus::BusError>> + Send>>;

/// A wait under way: the machines' reports as last heard, and what they
/// said when it began.
pub struct Waiter {
    image: ImageName,
    reports: BTreeMap<String, Option<StateReport>>,
    earlier: Option<BTreeMap<String, Earlier>>,
    feed: Feed,
}

impl Waiter {
    /// Starts following the state reports of `hosts` and reads where they
    /// stand now. With `ignore_earlier`, the results reported so far are
    /// passed over from here on.
    pub async fn start(
        bus: &Bus,
        hosts: &[String],
        image: ImageName,
        ignore_earlier: bool,
    ) -> anyhow::Result<Self> {
        for host in hosts {
            crate::mdb::check_host(host)?;
        }
        let feed = bus.watch_fleet(&[FleetKind::State]).await?;
        let mut waiter = Self {
            image,
            reports: hosts.iter().map(|h| (h.clone(), None)).collect(),
            earlier: None,
            feed: Box::pin(feed),
        };
        while let Some(update) = waiter.feed.next().await {
            match update? {
                FleetUpdate::Message(message) => waiter.hear(&message),
                FleetUpdate::CaughtUp => break,
            }
        }
        if ignore_earlier {
            waiter.earlier = Some(
                waiter
                    .reports
                    .iter()
                    .map(|(host, report)| (host.clone(), Earlier::of(report.as_ref())))
                    .collect(),
            );
        }
        Ok(waiter)
    }

    fn hear(&mut self, message: &dom_bus::FleetMessage) {
        let Some(slot) = self.reports.get_mut(&message.name) else {
            return;
        };
        match StateReport::decode(&message.payload) {
            Ok(report) if report.host == message.name => *slot = Some(report),
            Ok(report) => tracing::warn!(
                "state report on the subject of {} names host {}",
                message.name,
                report.host
            ),
            Err(e) => tracing::warn!("state report of {}: {e}", message.name),
        }
    }

    fn standings(&self) -> BTreeMap<String, Standing> {
        self.reports
            .iter()
            .map(|(host, report)| {
                let earlier = self.earlier.as_ref().map(|e| &e[host]);
                (
                    host.clone(),
                    standing(report.as_ref(), self.image.as_str(), earlier),
                )
            })
            .collect()
    }

    /// Waits until every machine is there (0), one failed (1) or
    /// `timeout` passed ([`TIMED_OUT`]), printing each arrival.
    pub async fn run(mut self, timeout: Duration) -> anyhow::Result<ExitCode> {
        let image = self.image.clone();
        let total = self.reports.len();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut arrived = BTreeSet::new();
        loop {
            let standings = self.standings();
            let failed: Vec<_> = standings
                .iter()
                .filter_map(|(host, s)| match s {
                    Standing::Failed(why) => Some((host, why)),
                    _ => None,
                })
                .collect();
            if !failed.is_empty() {
                for (host, why) in failed {
                    eprintln!("domtool: {host}: {why}");
                }
                return Ok(ExitCode::from(FAILED));
            }
            for (host, s) in &standings {
                if *s == Standing::There && arrived.insert(host.clone()) {
                    outln!(
                        "{host} carries {image} and is healthy ({} of {total})",
                        arrived.len()
                    );
                }
            }
            if arrived.len() == total {
                return Ok(ExitCode::SUCCESS);
            }
            let update = tokio::select! {
                update = self.feed.next() => update,
                () = tokio::time::sleep_until(deadline) => {
                    let waited = humantime::format_duration(timeout);
                    for (host, s) in &standings {
                        if let Standing::NotYet(at) = s {
                            eprintln!("domtool: {host}: not on {image} after {waited}: {at}");
                        }
                    }
                    return Ok(ExitCode::from(TIMED_OUT));
                }
            };
            match update {
                Some(Ok(FleetUpdate::Message(message))) => self.hear(&message),
                Some(Ok(FleetUpdate::CaughtUp)) => {}
                Some(Err(e)) => tracing::warn!("following the state reports: {e}"),
                None => anyhow::bail!("the state reports' feed ended"),
            }
        }
    }
}

/// `domtool wait HOST... --image IMAGE`.
pub async fn wait(
    bus: &Bus,
    hosts: &[String],
    image: &str,
    timeout: Duration,
    ignore_earlier: bool,
) -> anyhow::Result<ExitCode> {
    let image = ImageName::parse(image)?;
    Waiter::start(bus, hosts, image, ignore_earlier)
        .await?
        .run(timeout)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::report::Health;

    fn on(image: &str) -> StateReport {
        let mut report = StateReport::new("web1");
        report.image = Some(image.into());
        report.desired_image = Some(image.into());
        report.compliant = true;
        report
    }

    fn failed_update(image: &str, started: &str) -> UpdateResult {
        UpdateResult {
            image: image.into(),
            started: started.into(),
            ok: false,
            trigger_failures: vec!["web start: exit status 1".into()],
            ..UpdateResult::default()
        }
    }

    fn health(image: &str, state: HealthState, started: &str) -> Health {
        Health {
            image: image.into(),
            state,
            message: "curl: (7) refused".into(),
            started: started.into(),
            ..Health::default()
        }
    }

    #[test]
    fn a_compliant_machine_without_health_is_there() {
        assert_eq!(standing(Some(&on("web.7")), "web.7", None), Standing::There);
        let mut report = on("web.7");
        report.health = Some(health("web.7", HealthState::Healthy, "t1"));
        assert_eq!(standing(Some(&report), "web.7", None), Standing::There);
    }

    #[test]
    fn a_machine_elsewhere_or_checking_is_not_yet_there() {
        let at = |report: Option<&StateReport>| match standing(report, "web.7", None) {
            Standing::NotYet(at) => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(None), "no state report yet");
        assert_eq!(at(Some(&on("web.6"))), "on web.6, told to carry web.6");
        let mut report = on("web.7");
        report.health = Some(health("web.7", HealthState::Checking, "t1"));
        assert_eq!(at(Some(&report)), "on web.7, health check running");
        let mut report = on("web.6");
        report.desired_image = Some("web.7".into());
        report.compliant = false;
        report.deviations = 4;
        assert_eq!(at(Some(&report)), "on web.6, 4 deviations from web.7");
    }

    #[test]
    fn failed_updates_and_health_checks_on_the_image_fail() {
        let mut report = on("web.6");
        report.last_update = Some(failed_update("web.7", "t1"));
        assert_eq!(
            standing(Some(&report), "web.7", None),
            Standing::Failed("update to web.7 failed: web start: exit status 1".into())
        );
        // A failure on another image is not this wait's business.
        assert!(matches!(
            standing(Some(&report), "web.8", None),
            Standing::NotYet(_)
        ));
        let mut report = on("web.7");
        report.health = Some(health("web.7", HealthState::Unhealthy, "t1"));
        assert_eq!(
            standing(Some(&report), "web.7", None),
            Standing::Failed("unhealthy on web.7: curl: (7) refused".into())
        );
    }

    #[test]
    fn earlier_results_are_passed_over_only_when_asked() {
        let mut report = on("web.6");
        report.last_update = Some(failed_update("web.7", "t1"));
        let earlier = Earlier::of(Some(&report));
        let Standing::NotYet(at) = standing(Some(&report), "web.7", Some(&earlier)) else {
            panic!("an earlier failure counted");
        };
        assert!(
            at.contains("before waiting began: update to web.7 failed"),
            "{at}"
        );
        report.last_update = Some(failed_update("web.7", "t2"));
        assert!(matches!(
            standing(Some(&report), "web.7", Some(&earlier)),
            Standing::Failed(_)
        ));
        let mut report = on("web.7");
        report.health = Some(health("web.7", HealthState::TimedOut, "t1"));
        let earlier = Earlier::of(Some(&report));
        assert!(matches!(
            standing(Some(&report), "web.7", Some(&earlier)),
            Standing::NotYet(_)
        ));
        report.health = Some(health("web.7", HealthState::Healthy, "t2"));
        assert_eq!(
            standing(Some(&report), "web.7", Some(&earlier)),
            Standing::There
        );
    }
}
