//! Who may do what: the roles of a fleet, the NATS accounts they live in,
//! and their nats-server permissions (docs/SECURITY.md explains them).
//!
//! - **operator**: publishes images, MDB records and fleet controls,
//!   writes objects, reads everything, creates and updates the streams
//!   and the bucket;
//! - **builder** (imagetool): image records and objects, nothing else;
//! - **dominator**: reads everything, publishes desired states and its
//!   own events;
//! - **subd**, one per machine: publishes its own state report and its
//!   own events (each kind listed, since a host name may continue with
//!   more labels), reads objects and its own desired state only, and
//!   answers the capture requests for its own host (`imagetool adds`),
//!   which only the operator may send;
//! - **viewer** (dashboards): reads everything, writes nothing;
//! - **site**, one per remote site: the leaf connection of the site's
//!   server to the hub (never a client), which mirrors the images and the
//!   objects, and carries the site's agents' reports, events and reads.
//!
//! A remote site's server has the same accounts, in a JetStream domain of
//! its own ([`Place::Site`]): its agents read their desired states from
//! the hub's domain and objects from the site's, so their permissions
//! name the domains' API subjects.
//!
//! Every permission is an allow list, so anything not named here, such as
//! deleting or purging a stream or a message, is refused to every role.
//!
//! Subject permissions alone are not enough: the server itself publishes
//! on a client's behalf, to the reply subject of a JetStream request and
//! to a consumer's delivery subject, and checks neither against the
//! client's permissions. So the streams live in one account, `FLEET`,
//! with the two roles trusted to write anywhere in it (operator and
//! dominator). Builders, agents and viewers each have an account of their
//! own, `BUILDERS`, `AGENTS` and `VIEWERS`, which imports only what the
//! role needs: publishing to its subjects (with the stream's
//! acknowledgement), the JetStream requests that read (stream info and
//! direct gets; never creating a consumer), and, for agents and viewers,
//! the messages they follow. An answer to an imported request goes back
//! into the asker's account, where no stream captures anything, so no
//! reply subject can make the server write into a stream.
//!
//! One service goes the other way: `AGENTS` exports `dom.capture.>` to
//! `FLEET`, so that an operator can ask a machine's agent for its tree
//! and files. The agent may answer only the requests it receives
//! (`allow_responses`), on the operator's inbox, where no stream
//! captures anything.

use std::fmt::Write;

use dom_model::Event;
use thiserror::Error;

use crate::connect::inbox_prefix_for;
use crate::subjects::Subjects;

/// The kinds of event an agent publishes about its machine.
pub const AGENT_EVENT_KINDS: [&str; 6] = [
    Event::UPDATE,
    Event::DRIFT,
    Event::ERROR,
    Event::REJECTED,
    Event::HEALTH,
    Event::CAPTURE,
];

/// A role in the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Operator,
    Builder,
    Dominator,
    /// The agent of one machine.
    Subd {
        host: String,
    },
    Viewer,
    /// The leaf connection of a remote site's server.
    Site {
        name: String,
    },
}

/// Where a credential is used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Place {
    /// The fleet's own server or cluster, in JetStream domain `domain`
    /// when it has one (a hub with remote sites).
    #[default]
    Hub,
    /// A hub whose JetStream domain is `domain`: its sites' leaf
    /// connections ask its API there.
    HubDomain { domain: String },
    /// A remote site's server, in the JetStream domain `site`, a leaf node
    /// of the hub whose domain is `hub`.
    Site { hub: String, site: String },
}

impl Place {
    /// The JetStream API prefix the fleet's streams are asked at.
    fn fleet_api(&self) -> String {
        match self {
            Place::Hub => "$JS.API".into(),
            Place::HubDomain { domain } => format!("$JS.{domain}.API"),
            Place::Site { hub, .. } => format!("$JS.{hub}.API"),
        }
    }

    /// The JetStream API prefix the object bucket is asked at.
    fn objects_api(&self) -> String {
        match self {
            Place::Site { site, .. } => format!("$JS.{site}.API"),
            _ => self.fleet_api(),
        }
    }
}

