//! Serving captures of this machine (`imagetool adds`): the tree of the
//! last scan and the contents of its files, one chunk per request, on
//! `dom.capture.<host>` ([`dom_bus::capture`]).
//!
//! What is captured is exactly what the agent scans: its root, without
//! its own state directory and without the paths the current image's
//! filter leaves alone. The tree is the last scan's, shared by the
//! agent's loop ([`Capture::share`]); it is encoded only when someone
//! asks, once per scan generation.
//!
//! A file's bytes are read from the root as they are now. The scan gave
//! their SHA-512, so an object is checked again when its last chunk is
//! served: a file that changed since the scan is refused by name, never
//! served under its old id. The asker checks every object too; the
//! agent's check is what names the file.
//!
//! The agent only reads. It never writes the bucket or the image stream:
//! the operator's imagetool stores what it was sent. When a capture ends
//! the agent publishes a `capture` event saying who asked (as they said)
//! and what it served.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use dom_bus::capture::{Ask, CaptureRequest, Chunk};
use dom_bus::Bus;
use dom_model::manifest::Inode;
use dom_model::object::Hasher;
use dom_model::{Event, Manifest, ObjectId};
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// How many requests are answered at once.
const CONCURRENCY: usize = 8;
/// Most captures tallied at once; the oldest is forgotten first.
const MAX_SESSIONS: usize = 64;

/// The last scan's tree, as offered to captures.
struct Offered {
    manifest: Arc<Manifest>,
    encoded: OnceLock<(ObjectId, Bytes)>,
    /// Each object's first path and its size.
    paths: OnceLock<HashMap<ObjectId, (String, u64)>>,
}

impl Offered {
    fn encoded(&self) -> &(ObjectId, Bytes) {
        self.encoded.get_or_init(|| {
            let bytes = Bytes::from(self.manifest.encode());
            (ObjectId::of(&bytes), bytes)
        })
    }

    fn path_of(&self, id: &ObjectId) -> Option<&(String, u64)> {
        self.paths
            .get_or_init(|| {
                let mut paths = HashMap::new();
                for entry in &self.manifest.entries {
                    if let Inode::File { object, size, .. } = &entry.inode {
                        paths
                            .entry(*object)
                            .or_insert_with(|| (entry.path.clone(), *size));
                    }
                }
                paths
            })
            .get(id)
    }
}

/// What one capture was served.
#[derive(Default, Clone, Copy)]
struct Tally {
    objects: u64,
    bytes: u64,
    order: u64,
}

/// The capture service of one agent: the tree on offer, and the task
/// answering requests once the bus is up. Dropping it stops the task.
pub(crate) struct Capture {
    offered: watch::Sender<Option<Arc<Offered>>>,
    task: Option<JoinHandle<()>>,
}

impl Capture {
    pub(crate) fn new() -> Self {
        Self {
            offered: watch::channel(None).0,
            task: None,
        }
    }

    /// Offers the last scan's tree to captures.
    pub(crate) fn share(&self, manifest: Arc<Manifest>) {
        self.offered.send_replace(Some(Arc::new(Offered {
            manifest,
            encoded: OnceLock::new(),
            paths: OnceLock::new(),
        })));
    }

