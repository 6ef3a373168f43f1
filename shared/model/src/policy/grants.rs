//! HighImpact grants: how many machines may run HighImpact triggers at once.
//!
//! An agent asks before an update that would stop a service whose trigger
//! is marked HighImpact, and holds its grant until it withdraws the
//! request. How requests and grants travel is the bus's business; this is
//! only the choice.

use std::collections::BTreeSet;

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