#[derive(Debug, Error)]
pub enum RoleError {
    #[error("unknown role {0:?}: use operator, builder, dominator, subd, viewer or site")]
    Unknown(String),
    #[error("role subd needs the machine's host name")]
    NoHost,
    #[error("role site needs the site's name")]
    NoSite,
    #[error("only roles subd and site are for one host or site")]
    HostGiven,
    #[error("invalid host name {0:?}")]
    BadHost(String),
    #[error("invalid site name {0:?}: letters, digits, '-' and '_'")]
    BadSite(String),
    #[error("a site's leaf credential needs the hub's JetStream domain (--hub-domain)")]
    NoHubDomain,
    #[error("only operator and subd credentials are used at a site, not {0}")]
    NotAtSite(String),
}

/// Subjects a credential may publish to and subscribe to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// It may answer the requests it receives (an agent, captures).
    pub allow_responses: bool,
}

impl Role {
    /// `role` by name; `host` for a subd.
    pub fn new(role: &str, host: Option<&str>) -> Result<Self, RoleError> {
        let role = match role {
            "operator" => Role::Operator,
            "builder" => Role::Builder,
            "dominator" => Role::Dominator,
            "viewer" => Role::Viewer,
            "site" => {
                let name = host.ok_or(RoleError::NoSite)?;
                if !is_valid_site(name) {
                    return Err(RoleError::BadSite(name.into()));
                }
                return Ok(Role::Site { name: name.into() });
            }
            "subd" => {
                let host = host.ok_or(RoleError::NoHost)?;
                if !dom_model::desired::is_valid_host(host) {
                    return Err(RoleError::BadHost(host.into()));
                }
                return Ok(Role::Subd { host: host.into() });
            }
            other => return Err(RoleError::Unknown(other.into())),
        };
        match host {
            Some(_) => Err(RoleError::HostGiven),
            None => Ok(role),
        }
    }

    /// A short name for file names and comments: `operator`, `subd-web1`.
    pub fn name(&self) -> String {
        match self {
            Role::Operator => "operator".into(),
            Role::Builder => "builder".into(),
            Role::Dominator => "dominator".into(),
            Role::Subd { host } => format!("subd-{host}"),
            Role::Viewer => "viewer".into(),
            Role::Site { name } => format!("site-{name}"),
        }
    }

    /// The permissions of this role for the user whose nkey is
    /// `public_key`, on the fleet's own server.
    pub fn permissions(&self, subjects: &Subjects, public_key: &str) -> Permissions {
        self.permissions_at(subjects, public_key, &Place::Hub)
            .expect("every role but site has hub permissions")
    }