    /// Starts answering requests on `bus` for the machine `host` whose
    /// root is `root`.
    pub(crate) fn serve(&mut self, bus: Bus, host: String, root: PathBuf) {
        let offered = self.offered.subscribe();
        if let Some(old) = self
            .task
            .replace(tokio::spawn(serve(bus, host, root, offered)))
        {
            old.abort();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn serve(
    bus: Bus,
    host: String,
    root: PathBuf,
    offered: watch::Receiver<Option<Arc<Offered>>>,
) {
    let mut requests = match bus.capture_requests(&host).await {
        Ok(requests) => requests,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve captures");
            return;
        }
    };
    let limit = bus.capture_chunk_limit();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let tallies: Arc<Mutex<HashMap<String, Tally>>> = Arc::default();
    let mut order = 0;
    while let Some(asked) = requests.next().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        order += 1;
        let (bus, host, root) = (bus.clone(), host.clone(), root.clone());
        let offered = offered.borrow().clone();
        let tallies = tallies.clone();
        tokio::spawn(async move {
            let answer = match &asked.request {
                Err(e) => Err(e.clone()),
                Ok(request) => {
                    answer(&bus, &host, root, offered, request, limit, &tallies, order).await
                }
            };
            if let Err(e) = bus.answer_capture(&asked, answer).await {
                tracing::debug!(error = %e, "cannot answer a capture request");
            }
            drop(permit);
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    bus: &Bus,
    host: &str,
    root: PathBuf,
    offered: Option<Arc<Offered>>,
    request: &CaptureRequest,
    limit: usize,
    tallies: &Mutex<HashMap<String, Tally>>,
    order: u64,
) -> Result<Chunk, String> {
    let no_scan = || "no scan of the machine yet; try again in a moment".to_string();
    match &request.ask {
        Ask::Tree { offset, manifest } => {
            let offered = offered.ok_or_else(no_scan)?;
            let (id, bytes) = tokio::task::spawn_blocking(move || offered.encoded().clone())
                .await
                .map_err(|e| e.to_string())?;
            if manifest.is_some_and(|wanted| wanted != id) {
                return Err("the machine's tree changed during the capture; run adds again".into());
            }
            let start = (*offset).min(bytes.len() as u64) as usize;
            let end = (start + limit).min(bytes.len());
            Ok(Chunk {
                total: bytes.len() as u64,
                manifest: Some(id),
                data: bytes.slice(start..end),
            })
        }
        Ask::Object { object, offset } => {
            let offered = offered.ok_or_else(no_scan)?;
            let (path, size) = offered.path_of(object).cloned().ok_or_else(|| {
                format!("object {object} is not in the last scan; run adds again")
            })?;
            let (object, offset) = (*object, *offset);
            let data = tokio::task::spawn_blocking(move || {
                read_chunk(&root, &path, object, size, offset, limit)
            })
            .await
            .map_err(|e| e.to_string())??;
            let done = offset + data.len() as u64 >= size;
            let mut tallies = tallies.lock().expect("tallies lock");
            if tallies.len() >= MAX_SESSIONS && !tallies.contains_key(&request.session) {
                let oldest = tallies
                    .iter()
                    .min_by_key(|(_, t)| t.order)
                    .map(|(s, _)| s.clone());
                if let Some(oldest) = oldest {
                    tallies.remove(&oldest);
                }
            }
            let tally = tallies.entry(request.session.clone()).or_default();
            tally.order = order;
            tally.bytes += data.len() as u64;
            tally.objects += u64::from(done);
            Ok(Chunk {
                total: size,
                manifest: None,
                data,
            })
        }
        Ask::Done => {
            let tally = tallies
                .lock()
                .expect("tallies lock")
                .remove(&request.session)
                .unwrap_or_default();
            let by = if request.by.is_empty() {
                "someone".to_string()
            } else {
                request.by.clone()
            };
            let event = Event::new(
                host,
                Event::CAPTURE,
                &dom_bus::stamp::now_rfc3339(),
                format!(
                    "captured by {by}: {} objects, {} bytes served",
                    tally.objects, tally.bytes
                ),
            )
            .with_details(serde_json::json!({
                "by": request.by,
                "objects": tally.objects,
                "bytes": tally.bytes,
            }));
            tracing::info!(by = %by, objects = tally.objects, bytes = tally.bytes, "served a capture");
            if let Err(e) = bus.publish_event(&event).await {
                tracing::warn!(error = %e, "cannot publish the capture event");
            }
            Ok(Chunk {
                total: 0,
                manifest: None,
                data: Bytes::new(),
            })
        }
    }
}

/// Up to `limit` bytes of the file at image path `path` from `offset`;
/// the last chunk only once the whole file hashes to `object` still.
fn read_chunk(
    root: &Path,
    path: &str,
    object: ObjectId,
    size: u64,
    offset: u64,
    limit: usize,
) -> Result<Bytes, String> {
    let changed = || format!("{path} changed since the scan; run adds again");
    let full = root.join(path.trim_start_matches('/'));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&full)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let length = file
        .metadata()
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .len();
    if length != size || offset > size {
        return Err(changed());
    }
    let want = (size - offset).min(limit as u64) as usize;
    let mut data = vec![0; want];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut data))
        .map_err(|_| changed())?;
    if offset + want as u64 == size {
        let id = if offset == 0 {
            ObjectId::of(&data)
        } else {
            hash_file(&mut file).map_err(|e| format!("cannot read {path}: {e}"))?
        };
        if id != object {
            return Err(changed());
        }
    }
    Ok(Bytes::from(data))
}

/// The SHA-512 of the whole file.
fn hash_file(file: &mut std::fs::File) -> std::io::Result<ObjectId> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hasher.finish()),
            n => hasher.update(&buffer[..n]),
        }
    }
}
