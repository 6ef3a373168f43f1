//! HighImpact grants: how many machines may run HighImpact triggers at once.
//!
//! An agent asks (its state report's `high_impact`) before an update that
//! would stop or start a service whose trigger is marked HighImpact,
//! changes nothing until its desired state carries `high_impact_granted`,
//! and withdraws the request once the update ran. [`grant_high_impact`] is
//! the choice; [`high_impact_grants`] feeds it from the fleet, and
//! [`decide_with_grants`] is the dominator's whole round.

use std::collections::BTreeSet;

use super::{decide, Decision, Fleet};

/// The grants after this round: every current grant whose host still asks
/// is kept (even past a lowered `max`, since a grant in use cannot be taken
/// back), a grant whose host no longer asks is released, and the hosts
/// still waiting get the free places in host order until `max` hold one.
///
/// Pass only requests from machines that may update now
/// ([`MachineStatus::updates_allowed`](super::MachineStatus::updates_allowed)),
/// so a held or removed machine neither gets nor keeps a grant.
pub fn grant_high_impact(
    requests: &BTreeSet<String>,
    current: &BTreeSet<String>,
    max: usize,
) -> BTreeSet<String> {
    let mut grants: BTreeSet<String> = current.intersection(requests).cloned().collect();
    let free = max.saturating_sub(grants.len());
    grants.extend(requests.difference(current).take(free).cloned());
    grants
}

/// The machines asking for a HighImpact grant that count: in the MDB,
/// asking for their required image, and allowed to update in `decision`.
pub fn high_impact_requests(fleet: &Fleet, decision: &Decision) -> BTreeSet<String> {
    decision
        .machines
        .iter()
        .filter(|m| {
            let Some(required) = &m.required else {
                return false;
            };
            let asks = fleet
                .reports
                .get(&m.host)
                .and_then(|r| r.high_impact.as_ref())
                .is_some_and(|r| r.image == required.as_str());
            asks && m.updates_allowed() && m.desired.as_ref().is_some_and(|d| d.image == *required)
        })
        .map(|m| m.host.clone())
        .collect()
}

/// The machines whose last published desired state carries a grant: the
/// grants the fleet has been told about.
pub fn high_impact_holders(fleet: &Fleet) -> BTreeSet<String> {
    fleet
        .desired
        .iter()
        .filter(|(_, d)| d.high_impact_granted)
        .map(|(host, _)| host.clone())
        .collect()
}

/// The grants to hand out after `decision` (made with the last round's
/// grants): [`grant_high_impact`] over the requests that count, with the
/// published grants as the current ones. A grant whose machine stopped
/// asking is withdrawn, but its place is given to another machine only
/// once the withdrawal is published, so the published desired states
/// never carry more than `max_high_impact` grants.
pub fn high_impact_grants(fleet: &Fleet, decision: &Decision) -> BTreeSet<String> {
    let requests = high_impact_requests(fleet, decision);
    let holders = high_impact_holders(fleet);
    let withdrawn = holders.difference(&requests).count();
    let max = fleet.controls.max_high_impact.saturating_sub(withdrawn);
    grant_high_impact(&requests, &holders, max)
}

/// [`decide`], with the HighImpact grants worked out first and kept in
/// `fleet.controls.high_impact`. Grants do not change which machines may
/// update, so the second decision (only made when the grants changed)
/// differs from the first in the grants alone.
pub fn decide_with_grants(fleet: &mut Fleet, now: i64) -> Decision {
    let first = decide(fleet, now);
    let grants = high_impact_grants(fleet, &first);
    if grants == fleet.controls.high_impact {
        return first;
    }
    fleet.controls.high_impact = grants;
    decide(fleet, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(hosts: &[&str]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn grants_in_host_order_up_to_the_cap() {
        let requests = set(&["web3", "web1", "web2"]);
        assert_eq!(
            grant_high_impact(&requests, &set(&[]), 2),
            set(&["web1", "web2"])
        );
        assert_eq!(grant_high_impact(&requests, &set(&[]), 5), requests);
        assert!(grant_high_impact(&requests, &set(&[]), 0).is_empty());
        assert!(grant_high_impact(&set(&[]), &set(&[]), 3).is_empty());
    }

    #[test]
    fn current_grants_are_kept_while_their_hosts_ask() {
        let requests = set(&["a", "b", "z"]);
        assert_eq!(grant_high_impact(&requests, &set(&["z"]), 1), set(&["z"]));
        assert_eq!(
            grant_high_impact(&requests, &set(&["z"]), 2),
            set(&["a", "z"])
        );
        // A lowered cap takes nothing back.
        assert_eq!(
            grant_high_impact(&requests, &set(&["b", "z"]), 1),
            set(&["b", "z"])
        );
    }

    #[test]
    fn a_withdrawn_request_releases_its_grant_to_the_next_host() {
        let current = set(&["a"]);
        let requests = set(&["b", "c"]);
        assert_eq!(grant_high_impact(&requests, &current, 1), set(&["b"]));
        // A grant for a host that no longer asks is not kept, even with room.
        assert_eq!(grant_high_impact(&set(&[]), &current, 3), set(&[]));
    }

    #[test]
    fn is_deterministic() {
        let requests = set(&["h5", "h1", "h9", "h3", "h7"]);
        let current = set(&["h9", "h2"]);
        let first = grant_high_impact(&requests, &current, 3);
        assert_eq!(first, set(&["h1", "h3", "h9"]));
        for _ in 0..10 {
            assert_eq!(grant_high_impact(&requests, &current, 3), first);
        }
    }
}
