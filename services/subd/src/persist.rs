//! What the agent keeps in its state directory, so that a machine that
//! boots while the bus is unreachable still enforces its last image:
//!
//! - `desired.json`: the last desired state accepted, with its sequence on
//!   the bus;
//! - `manifest.<id>`: that state's manifest, as fetched (its id is checked
//!   again when read back);
//! - `applied.json`: the image last applied successfully (its triggers
//!   decide which services an update stops), the last update's result,
//!   whether a HighImpact grant was used and not yet taken back, and the
//!   health check's result after that update (`checking` while it runs,
//!   so a restarted agent runs it again);
//! - `media-speed`: the measured read speed of the disk;
//! - `hashes`: the scan's hash cache; `objects/`: the object cache.
//!
//! Every file is written to a temporary name, flushed and renamed, so a
//! crash leaves the old version or the new one. The manifest is written
//! before the desired state that names it, and old manifests are removed
//! only after, so `desired.json` always names a manifest that is there.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dom_model::report::{Health, UpdateResult};
use dom_model::{DesiredState, Manifest, ObjectId, Trigger};
use serde::{Deserialize, Serialize};

const DESIRED: &str = "desired.json";
const APPLIED: &str = "applied.json";
const MEDIA_SPEED: &str = "media-speed";
const MANIFEST_PREFIX: &str = "manifest.";

/// A desired state with the manifest it names, as the agent enforces it.
#[derive(Clone, Debug)]
pub struct Kept {
    pub sequence: u64,
    pub state: DesiredState,
    pub manifest: Manifest,
}

/// What the machine last carried.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The image last applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Its manifest's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ObjectId>,
    /// Its triggers: the next update stops what they name.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// The last update, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateResult>,
    /// An update ran under a HighImpact grant the dominator has not taken
    /// back yet: the grant is not used again, even after a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub high_impact_spent: bool,
    /// The health check after the last successful update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

#[derive(Serialize, Deserialize)]
struct DesiredFile {
    sequence: u64,
    desired: DesiredState,
}

/// The agent's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (private to the agent) if needed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The object cache's directory.
    pub fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }

    /// The scan's hash cache.
    pub fn hash_cache(&self) -> PathBuf {
        self.dir.join("hashes")
    }

    /// The last desired state kept, if any. A damaged one is ignored with
    /// a warning: the bus will hand out the current one.
    pub fn load_desired(&self) -> Option<Kept> {
        match self.read_desired() {
            Ok(kept) => kept,
            Err(reason) => {
                tracing::warn!(dir = %self.dir.display(), reason, "ignoring the kept desired state");
                None
            }
        }
    }

    fn read_desired(&self) -> Result<Option<Kept>, String> {
        let bytes = match fs::read(self.dir.join(DESIRED)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let file: DesiredFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        file.desired.validate().map_err(|e| e.to_string())?;
        let id = file.desired.manifest;
        let encoded =
            fs::read(self.manifest_path(&id)).map_err(|e| format!("manifest {id}: {e}"))?;
        if ObjectId::of(&encoded) != id {
            return Err(format!("manifest {id} is damaged"));
        }
        let manifest = Manifest::decode(&encoded).map_err(|e| e.to_string())?;
        Ok(Some(Kept {
            sequence: file.sequence,
            state: file.desired,
            manifest,
        }))
    }

    /// Keeps a desired state and its encoded manifest (whose id the state
    /// names), replacing the previous ones.
    pub fn save_desired(
        &self,
        sequence: u64,
        state: &DesiredState,
        encoded_manifest: &[u8],
    ) -> io::Result<()> {
        let manifest = self.manifest_path(&state.manifest);
        if !manifest.exists() {
            write_atomic(&manifest, encoded_manifest)?;
        }
        let file = DesiredFile {
            sequence,
            desired: state.clone(),
        };
        write_atomic(
            &self.dir.join(DESIRED),
            &serde_json::to_vec_pretty(&file).expect("desired states serialise"),
        )?;
        let keep = manifest.file_name().map(|n| n.to_os_string());
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if name.to_string_lossy().starts_with(MANIFEST_PREFIX) && Some(&name) != keep.as_ref() {
                let _ = fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(())
    }

    /// What the machine last carried; empty when nothing was applied yet.
    pub fn load_applied(&self) -> Applied {
        let path = self.dir.join(APPLIED);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring damaged record");
                Applied::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Applied::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read record");
                Applied::default()
            }
        }
    }

    pub fn save_applied(&self, applied: &Applied) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(applied).expect("records serialise");
        write_atomic(&self.dir.join(APPLIED), &bytes)
    }

    /// The disk's measured read speed, bytes per second.
    pub fn load_media_speed(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir.join(MEDIA_SPEED)).ok()?;
        text.trim().parse().ok().filter(|n| *n > 0)
    }

    pub fn save_media_speed(&self, bytes_per_second: u64) -> io::Result<()> {
        write_atomic(
            &self.dir.join(MEDIA_SPEED),
            format!("{bytes_per_second}\n").as_bytes(),
        )
    }

    fn manifest_path(&self, id: &ObjectId) -> PathBuf {
        self.dir.join(format!("{MANIFEST_PREFIX}{}", id.to_hex()))
    }
}

/// Runs `work` (file writes that wait for the disk) on a blocking thread,
/// so the agent's other tasks go on meanwhile.
pub(crate) async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Writes `bytes` to `path` through a flushed temporary file and a rename,
/// then flushes the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp.").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::manifest::ManifestBuilder;
    use dom_model::{ImageName, Inode};

    fn manifest() -> Manifest {
        let mut builder = ManifestBuilder::new();
        let dir = Inode::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        builder.add("/".into(), dir, None).unwrap();
        builder.finish().unwrap()
    }

    fn state(manifest: &Manifest) -> DesiredState {
        DesiredState {
            health_check: None,
            v: 1,
            host: "h1".into(),
            image: ImageName::parse("sparse.0").unwrap(),
            manifest: manifest.id(),
            sparse: true,
            filter: None,
            triggers: vec![],
            planned: None,
            updates_allowed: true,
            high_impact_granted: false,
            config: Default::default(),
            issued: None,
            publisher: None,
        }
    }

    #[test]
    fn keeps_the_desired_state_and_its_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("s")).unwrap();
        assert!(dir.load_desired().is_none());
        let m = manifest();
        let s = state(&m);
        dir.save_desired(7, &s, &m.encode()).unwrap();
        let kept = dir.load_desired().unwrap();
        assert_eq!((kept.sequence, &kept.state, &kept.manifest), (7, &s, &m));
        // A damaged manifest is not trusted.
        fs::write(dir.manifest_path(&m.id()), b"junk").unwrap();
        assert!(dir.load_desired().is_none());
    }

    #[test]
    fn keeps_what_was_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert_eq!(dir.load_applied(), Applied::default());
        let applied = Applied {
            image: Some("image.0".into()),
            high_impact_spent: true,
            ..Applied::default()
        };
        dir.save_applied(&applied).unwrap();
        assert_eq!(dir.load_applied(), applied);
        assert_eq!(dir.load_media_speed(), None);
        dir.save_media_speed(123).unwrap();
        assert_eq!(dir.load_media_speed(), Some(123));
    }
}