    /// The permissions of this role for the user whose nkey is
    /// `public_key`, on a server at `place`.
    pub fn permissions_at(
        &self,
        subjects: &Subjects,
        public_key: &str,
        place: &Place,
    ) -> Result<Permissions, RoleError> {
        match (self, place) {
            (Role::Site { .. }, Place::HubDomain { domain }) => {
                return Ok(site_leaf_permissions(subjects, domain))
            }
            (Role::Site { .. }, _) => return Err(RoleError::NoHubDomain),
            (Role::Subd { host }, Place::Site { hub, site }) => {
                return Ok(subd_at_site(subjects, public_key, host, hub, site))
            }
            (Role::Operator | Role::Subd { .. }, _) | (_, Place::Hub | Place::HubDomain { .. }) => {
            }
            (role, Place::Site { .. }) => return Err(RoleError::NotAtSite(role.name())),
        }
        let api = |rest: String| format!("$JS.API.{rest}");
        let s = subjects;
        let objects = s.object_stream();
        let all_streams = [
            s.images_stream(),
            s.mdb_stream(),
            s.desired_stream(),
            s.state_stream(),
            s.events_stream(),
            s.ctl_stream(),
            s.lease_stream(),
            objects.clone(),
        ];
        // Reading any stream, the way the tools and the `nats` CLI do.
        let read_all = vec![
            api("INFO".into()),
            api("STREAM.NAMES".into()),
            api("STREAM.LIST".into()),
            api("STREAM.INFO.*".into()),
            api("STREAM.MSG.GET.*".into()),
            api("DIRECT.GET.>".into()),
            api("CONSUMER.CREATE.>".into()),
            api("CONSUMER.MSG.NEXT.>".into()),
            api("CONSUMER.INFO.>".into()),
            api("CONSUMER.NAMES.*".into()),
            api("CONSUMER.LIST.*".into()),
            "$JS.FC.>".into(),
        ];
        // Reading objects: an object's metadata and chunks by subject,
        // and a large object's chunks in batches.
        let read_objects = vec![
            api(format!("STREAM.INFO.{objects}")),
            api(format!("DIRECT.GET.{objects}")),
            api(format!("DIRECT.GET.{objects}.>")),
        ];
        let write_objects = vec![
            format!("{}>", s.object_meta_prefix()),
            format!("{}>", s.object_chunk_prefix()),
        ];
        let own_inbox = format!("{}.>", inbox_prefix_for(public_key));
        let any_inbox = "_INBOX.>".to_string();
        Ok(match self {
            Role::Operator => {
                // Only an operator asks agents for captures of their
                // machines (`imagetool adds`).
                let mut publish = vec![s.images(), s.all("mdb"), s.all("ctl"), s.all("capture")];
                publish.extend(write_objects);
                publish.extend(read_all);
                publish.push(api("CONSUMER.DELETE.>".into()));
                for stream in &all_streams {
                    publish.push(api(format!("STREAM.CREATE.{stream}")));
                    publish.push(api(format!("STREAM.UPDATE.{stream}")));
                }
                Permissions {
                    publish,
                    subscribe: vec![any_inbox, s.all_subjects()],
                    ..Permissions::default()
                }
            }
            Role::Builder => {
                let images = s.images_stream();
                let mut publish = vec![s.images()];
                publish.extend(write_objects);
                publish.extend(read_objects);
                publish.extend([
                    api("INFO".into()),
                    api(format!("STREAM.INFO.{images}")),
                    api(format!("DIRECT.GET.{images}")),
                    api(format!("DIRECT.GET.{images}.>")),
                ]);
                Permissions {
                    publish,
                    subscribe: vec![own_inbox],
                    ..Permissions::default()
                }
            }
            Role::Dominator => {
                // The lease says which of several dominators is active.
                // It halts rollouts: `dom.ctl.rollout.<image>`, and no
                // other control.
                let mut publish = vec![
                    s.all("desired"),
                    s.all("event"),
                    s.all("lease"),
                    s.ctl(&format!("{}.>", dom_model::controls::ROLLOUT)),
                ];
                publish.extend(read_all);
                publish.push(api("CONSUMER.DELETE.>".into()));
                // Stopping, it frees the lease for a standby.
                publish.push(api(format!("STREAM.MSG.DELETE.{}", s.lease_stream())));
                Permissions {
                    publish,
                    subscribe: vec![any_inbox],
                    ..Permissions::default()
                }
            }
            Role::Subd { host } => {
                let desired = s.desired_stream();
                let mut publish = vec![s.state(host)];
                publish.extend(AGENT_EVENT_KINDS.iter().map(|kind| s.event(host, kind)));
                publish.extend(read_objects);
                publish.extend([
                    api("INFO".into()),
                    api(format!("DIRECT.GET.{desired}.{}", s.desired(host))),
                ]);
                Permissions {
                    publish,
                    // Its own capture requests, which it answers.
                    subscribe: vec![own_inbox, s.desired(host), s.capture(host)],
                    allow_responses: true,
                }
            }
            Role::Viewer => Permissions {
                publish: viewer_requests(),
                subscribe: vec![any_inbox, s.all_subjects()],
                ..Permissions::default()
            },
            Role::Site { .. } => unreachable!("answered above"),
        })
    }

    /// The account this role's users live in.
    pub fn account(&self) -> Account {
        match self {
            Role::Operator | Role::Dominator => Account::Fleet,
            Role::Builder => Account::Builders,
            Role::Subd { .. } => Account::Agents,
            Role::Viewer => Account::Viewers,
            Role::Site { .. } => Account::Fleet,
        }
    }

