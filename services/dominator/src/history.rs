//! Reading back through a stream's history, for what the last message per
//! subject alone does not tell.

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::DirectGetErrorKind;
use dom_bus::{Bus, BusError};
use dom_model::{Event, MdbRecord};
use futures::StreamExt;

fn failed(bus: &Bus, what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::JetStream {
        server: bus.server().to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// The last MDB message for `host` that decodes (the stream keeps 16 per
/// host): `Some(None)` when that was a removal, `None` when no message
/// decodes. A replay that ends on a refused payload uses it, so the
/// machine keeps its previous record across restarts too.
pub async fn last_good_mdb(bus: &Bus, host: &str) -> Result<Option<Option<MdbRecord>>, BusError> {
    let what = format!("reading the MDB history of {host}");
    let stream = bus
        .js
        .get_stream_no_info(bus.subjects.mdb_stream())
        .await
        .map_err(|e| failed(bus, &what, e))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: bus.subjects.mdb(host),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(bus, &what, e))?;
    let mut good = None;
    if consumer.cached_info().num_pending == 0 {
        return Ok(good);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| failed(bus, &what, e))?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| failed(bus, &what, e))?;
        let pending = msg.info().map_err(|e| failed(bus, &what, e))?.pending;
        if let Ok(record) = MdbRecord::decode(host, &msg.payload) {
            good = Some(record);
        }
        if pending == 0 {
            break;
        }
    }
    Ok(good)
}

/// The last event of `host` of any of `kinds`, with its stream sequence.
pub async fn last_event(
    bus: &Bus,
    host: &str,
    kinds: &[&str],
) -> Result<Option<(u64, Event)>, BusError> {
    let what = format!("reading the events of {host}");
    let stream = bus
        .js
        .get_stream_no_info(bus.subjects.events_stream())
        .await
        .map_err(|e| failed(bus, &what, e))?;
    let mut last: Option<(u64, Event)> = None;
    for kind in kinds {
        match stream
            .direct_get_last_for_subject(bus.subjects.event(host, kind))
            .await
        {
            Ok(msg) => {
                if let Ok(event) = Event::decode(&msg.payload) {
                    if last.as_ref().is_none_or(|(seq, _)| msg.sequence > *seq) {
                        last = Some((msg.sequence, event));
                    }
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
            Err(e) => return Err(failed(bus, &what, e)),
        }
    }
    Ok(last)
}
