//! `imagetool adds NAME HOST`: an image of a live machine, as the
//! original's `adds` captures a hand-tuned golden machine.
//!
//! The machine's agent (subd) is asked, on the bus, for the tree of its
//! last scan ([`dom_bus::capture`]): its root without the agent's own
//! state and without what its current image's filter leaves alone. The
//! filter given here is applied on top. The objects the bucket lacks are
//! then pulled from the agent, a chunk per request and several objects
//! at once, each checked against its SHA-512 and stored by imagetool
//! itself: the agent only reads its disk and never writes the bucket or
//! the image stream. The record is published as `add` publishes it,
//! inside the collection gate ([`crate::upload::enter_gate`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use dom_bus::capture::{Ask, CaptureAnswers, CaptureRequest, CAPTURE_VERSION};
use dom_bus::Bus;
use dom_model::manifest::Inode;
use dom_model::{Filter, Manifest, ObjectId};
use dom_store::{ContentStore, Store};
use futures::{StreamExt, TryStreamExt};

use crate::add::{self, ImageSpec};
use crate::metadata::MetadataRequest;
use crate::progress::Progress;
use crate::upload;

/// How many objects are pulled from the agent at once: a machine's tree
/// is mostly small files, each a few round trips.
const PULL_CONCURRENCY: usize = 32;
/// How many bytes of content may be held at once (each object is pulled
/// whole before it is stored), in units of PULL_UNIT. An object larger
/// than the budget is pulled alone.
const PULL_BUDGET_UNITS: usize = 2048;
const PULL_UNIT: u64 = 64 << 10;

/// What was checked before anything is sent: the inputs of `adds`.
pub struct AddsRequest {
    spec: ImageSpec,
    pub host: String,
    /// The files the metadata names, stored before the record.
    metadata: MetadataRequest,
}

impl AddsRequest {
    /// Validates the arguments: name, host, filter and triggers files.
    pub fn parse(
        name: &str,
        host: &str,
        filter_file: &str,
        triggers_file: &str,
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        let name = dom_model::ImageName::parse(name)?;
        if !dom_model::desired::is_valid_host(host) {
            bail!("invalid host name {host:?}: use letters, digits, '-', '_' and single dots");
        }
        Ok(Self {
            spec: ImageSpec {
                name,
                filter: add::load_filter(filter_file)?,
                triggers: add::load_triggers(triggers_file)?,
                expires_in,
                health_check: None,
                metadata: Default::default(),
            },
            host: host.to_string(),
            metadata: MetadataRequest::default(),
        })
    }

    /// The new image's build metadata and tags (`-tag`, `-buildCommitId`,
    /// ...).
    pub fn with_metadata(self, metadata: MetadataRequest) -> Self {
        Self {
            spec: ImageSpec {
                metadata: metadata.metadata.clone(),
                ..self.spec
            },
            metadata,
            ..self
        }
    }
}

