//! Which services an update stops, starts and reloads (DESIGN §4).
//!
//! The changed paths are matched against the old image's triggers to
//! decide what to stop before the tree changes, and against the new
//! image's to decide what to start or reload after. Within one set of
//! fired triggers, a service named by any trigger without `DoReload` is
//! restarted (stopped and started); a service named only by `DoReload`
//! triggers is left running and reloaded. The agent's own service is never
//! stopped: when its triggers fire, the agent restarts itself once the
//! update is reported.

use std::collections::HashMap;

use dom_model::{Trigger, Triggers};

use crate::services::ServiceAction;

/// The agent's own service name.
pub const AGENT_SERVICE: &str = "subd";

/// The service commands an update runs, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// Services to stop before the tree changes.
    pub stop: Vec<String>,
    /// Services to start or reload after it changed.
    pub start: Vec<(String, ServiceAction)>,
    /// A fired new trigger asks for a reboot.
    pub reboot: bool,
    /// A fired trigger (old or new) is marked `HighImpact`: the update
    /// needs the dominator's permission.
    pub high_impact: bool,
    /// The services those HighImpact triggers name, in firing order.
    pub high_impact_services: Vec<String>,
    /// The agent's own service's triggers fired: it should restart itself.
    pub restart_agent: bool,
}

impl ServicePlan {
    /// The commands for an update changing `changed`. Without `old`
    /// triggers (the first update after install) the new ones decide what
    /// to stop as well.
    pub fn new<S: AsRef<str>>(changed: &[S], old: Option<&Triggers>, new: &Triggers) -> Self {
        let old = old.unwrap_or(new);
        let old_fired = old.matching(changed.iter().map(AsRef::as_ref));
        let new_fired = new.matching(changed.iter().map(AsRef::as_ref));
        let mut high_impact_services: Vec<String> = Vec::new();
        for t in old_fired.iter().chain(&new_fired).filter(|t| t.high_impact) {
            if !high_impact_services.contains(&t.service) {
                high_impact_services.push(t.service.clone());
            }
        }
        let mut plan = Self {
            high_impact: !high_impact_services.is_empty(),
            high_impact_services,
            reboot: new_fired.iter().any(|t| t.do_reboot),
            ..Self::default()
        };
        for (service, restart) in services(&old_fired) {
            if restart && service != AGENT_SERVICE {
                plan.stop.push(service.to_string());
            }
        }
        for (service, restart) in services(&new_fired) {
            if service == AGENT_SERVICE {
                plan.restart_agent = true;
            } else if restart {
                plan.start.push((service.to_string(), ServiceAction::Start));
            } else {
                plan.start
                    .push((service.to_string(), ServiceAction::Reload));
            }
        }
        plan
    }

    /// Whether no service command runs.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty() && self.start.is_empty() && !self.reboot
    }
}

/// The services `fired` names, in firing order, each with whether it is
/// restarted (named by a trigger without `DoReload`).
fn services<'a>(fired: &[&'a Trigger]) -> Vec<(&'a str, bool)> {
    let mut order = Vec::new();
    let mut restart: HashMap<&str, bool> = HashMap::new();
    for t in fired {
        let name = t.service.as_str();
        let entry = restart.entry(name).or_insert_with(|| {
            order.push(name);
            false
        });
        *entry |= !t.do_reload;
    }
    order.into_iter().map(|s| (s, restart[s])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceAction::*;

    fn triggers(json: &str) -> Triggers {
        Triggers::parse(json).unwrap()
    }

    const SSHD: &str = r#"[{"MatchLines": ["/etc/ssh/.*", "/usr/sbin/sshd"], "Service": "sshd"}]"#;

    #[test]
    fn restart_stops_then_starts() {
        let t = triggers(SSHD);
        let plan = ServicePlan::new(&["/etc/ssh/sshd_config", "/etc/motd"], None, &t);
        assert_eq!(plan.stop, ["sshd"]);
        assert_eq!(plan.start, [("sshd".to_string(), Start)]);
        assert!(!plan.reboot && !plan.high_impact && !plan.restart_agent);
        assert!(ServicePlan::new(&["/etc/motd"], None, &t).is_empty());
    }

    #[test]
    fn old_triggers_decide_the_stops_new_ones_the_starts() {
        let old = triggers(r#"[{"MatchLines": ["/etc/a"], "Service": "a"}]"#);
        let new = triggers(r#"[{"MatchLines": ["/etc/a"], "Service": "b"}]"#);
        let plan = ServicePlan::new(&["/etc/a"], Some(&old), &new);
        assert_eq!(plan.stop, ["a"]);
        assert_eq!(plan.start, [("b".to_string(), Start)]);
    }

    #[test]
    fn reload_only_is_not_stopped_and_mixed_is_restarted() {
        let t = triggers(
            r#"[{"MatchLines": ["/etc/nginx/.*"], "Service": "nginx", "DoReload": true},
                {"MatchLines": ["/etc/web/.*"], "Service": "web", "DoReload": true},
                {"MatchLines": ["/usr/sbin/web"], "Service": "web"}]"#,
        );
        let plan = ServicePlan::new(&["/etc/nginx/x", "/etc/web/y"], None, &t);
        assert!(plan.stop.is_empty());
        assert_eq!(
            plan.start,
            [("nginx".to_string(), Reload), ("web".to_string(), Reload)]
        );
        let plan = ServicePlan::new(&["/etc/web/y", "/usr/sbin/web"], None, &t);
        assert_eq!(plan.stop, ["web"]);
        assert_eq!(plan.start, [("web".to_string(), Start)]);
    }

    #[test]
    fn the_agent_is_never_stopped() {
        let t = triggers(
            r#"[{"MatchLines": ["/usr/sbin/subd"], "Service": "subd"},
                {"MatchLines": ["/usr/sbin/.*"], "Service": "x", "DoReboot": true, "HighImpact": true}]"#,
        );
        let plan = ServicePlan::new(&["/usr/sbin/subd"], None, &t);
        assert_eq!(plan.stop, ["x"]);
        assert_eq!(plan.start, [("x".to_string(), Start)]);
        assert!(plan.restart_agent && plan.reboot && plan.high_impact);
        assert_eq!(plan.high_impact_services, ["x"]);
    }

    #[test]
    fn high_impact_from_the_old_or_the_new_triggers() {
        let old = triggers(r#"[{"MatchLines": ["/db/.*"], "Service": "db", "HighImpact": true}]"#);
        let new = triggers(r#"[{"MatchLines": ["/db/.*"], "Service": "db"}]"#);
        let plan = ServicePlan::new(&["/db/conf"], Some(&old), &new);
        assert!(plan.high_impact);
        assert_eq!(plan.high_impact_services, ["db"]);
        let plan = ServicePlan::new(&["/db/conf"], Some(&new), &old);
        assert_eq!(plan.high_impact_services, ["db"]);
        let plan = ServicePlan::new(&["/db/conf"], Some(&new), &new);
        assert!(!plan.high_impact && plan.high_impact_services.is_empty());
        assert!(!ServicePlan::new(&["/etc/motd"], Some(&old), &old).high_impact);
    }

    #[test]
    fn sort_name_order() {
        let t = triggers(
            r#"[{"MatchLines": ["/x"], "Service": "late", "SortName": "s10"},
                {"MatchLines": ["/x"], "Service": "early", "SortName": "s9"}]"#,
        );
        let plan = ServicePlan::new(&["/x"], None, &t);
        assert_eq!(plan.stop, ["early", "late"]);
    }
}
