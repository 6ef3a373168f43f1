//! Who may do what: the roles of a fleet and their nats-server
//! permissions (docs/SECURITY.md explains them).
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
//! Requests the JetStream API can restrict by subject are used in that
//! form: a subd reads its desired state with
//! `$JS.API.DIRECT.GET.<stream>.<subject>` and follows it through a
//! consumer created with `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`.

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
        // and a large object through a consumer on the bucket.
        let read_objects = vec![
            api(format!("STREAM.INFO.{objects}")),
            api(format!("DIRECT.GET.{objects}")),
            api(format!("DIRECT.GET.{objects}.>")),
            api(format!("CONSUMER.CREATE.{objects}")),
            format!("$JS.FC.{objects}.>"),
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
                    api(format!("STREAM.INFO.{images}")),
                    api(format!("DIRECT.GET.{images}.>")),
                    api(format!("CONSUMER.CREATE.{images}")),
                    api(format!("CONSUMER.CREATE.{images}.>")),
                    api(format!("CONSUMER.MSG.NEXT.{images}.*")),
                    api(format!("CONSUMER.INFO.{images}.*")),
                ]);
                Permissions {
                    publish,
                    subscribe: vec![own_inbox],
                }
            }
            Role::Dominator => {
                let mut publish = vec![s.all("desired"), s.all("event")];
                publish.extend(read_all);
                publish.push(api("CONSUMER.DELETE.>".into()));
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
                    api(format!("DIRECT.GET.{desired}.{}", s.desired(host))),
                    api(format!("CONSUMER.CREATE.{desired}.*.{}", s.desired(host))),
                    api(format!("CONSUMER.MSG.NEXT.{desired}.*")),
                ]);
                Permissions {
                    publish,
                    subscribe: vec![own_inbox],
                }
            }
            Role::Viewer => Permissions {
                publish: read_all,
                subscribe: vec![any_inbox, s.all_subjects()],
            },
        }
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
        assert_eq!(p.subscribe, vec!["_INBOX.UKEY.>".to_string()]);
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
        assert!(entry.contains("\"$JS.API.CONSUMER.MSG.NEXT.DOM_DESIRED.*\""));
    }
}
