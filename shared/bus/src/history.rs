//! Reading back: the last message of one subject (an MDB record, a
//! control), and what the last message per subject alone does not tell
//! (the MDB record a refused payload hides, a host's last event of some
//! kinds, recent events).
//!
//! Every read here is a direct get, so any role that may read a stream
//! may use it (see [`crate::direct`]).

use async_nats::jetstream::stream::DirectGetErrorKind;
use dom_model::{Event, MdbRecord};
use futures::StreamExt;

use crate::connect::{Bus, BusError};
use crate::direct::StoredMessage;
use crate::fleet::FleetKind;
use crate::view::View;

impl Bus {
    /// The last message stored on `subject` of `stream`; `None` when the
    /// subject has none. `what` names the read in errors.
    pub(crate) async fn last_on(
        &self,
        stream: &str,
        subject: String,
        what: &str,
    ) -> Result<Option<StoredMessage>, BusError> {
        let handle = self
            .js_for(stream)
            .get_stream_no_info(stream)
            .await
            .map_err(|e| self.js_error(format!("{what}: {e}")))?;
        let request = self.api(stream, &format!("DIRECT.GET.{stream}.{subject}"));
        let read = crate::elections::through_elections(
            what,
            || self.guarded_on(&request, handle.direct_get_last_for_subject(&subject)),
            crate::elections::transient,
        );
        match read.await? {
            Ok(msg) => Ok(Some(StoredMessage {
                subject,
                sequence: msg.sequence,
                payload: msg.payload,
                published: Some(msg.time.into()),
            })),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.js_error(format!("{what}: {e}"))),
        }
    }

    /// The last MDB message of `host`, as stored (a refused payload
    /// included).
    pub async fn last_mdb_message(&self, host: &str) -> Result<Option<StoredMessage>, BusError> {
        let what = format!("reading the MDB record of {host}");
        self.last_on(&self.subjects.mdb_stream(), self.subjects.mdb(host), &what)
            .await
    }

    /// The last message of control `control` (`dom.ctl.<control>`), as
    /// stored: an empty payload is a withdrawal, and a payload that does
    /// not decode is the reader's to refuse.
    pub async fn last_control(&self, control: &str) -> Result<Option<StoredMessage>, BusError> {
        let what = format!("reading control {control}");
        self.last_on(
            &self.subjects.ctl_stream(),
            self.subjects.ctl(control),
            &what,
        )
        .await
    }

    /// The last MDB message of `host` that decodes (the stream keeps 16
    /// per host): `Some(None)` when that was a removal, `None` when no
    /// message decodes.
    pub async fn last_good_mdb(&self, host: &str) -> Result<Option<Option<MdbRecord>>, BusError> {
        let stream = self.subjects.mdb_stream();
        let filter = self.subjects.mdb(host);
        let mut messages = std::pin::pin!(self.read_stream(&stream, &filter, 1));
        let mut good = None;
        while let Some(message) = messages.next().await {
            if let Ok(record) = MdbRecord::decode(host, &message?.payload) {
                good = Some(record);
            }
        }
        Ok(good)
    }

    /// Gives the hosts of `view` whose latest MDB payload was refused,
    /// and which have no record, the last record of theirs that was not:
    /// a machine keeps its previous record, for every reader and across
    /// restarts. Says which hosts got one back; a host whose history
    /// cannot be read is logged and left as it is.
    pub async fn recover_refused(&self, view: &mut View) -> Vec<String> {
        let mut recovered = Vec::new();
        for host in view.rejected_without_record() {
            match self.last_good_mdb(&host).await {
                Ok(Some(record)) => {
                    view.fleet.set_mdb(&host, record);
                    recovered.push(host);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%host, error = %e, "cannot read the MDB history"),
            }
        }
        recovered
    }

    /// The fleet as the dominator sees it now: the last message of every
    /// subject of the MDB, image, state, control and desired-state
    /// streams, folded into a [`View`], with the records refused payloads
    /// hide recovered from the MDB's history.
    pub async fn fleet_view(&self) -> Result<View, BusError> {
        self.view_of(&FleetKind::ALL).await
    }

    /// [`Bus::fleet_view`] of some of the streams only (the MDB alone, say).
    pub async fn view_of(&self, kinds: &[FleetKind]) -> Result<View, BusError> {
        let mut view = View::default();
        for &kind in kinds {
            for message in self.last_per_subject(kind).await? {
                view.apply(&message);
            }
        }
        self.recover_refused(&mut view).await;
        Ok(view)
    }

    /// The last event of `host` of any of `kinds`, with its stream
    /// sequence. Events that do not decode are passed over.
    pub async fn last_event(
        &self,
        host: &str,
        kinds: &[&str],
    ) -> Result<Option<(u64, Event)>, BusError> {
        let stream = self.subjects.events_stream();
        let what = format!("reading the events of {host}");
        let mut last: Option<(u64, Event)> = None;
        for kind in kinds {
            let subject = self.subjects.event(host, kind);
            let Some(message) = self.last_on(&stream, subject, &what).await? else {
                continue;
            };
            if let Ok(event) = Event::decode(&message.payload) {
                if last.as_ref().is_none_or(|(seq, _)| message.sequence > *seq) {
                    last = Some((message.sequence, event));
                }
            }
        }
        Ok(last)
    }
}