/// What `adds` did.
#[derive(Debug, Clone)]
pub struct AddsSummary {
    pub name: dom_model::ImageName,
    pub host: String,
    pub files: u64,
    pub bytes: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub skipped: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for AddsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {} from {}: {} files, {}, {} objects uploaded ({}), {} already stored, in {:.2} s",
            self.name,
            self.host,
            self.files,
            crate::human_bytes(self.bytes),
            self.uploaded,
            crate::human_bytes(self.uploaded_bytes),
            self.skipped,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Captures `request.host` as image `request.name`. On any error nothing
/// is published (objects already stored stay; they are harmless).
pub async fn adds(bus: &Bus, request: AddsRequest, show_progress: bool) -> Result<AddsSummary> {
    let started = Instant::now();
    bus.ensure_image_streams().await?;
    add::refuse_taken(bus, &request.spec.name).await?;
    let capture = Capture::new(bus, &request.host).await?;
    // The tree first: an agent that does not answer fails the command
    // before anything else is done.
    let tree = capture.tree().await?;
    let manifest = match &request.spec.filter {
        Some(filter) => filtered(tree, filter)?,
        None => tree,
    };
    let store = Store::open(bus).await?;
    let pass = upload::enter_gate(bus, &store, show_progress).await?;
    let added = async {
        let existing = store.ids().await?;
        let missing: Vec<(ObjectId, u64)> = manifest
            .objects()
            .into_iter()
            .filter(|(id, _)| !existing.contains(id))
            .collect();
        let uploaded_bytes = pull_missing(&capture, &store, &missing, show_progress).await?;
        request.metadata.upload(&store, &existing).await?;
        let objects = store.location().map(str::to_string);
        upload::publish(bus, &store, &pass, &existing, &manifest, |id| {
            add::image_record(&request.spec, id, &manifest.totals(), objects)
        })
        .await?;
        anyhow::Ok((missing.len() as u64, uploaded_bytes))
    }
    .await;
    upload::leave_gate(pass).await;
    capture.done().await;
    let (uploaded, uploaded_bytes) = added?;
    let totals = manifest.totals();
    Ok(AddsSummary {
        name: request.spec.name,
        host: request.host,
        files: totals.files,
        bytes: totals.bytes,
        uploaded,
        uploaded_bytes,
        skipped: totals.objects - uploaded,
        elapsed: started.elapsed(),
    })
}

/// Pulls each object in `missing` from the agent and stores it, several
/// at once, showing objects and bytes done of the total; returns the
/// bytes stored.
async fn pull_missing(
    capture: &Capture<'_>,
    store: &Store,
    missing: &[(ObjectId, u64)],
    show_progress: bool,
) -> Result<u64> {
    let total_bytes: u64 = missing.iter().map(|(_, size)| size).sum();
    let progress = Progress::new(show_progress);
    let bar = progress.transfer(missing.len() as u64, total_bytes);
    let done_objects = Arc::new(AtomicU64::new(0));
    let done_bytes = Arc::new(AtomicU64::new(0));
    let budget = Arc::new(tokio::sync::Semaphore::new(PULL_BUDGET_UNITS));
    futures::stream::iter(missing.iter().copied())
        .map(|(id, size)| {
            let (bar, done_objects, done_bytes, budget) = (
                bar.clone(),
                done_objects.clone(),
                done_bytes.clone(),
                budget.clone(),
            );
            async move {
                let units = size.div_ceil(PULL_UNIT).clamp(1, PULL_BUDGET_UNITS as u64);
                let _held = budget.acquire_many(units as u32).await?;
                let content = capture.object(id, size, &done_bytes).await?;
                store.put(id, content).await?;
                let objects = done_objects.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_position(done_bytes.load(Ordering::Relaxed));
                bar.set_message(format!("{objects}/{} objects", missing.len()));
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PULL_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    bar.finish_and_clear();
    Ok(done_bytes.load(Ordering::Relaxed))
}

/// One capture of one machine: its requests share a session.
struct Capture<'a> {
    bus: &'a Bus,
    host: &'a str,
    session: String,
    answers: CaptureAnswers,
}

impl<'a> Capture<'a> {
    async fn new(bus: &'a Bus, host: &'a str) -> Result<Self> {
        Ok(Self {
            bus,
            host,
            session: bus.client.new_inbox(),
            answers: bus.capture_answers().await?,
        })
    }

    fn request(&self, ask: Ask) -> CaptureRequest {
        CaptureRequest {
            v: CAPTURE_VERSION,
            session: self.session.clone(),
            by: crate::creator(),
            ask,
        }
    }

    /// The agent's last scan, checked against its id.
    async fn tree(&self) -> Result<Manifest> {
        let mut encoded = BytesMut::new();
        let mut id = None;
        loop {
            let ask = Ask::Tree {
                offset: encoded.len() as u64,
                manifest: id,
            };
            let chunk = self
                .bus
                .ask_capture(&self.answers, self.host, &self.request(ask))
                .await?;
            id = id.or(chunk.manifest);
            if chunk.data.is_empty() && (encoded.len() as u64) < chunk.total {
                bail!("{} sent an empty chunk of its tree", self.host);
            }
            encoded.extend_from_slice(&chunk.data);
            if encoded.len() as u64 >= chunk.total {
                break;
            }
        }
        if id != Some(ObjectId::of(&encoded)) {
            bail!(
                "the tree {} sent does not match its SHA-512; run adds again",
                self.host
            );
        }
        Manifest::decode(&encoded).with_context(|| format!("the tree {} sent", self.host))
    }

    /// One object's content, checked against its id; counts its bytes
    /// into `done` as they arrive.
    async fn object(&self, id: ObjectId, size: u64, done: &AtomicU64) -> Result<Bytes> {
        let mut content = BytesMut::with_capacity(size as usize);
        loop {
            let ask = Ask::Object {
                object: id,
                offset: content.len() as u64,
            };
            let chunk = self
                .bus
                .ask_capture(&self.answers, self.host, &self.request(ask))
                .await?;
            if chunk.total != size || (chunk.data.is_empty() && (content.len() as u64) < size) {
                bail!(
                    "{} sent object {id} with another size; run adds again",
                    self.host
                );
            }
            done.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
            content.extend_from_slice(&chunk.data);
            if content.len() as u64 >= size {
                break;
            }
        }
        let content = content.freeze();
        if ObjectId::of(&content) != id {
            bail!(
                "object {id} from {} does not match its SHA-512; run adds again",
                self.host
            );
        }
        Ok(content)
    }

    /// Tells the agent the capture is over, for its audit event.
    async fn done(&self) {
        if let Err(e) = self
            .bus
            .ask_capture(&self.answers, self.host, &self.request(Ask::Done))
            .await
        {
            tracing::warn!(host = self.host, error = %e, "cannot tell the agent the capture is over");
        }
    }
}

/// `tree` without the paths `filter` matches. A hard link whose target
/// is left out takes the target's inode, and the links after it link to
/// it instead.
fn filtered(tree: Manifest, filter: &Filter) -> Result<Manifest> {
    let mut moved: HashMap<String, String> = HashMap::new();
    let mut removed: HashMap<String, Inode> = HashMap::new();
    let mut entries = Vec::with_capacity(tree.entries.len());
    for mut entry in tree.entries {
        if entry.path != "/" && filter.matches(&entry.path) {
            removed.insert(entry.path, entry.inode);
            continue;
        }
        if let Inode::Link { target } = &entry.inode {
            if let Some(now) = moved.get(target) {
                entry.inode = Inode::Link {
                    target: now.clone(),
                };
            } else if let Some(inode) = removed.get(target) {
                moved.insert(target.clone(), entry.path.clone());
                entry.inode = inode.clone();
            }
        }
        entries.push(entry);
    }
    let manifest = Manifest { v: tree.v, entries };
    // The filter may leave a path whose directory it took.
    Manifest::decode(&manifest.encode()).context("the filter leaves an invalid tree")?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::Entry;

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            inode: Inode::File {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 1,
                mtime_ns: 0,
                size: content.len() as u64,
                object: ObjectId::of(content),
            },
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            inode: Inode::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        }
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            inode: Inode::Link {
                target: target.into(),
            },
        }
    }

    #[test]
    fn a_filtered_link_target_hands_its_inode_to_the_first_link() {
        let tree = Manifest {
            v: 1,
            entries: vec![
                dir("/"),
                dir("/a"),
                file("/a/tool", b"tool"),
                dir("/b"),
                link("/b/one", "/a/tool"),
                link("/b/two", "/a/tool"),
            ],
        };
        let tree = Manifest::decode(&tree.encode()).unwrap();
        let out = filtered(tree, &Filter::new(&["/a"]).unwrap()).unwrap();
        let paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/", "/b", "/b/one", "/b/two"]);
        assert_eq!(out.entries[2].inode, file("/b/one", b"tool").inode);
        assert_eq!(out.entries[3].inode, link("", "/b/one").inode);
    }

    #[test]
    fn a_filter_that_orphans_a_path_is_refused() {
        let tree = Manifest {
            v: 1,
            entries: vec![dir("/"), dir("/a"), file("/a/x", b"x")],
        };
        let tree = Manifest::decode(&tree.encode()).unwrap();
        let error = filtered(tree, &Filter::new(&["/a$"]).unwrap()).unwrap_err();
        assert!(format!("{error:#}").contains("the filter leaves an invalid tree"));
    }
}
