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
//!   more labels), reads objects and its own desired state only;
//! - **viewer** (dashboards): reads everything, writes nothing.
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

use std::fmt::Write;

use dom_model::Event;
use thiserror::Error;

use crate::connect::inbox_prefix_for;
use crate::subjects::Subjects;

/// The kinds of event an agent publishes about its machine.
pub const AGENT_EVENT_KINDS: [&str; 4] =
    [Event::UPDATE, Event::DRIFT, Event::ERROR, Event::REJECTED];

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
}

#[derive(Debug, Error)]
pub enum RoleError {
    #[error("unknown role {0:?}: use operator, builder, dominator, subd or viewer")]
    Unknown(String),
    #[error("role subd needs the machine's host name")]
    NoHost,
    #[error("only role subd is for one host")]
    HostGiven,
    #[error("invalid host name {0:?}")]
    BadHost(String),
}

/// Subjects a credential may publish to and subscribe to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Role {
    /// `role` by name; `host` for a subd.
    pub fn new(role: &str, host: Option<&str>) -> Result<Self, RoleError> {
        let role = match role {
            "operator" => Role::Operator,
            "builder" => Role::Builder,
            "dominator" => Role::Dominator,
            "viewer" => Role::Viewer,
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
        }
    }

    /// The permissions of this role for the user whose nkey is
    /// `public_key`.
    pub fn permissions(&self, subjects: &Subjects, public_key: &str) -> Permissions {
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
        match self {
            Role::Operator => {
                let mut publish = vec![s.images(), s.all("mdb"), s.all("ctl")];
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
                }
            }
            Role::Dominator => {
                // The lease says which of several dominators is active.
                let mut publish = vec![s.all("desired"), s.all("event"), s.all("lease")];
                publish.extend(read_all);
                publish.push(api("CONSUMER.DELETE.>".into()));
                // Stopping, it frees the lease for a standby.
                publish.push(api(format!("STREAM.MSG.DELETE.{}", s.lease_stream())));
                Permissions {
                    publish,
                    subscribe: vec![any_inbox],
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
                    subscribe: vec![own_inbox, s.desired(host)],
                }
            }
            Role::Viewer => Permissions {
                publish: viewer_requests(),
                subscribe: vec![any_inbox, s.all_subjects()],
            },
        }
    }

    /// The account this role's users live in.
    pub fn account(&self) -> Account {
        match self {
            Role::Operator | Role::Dominator => Account::Fleet,
            Role::Builder => Account::Builders,
            Role::Subd { .. } => Account::Agents,
            Role::Viewer => Account::Viewers,
        }
    }

    /// The role a credential file is named after: [`Role::name`], or
    /// `ROLE-ANYTHING` for a second credential of the role (while rotating
    /// one, say).
    pub fn from_name(name: &str) -> Result<Self, RoleError> {
        if let Some(host) = name.strip_prefix("subd-") {
            return Role::new("subd", Some(host));
        }
        let role = name.split_once('-').map_or(name, |(role, _)| role);
        Role::new(role, None)
    }

    /// The nats-server `authorization.users` entry of the user whose nkey
    /// is `public_key`, with this role's permissions.
    pub fn user_entry(&self, subjects: &Subjects, public_key: &str) -> String {
        let permissions = self.permissions(subjects, public_key);
        let list = |subjects: &[String]| {
            let mut out = String::new();
            for subject in subjects {
                let _ = writeln!(out, "        {subject:?}");
            }
            out
        };
        format!(
            "# {name} (prefix {prefix})\n{{\n  nkey: {public_key}\n  permissions: {{\n    publish: {{ allow: [\n{publish}    ] }}\n    subscribe: {{ allow: [\n{subscribe}    ] }}\n  }}\n}}\n",
            name = self.name(),
            prefix = subjects.prefix(),
            publish = list(&permissions.publish),
            subscribe = list(&permissions.subscribe),
        )
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
    pub fn imports(self, subjects: &Subjects) -> Vec<(String, Import)> {
        let s = subjects;
        let mut requests: Vec<String> = match self {
            Account::Fleet => return Vec::new(),
            Account::Viewers => viewer_requests(),
            Account::Builders | Account::Agents => ["INFO", "STREAM.INFO.*", "DIRECT.GET.>"]
                .iter()
                .map(|rest| format!("$JS.API.{rest}"))
                .collect(),
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
pub fn accounts_config(subjects: &Subjects, users: &[(Role, String)]) -> String {
    let mut out = String::from("accounts {\n");
    for account in Account::ALL {
        let _ = writeln!(out, "  {} {{", account.name());
        if account == Account::Fleet {
            out.push_str("    jetstream: enabled\n    exports = [\n");
            for (subject, how, takers) in fleet_exports(subjects) {
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
        } else {
            out.push_str("    imports = [\n");
            for (subject, how) in account.imports(subjects) {
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
fn fleet_exports(subjects: &Subjects) -> Vec<(String, Import, Vec<Account>)> {
    let mut out: Vec<(String, Import, Vec<Account>)> = Vec::new();
    for account in Account::ALL {
        for (subject, how) in account.imports(subjects) {
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
            vec!["_INBOX.UKEY.>".to_string(), "dom.desired.web1".to_string()]
        );
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
                let entry = role.user_entry(&Subjects::default(), &format!("U{}", role.name()));
                (role, entry)
            })
            .collect();
        let config = accounts_config(&Subjects::default(), &users);
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

    #[test]
    fn renders_a_user_entry() {
        let entry = Role::new("subd", Some("web1.example.com"))
            .unwrap()
            .user_entry(&Subjects::default(), KEY);
        assert!(entry.contains("nkey: UKEY"));
        assert!(entry.contains("\"dom.state.web1.example.com\""));
        assert!(entry.contains("\"dom.desired.web1.example.com\""));
    }
}