    /// The role a credential file is named after: [`Role::name`], or
    /// `ROLE-ANYTHING` for a second credential of the role (while rotating
    /// one, say).
    pub fn from_name(name: &str) -> Result<Self, RoleError> {
        if let Some(host) = name.strip_prefix("subd-") {
            return Role::new("subd", Some(host));
        }
        if let Some(site) = name.strip_prefix("site-") {
            return Role::new("site", Some(site));
        }
        let role = name.split_once('-').map_or(name, |(role, _)| role);
        Role::new(role, None)
    }

    /// The nats-server `authorization.users` entry of the user whose nkey
    /// is `public_key`, with this role's permissions at `place`. A site's
    /// user may only make a leaf connection.
    pub fn user_entry(
        &self,
        subjects: &Subjects,
        public_key: &str,
        place: &Place,
    ) -> Result<String, RoleError> {
        let permissions = self.permissions_at(subjects, public_key, place)?;
        let only = match self {
            Role::Site { .. } => "  allowed_connection_types: [\"LEAFNODE\"]\n",
            _ => "",
        };
        let responses = if permissions.allow_responses {
            "    allow_responses: true\n"
        } else {
            ""
        };
        let list = |subjects: &[String]| {
            let mut out = String::new();
            for subject in subjects {
                let _ = writeln!(out, "        {subject:?}");
            }
            out
        };
        Ok(format!(
            "# {name} (prefix {prefix})\n{{\n  nkey: {public_key}\n{only}  permissions: {{\n    publish: {{ allow: [\n{publish}    ] }}\n    subscribe: {{ allow: [\n{subscribe}    ] }}\n{responses}  }}\n}}\n",
            name = self.name(),
            prefix = subjects.prefix(),
            publish = list(&permissions.publish),
            subscribe = list(&permissions.subscribe),
            responses = responses,
        ))
    }
}

/// A site name: what a JetStream domain and a file name may hold.
fn is_valid_site(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a site's leaf connection may carry, on the hub whose JetStream
/// domain is `hub`. Towards the hub: the site's agents' state reports and
/// events, their reads of their desired states, and what the site's
/// mirrors of the images and the bucket ask (stream info, their
/// consumers, flow control). Towards the site: desired-state
/// notifications, the answers to those requests (`_R_` for the agents'
/// imported requests, `$JSC.R` for the mirrors'), and the mirrors'
/// deliveries (`$JS.M`). Nothing else crosses: no MDB record, image,
/// object, desired state or control can be published from a site.
fn site_leaf_permissions(subjects: &Subjects, hub: &str) -> Permissions {
    let s = subjects;
    let api = |rest: String| format!("$JS.{hub}.API.{rest}");
    let mut publish = vec![s.all("state"), s.all("event"), api("INFO".into())];
    for stream in [s.images_stream(), s.object_stream()] {
        publish.extend([
            api(format!("STREAM.INFO.{stream}")),
            api(format!("CONSUMER.CREATE.{stream}")),
            api(format!("CONSUMER.CREATE.{stream}.>")),
        ]);
    }
    publish.push(api(format!("DIRECT.GET.{}.>", s.desired_stream())));
    publish.push("$JS.FC.>".into());
    Permissions {
        publish,
        subscribe: vec![
            s.all("desired"),
            "_R_.>".into(),
            "$JSC.R.>".into(),
            "$JS.M.>".into(),
        ],
        ..Permissions::default()
    }
}

/// An agent's permissions at a remote site: its desired state from the
/// hub's domain, objects from the site's mirror.
fn subd_at_site(
    subjects: &Subjects,
    public_key: &str,
    host: &str,
    hub: &str,
    site: &str,
) -> Permissions {
    let s = subjects;
    let objects = s.object_stream();
    let mut publish = vec![s.state(host)];
    publish.extend(AGENT_EVENT_KINDS.iter().map(|kind| s.event(host, kind)));
    publish.extend([
        format!("$JS.{site}.API.STREAM.INFO.{objects}"),
        format!("$JS.{site}.API.DIRECT.GET.{objects}"),
        format!("$JS.{site}.API.DIRECT.GET.{objects}.>"),
        format!("$JS.{site}.API.INFO"),
        format!("$JS.{hub}.API.INFO"),
        format!(
            "$JS.{hub}.API.DIRECT.GET.{}.{}",
            s.desired_stream(),
            s.desired(host)
        ),
    ]);
    Permissions {
        publish,
        subscribe: vec![
            format!("{}.>", inbox_prefix_for(public_key)),
            s.desired(host),
        ],
        ..Permissions::default()
    }
}

/// The JetStream requests a viewer makes: reading only.
fn viewer_requests() -> Vec<String> {
    [
        "INFO",
        "STREAM.NAMES",
        "STREAM.LIST",
        "STREAM.INFO.*",
        "STREAM.MSG.GET.*",
        "DIRECT.GET.>",
    ]
    .iter()
    .map(|rest| format!("$JS.API.{rest}"))
    .collect()
}

/// The NATS accounts of a secured fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Account {
    /// The streams and the bucket; the operator and the dominator.
    Fleet,
    Builders,
    Agents,
    Viewers,
}

impl Account {
    pub const ALL: [Account; 4] = [
        Account::Fleet,
        Account::Builders,
        Account::Agents,
        Account::Viewers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Account::Fleet => "FLEET",
            Account::Builders => "BUILDERS",
            Account::Agents => "AGENTS",
            Account::Viewers => "VIEWERS",
        }
    }

    /// What `FLEET` lends this account: (subject, is a request service
    /// rather than messages to follow). Empty for `FLEET` itself.
    ///
    /// At a site the agents ask the hub's domain for their desired states
    /// and the site's for objects; the server takes the site's own
    /// domain's requests through the plain `$JS.API` ones, so those are
    /// lent too.
    pub fn imports(self, subjects: &Subjects, place: &Place) -> Vec<(String, Import)> {
        let s = subjects;
        let reads = |prefix: &str| {
            ["INFO", "STREAM.INFO.*", "DIRECT.GET.>"]
                .iter()
                .map(|rest| format!("{prefix}.{rest}"))
                .collect::<Vec<_>>()
        };
        let mut requests: Vec<String> = match (self, place) {
            (Account::Fleet, _) => return Vec::new(),
            (Account::Viewers, _) => viewer_requests(),
            (Account::Agents, Place::Site { .. }) => {
                let mut requests = reads("$JS.API");
                requests.extend(reads(&place.fleet_api()));
                requests.extend(reads(&place.objects_api()));
                requests
            }
            (Account::Builders | Account::Agents, _) => reads("$JS.API"),
        };
        let mut follows = Vec::new();
        match self {
            Account::Fleet => {}
            Account::Builders => {
                requests.push(s.images());
                requests.push(format!("{}>", s.object_meta_prefix()));
                requests.push(format!("{}>", s.object_chunk_prefix()));
            }
            Account::Agents => {
                requests.push(s.all("state"));
                requests.push(s.all("event"));
                follows.push(s.all("desired"));
            }
            Account::Viewers => follows.push(s.all_subjects()),
        }
        let mut out: Vec<(String, Import)> =
            requests.into_iter().map(|r| (r, Import::Request)).collect();
        out.extend(follows.into_iter().map(|f| (f, Import::Follow)));
        out
    }
}

/// How an account imports a subject from `FLEET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    /// A service: requests (and publishes awaiting the stream's
    /// acknowledgement) go to `FLEET`, answers come back.
    Request,
    /// A stream: messages published in `FLEET` are seen here.
    Follow,
}

/// The nats-server `accounts` block of a secured fleet: every account with
/// what it imports from `FLEET`, and each user (the entry
/// [`Role::user_entry`] renders) in its role's account.
pub fn accounts_config(subjects: &Subjects, users: &[(Role, String)], place: &Place) -> String {
    let mut out = String::from("accounts {\n");
    for account in Account::ALL {
        let _ = writeln!(out, "  {} {{", account.name());
        if account == Account::Fleet {
            out.push_str("    jetstream: enabled\n    exports = [\n");
            for (subject, how, takers) in fleet_exports(subjects, place) {
                let takers = takers
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = match how {
                    Import::Request => writeln!(
                        out,
                        "      {{ service: {subject:?}, response_type: stream, accounts: [{takers}] }}"
                    ),
                    Import::Follow => {
                        writeln!(out, "      {{ stream: {subject:?}, accounts: [{takers}] }}")
                    }
                };
            }
            out.push_str("    ]\n");
            // The one service the other way: operators ask agents for
            // captures of their machines.
            let _ = writeln!(
                out,
                "    imports = [\n      {{ service: {{ account: AGENTS, subject: {:?} }} }}\n    ]",
                subjects.all("capture")
            );
        } else {
            if account == Account::Agents {
                let _ = writeln!(
                    out,
                    "    exports = [\n      {{ service: {:?}, accounts: [FLEET] }}\n    ]",
                    subjects.all("capture")
                );
            }
            out.push_str("    imports = [\n");
            for (subject, how) in account.imports(subjects, place) {
                let kind = match how {
                    Import::Request => "service",
                    Import::Follow => "stream",
                };
                let _ = writeln!(
                    out,
                    "      {{ {kind}: {{ account: FLEET, subject: {subject:?} }} }}"
                );
            }
            out.push_str("    ]\n");
        }
        out.push_str("    users = [\n");
        for (_, entry) in users.iter().filter(|(role, _)| role.account() == account) {
            for line in entry.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        out.push_str("    ]\n  }\n");
    }
    out.push_str("}\n");
    out
}

/// What `FLEET` exports: each subject every other account imports, with
/// the accounts that import it.
fn fleet_exports(subjects: &Subjects, place: &Place) -> Vec<(String, Import, Vec<Account>)> {
    let mut out: Vec<(String, Import, Vec<Account>)> = Vec::new();
    for account in Account::ALL {
        for (subject, how) in account.imports(subjects, place) {
            match out.iter_mut().find(|(s, h, _)| *s == subject && *h == how) {
                Some((_, _, takers)) => takers.push(account),
                None => out.push((subject, how, vec![account])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "UKEY";

    fn perms(role: &str, host: Option<&str>) -> Permissions {
        Role::new(role, host)
            .unwrap()
            .permissions(&Subjects::default(), KEY)
    }

    #[test]
    fn subd_is_held_to_its_host() {
        let p = perms("subd", Some("web1"));
        assert!(p.publish.contains(&"dom.state.web1".to_string()));
        assert!(p.publish.contains(&"dom.event.web1.update".to_string()));
        // No wildcard after the host: `web1.>` would also be web1.example.com.
        assert!(p
            .publish
            .iter()
            .all(|s| !s.starts_with("dom.") || !s.ends_with('>')));
        assert!(p
            .publish
            .contains(&"$JS.API.DIRECT.GET.DOM_DESIRED.dom.desired.web1".to_string()));
        assert!(!p.publish.iter().any(|s| s.contains("DELETE")
            || s.contains("PURGE")
            || s.contains("STREAM.CREATE")
            || s.contains("STREAM.UPDATE")));
        assert_eq!(
            p.subscribe,
            vec![
                "_INBOX.UKEY.>".to_string(),
                "dom.desired.web1".to_string(),
                "dom.capture.web1".to_string()
            ]
        );
        assert!(p.allow_responses);
        // It answers captures; it never asks for one.
        assert!(!p.publish.iter().any(|s| s.starts_with("dom.capture")));
        assert!(p.publish.contains(&"dom.event.web1.capture".to_string()));
        // No consumers outside the fleet's own account.
        assert!(!p.publish.iter().any(|s| s.contains("CONSUMER")));
    }

    #[test]
    fn only_the_operator_sets_up_streams() {
        for role in ["builder", "dominator", "viewer"] {
            let p = perms(role, None);
            assert!(!p.publish.iter().any(|s| s.contains("STREAM.CREATE")
                || s.contains("STREAM.UPDATE")
                || s.contains("STREAM.DELETE")
                || s.contains("PURGE")));
        }
        assert!(perms("operator", None)
            .publish
            .contains(&"$JS.API.STREAM.CREATE.DOM_MDB".to_string()));
    }

    #[test]
    fn only_the_operator_asks_for_captures() {
        assert!(perms("operator", None)
            .publish
            .contains(&"dom.capture.>".to_string()));
        for role in ["builder", "dominator", "viewer"] {
            let p = perms(role, None);
            assert!(
                !p.publish.iter().any(|s| s.starts_with("dom.capture")),
                "{role}"
            );
            assert!(!p.allow_responses, "{role}");
        }
        let config = accounts_config(&Subjects::default(), &[], &Place::Hub);
        assert!(config.contains(r#"{ service: { account: AGENTS, subject: "dom.capture.>" } }"#));
        assert!(config.contains(r#"{ service: "dom.capture.>", accounts: [FLEET] }"#));
    }

    #[test]
    fn viewer_publishes_to_no_stream() {
        let p = perms("viewer", None);
        assert!(p
            .publish
            .iter()
            .all(|s| s.starts_with("$JS.API.") || s.starts_with("$JS.FC.")));
    }

    #[test]
    fn untrusted_roles_get_accounts_of_their_own() {
        let users: Vec<(Role, String)> = ["operator", "builder", "viewer"]
            .iter()
            .map(|name| Role::from_name(name).unwrap())
            .chain([Role::from_name("subd-web1").unwrap()])
            .map(|role| {
                let entry = role
                    .user_entry(
                        &Subjects::default(),
                        &format!("U{}", role.name()),
                        &Place::Hub,
                    )
                    .unwrap();
                (role, entry)
            })
            .collect();
        let config = accounts_config(&Subjects::default(), &users, &Place::Hub);
        let section = |name: &str| {
            let start = config.find(&format!("  {name} {{")).unwrap();
            let end = config[start..].find("\n  }\n").unwrap();
            config[start..start + end].to_string()
        };
        let fleet = section("FLEET");
        assert!(fleet.contains("jetstream: enabled"));
        assert!(fleet.contains("nkey: Uoperator"));
        assert!(fleet
            .contains(r#"{ service: "dom.state.>", response_type: stream, accounts: [AGENTS] }"#));
        assert!(fleet.contains(r#"{ stream: "dom.>", accounts: [VIEWERS] }"#));
        let agents = section("AGENTS");
        assert!(agents.contains("nkey: Usubd-web1"));
        assert!(agents.contains(r#"{ stream: { account: FLEET, subject: "dom.desired.>" } }"#));
        assert!(!agents.contains("jetstream"));
        // No account outside FLEET may create a consumer: one can deliver
        // anywhere in FLEET.
        for name in ["BUILDERS", "AGENTS", "VIEWERS"] {
            assert!(!section(name).contains("CONSUMER"), "{name}");
        }
        assert!(section("BUILDERS").contains("nkey: Ubuilder"));
        assert!(section("VIEWERS").contains("nkey: Uviewer"));
    }

    #[test]
    fn roles_from_credential_names() {
        assert_eq!(
            Role::from_name("subd-web1.example.com").unwrap(),
            Role::Subd {
                host: "web1.example.com".into()
            }
        );
        assert_eq!(Role::from_name("viewer").unwrap(), Role::Viewer);
        assert_eq!(Role::from_name("builder-next").unwrap(), Role::Builder);
        assert!(Role::from_name("subd-").is_err());
        assert!(Role::from_name("nobody").is_err());
    }

    #[test]
    fn bad_roles() {
        assert!(matches!(
            Role::new("root", None),
            Err(RoleError::Unknown(_))
        ));
        assert!(matches!(Role::new("subd", None), Err(RoleError::NoHost)));
        assert!(matches!(
            Role::new("viewer", Some("web1")),
            Err(RoleError::HostGiven)
        ));
        assert!(matches!(
            Role::new("subd", Some("web1.>")),
            Err(RoleError::BadHost(_))
        ));
    }

    fn site() -> Place {
        Place::Site {
            hub: "hub".into(),
            site: "site1".into(),
        }
    }

    #[test]
    fn a_site_leaf_carries_only_reports_reads_and_mirrors() {
        let role = Role::from_name("site-site1").unwrap();
        assert_eq!(role.account(), Account::Fleet);
        assert!(matches!(
            role.permissions_at(&Subjects::default(), KEY, &Place::Hub),
            Err(RoleError::NoHubDomain)
        ));
        let hub = Place::HubDomain {
            domain: "hub".into(),
        };
        let p = role
            .permissions_at(&Subjects::default(), KEY, &hub)
            .unwrap();
        for allowed in [
            "dom.state.>",
            "$JS.hub.API.CONSUMER.CREATE.DOM_IMAGES",
            "$JS.hub.API.CONSUMER.CREATE.OBJ_dom-objects.>",
            "$JS.hub.API.DIRECT.GET.DOM_DESIRED.>",
        ] {
            assert!(p.publish.contains(&allowed.to_string()), "{allowed}");
        }
        // Nothing that changes a machine, and no plain API (every request
        // from a site names the hub's domain).
        assert!(!p.publish.iter().any(|s| s.starts_with("dom.mdb")
            || s.starts_with("dom.image")
            || s.starts_with("dom.desired")
            || s.starts_with("dom.ctl")
            || s.starts_with("$O.")
            || s.starts_with("$JS.API")
            || s.contains("STREAM.CREATE")
            || s.contains("DELETE")));
        assert!(!p.subscribe.contains(&"_INBOX.>".to_string()));
        // No capture request reaches a site: its server in other hands
        // could answer one for any machine.
        assert!(!p.subscribe.iter().any(|s| s.starts_with("dom.capture")));
        let entry = role.user_entry(&Subjects::default(), KEY, &hub).unwrap();
        assert!(entry.contains(r#"allowed_connection_types: ["LEAFNODE"]"#));
    }

    #[test]
    fn an_agent_at_a_site_reads_two_domains() {
        let role = Role::new("subd", Some("s0")).unwrap();
        let p = role
            .permissions_at(&Subjects::default(), KEY, &site())
            .unwrap();
        assert!(p
            .publish
            .contains(&"$JS.hub.API.DIRECT.GET.DOM_DESIRED.dom.desired.s0".to_string()));
        assert!(p
            .publish
            .contains(&"$JS.site1.API.DIRECT.GET.OBJ_dom-objects.>".to_string()));
        assert!(!p.publish.iter().any(|s| s.starts_with("$JS.API")));
        for role in ["builder", "dominator", "viewer"] {
            assert!(matches!(
                Role::new(role, None)
                    .unwrap()
                    .permissions_at(&Subjects::default(), KEY, &site()),
                Err(RoleError::NotAtSite(_))
            ));
        }
        let config = accounts_config(&Subjects::default(), &[], &site());
        for import in [
            r#"{ service: { account: FLEET, subject: "$JS.hub.API.DIRECT.GET.>" } }"#,
            r#"{ service: { account: FLEET, subject: "$JS.site1.API.DIRECT.GET.>" } }"#,
            r#"{ service: { account: FLEET, subject: "$JS.API.DIRECT.GET.>" } }"#,
        ] {
            assert!(config.contains(import), "{import}");
        }
        assert!(matches!(
            Role::new("site", Some("a.b")),
            Err(RoleError::BadSite(_))
        ));
    }

    #[test]
    fn renders_a_user_entry() {
        let entry = Role::new("subd", Some("web1.example.com"))
            .unwrap()
            .user_entry(&Subjects::default(), KEY, &Place::Hub)
            .unwrap();
        assert!(entry.contains("nkey: UKEY"));
        assert!(entry.contains("\"dom.state.web1.example.com\""));
        assert!(entry.contains("\"dom.desired.web1.example.com\""));
        assert!(entry.contains("allow_responses: true"));
    }
}
