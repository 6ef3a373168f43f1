//! Room for a fetch. Before an update fetches anything, the agent adds up
//! the objects it must bring into the cache, plus a margin, and compares
//! that with the free space of the state directory's file system (the
//! root's). The margin is 1% of the file system, at least
//! [`MARGIN_MIN`] and at most [`MARGIN_MAX`]: what the machine's own
//! writers need meanwhile, and the file system's overhead for new files.
//!
//! When the objects do not fit, the agent first drops from its cache the
//! objects no wanted image needs (the desired image's and the planned
//! image's objects stay), and looks again. When they still do not fit, the
//! update is refused before anything is fetched or changed: the state
//! report's `error` says `not enough space: need X, have Y`, an `error`
//! event says it once, and the agent looks again every [`RECHECK`], on
//! each scan, and when the desired image changes. The error is cleared
//! once the fetch goes ahead.
//!
//! The cache is also cleared of what no wanted image needs whenever the
//! desired image changes, so that objects a failed fetch left (a full
//! disk, a killed agent) never stand in the way of the next image.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use dom_model::text::human_bytes;
use dom_model::ObjectId;

use crate::agent::Core;
use crate::persist::off_thread;
use crate::report;

/// Least margin kept free beyond the objects fetched.
pub const MARGIN_MIN: u64 = 8 << 20;
/// Most margin kept free beyond the objects fetched.
pub const MARGIN_MAX: u64 = 256 << 20;
/// How often a refused update looks at the free space again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Free and total bytes of a file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// Free for an unprivileged user.
    pub free: u64,
    pub size: u64,
}

/// The free and total bytes of the file system holding `path`.
pub fn room(path: &Path) -> Option<Room> {
    let st = report::statvfs(path)?;
    // The field types differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    let (available, blocks, fragment) =
        (st.f_bavail as u64, st.f_blocks as u64, st.f_frsize as u64);
    Some(Room {
        free: available.saturating_mul(fragment),
        size: blocks.saturating_mul(fragment),
    })
}

/// The margin kept free on a file system of `size` bytes.
pub fn margin(size: u64) -> u64 {
    (size / 100).clamp(MARGIN_MIN, MARGIN_MAX)
}

/// What a fetch of `objects` needs free on a file system of `size` bytes.
pub fn need(objects: &[(ObjectId, u64)], size: u64) -> u64 {
    let bytes: u64 = objects.iter().map(|(_, n)| n).sum();
    bytes.saturating_add(margin(size))
}

impl Core {
    /// Whether `objects` (to be fetched) fit on the file system; when they
    /// do not, drops what the cache holds for no wanted image and looks
    /// again, and when they still do not, reports why and refuses.
    pub(crate) async fn room_for(&mut self, objects: &[(ObjectId, u64)]) -> bool {
        if objects.is_empty() {
            self.room_found();
            return true;
        }
        let dir = self.state_dir.path().to_path_buf();
        let Some(before) = room(&dir) else {
            // Nothing to go by: the fetch finds out.
            return true;
        };
        if need(objects, before.size) <= before.free {
            self.room_found();
            return true;
        }
        // Once per refusal: nothing unwanted enters the cache meanwhile,
        // and a large cache is not listed again on every scan.
        let dropped = if self.space_error.is_none() {
            self.drop_unwanted_objects().await
        } else {
            0
        };
        let Some(after) = room(&dir) else {
            return true;
        };
        let needed = need(objects, after.size);
        if needed <= after.free {
            tracing::info!(
                dropped,
                "made room for the fetch by tidying the object cache"
            );
            self.room_found();
            return true;
        }
        let error = format!(
            "not enough space: need {}, have {}",
            human_bytes(needed),
            human_bytes(after.free)
        );
        if self.space_error.is_none() {
            tracing::warn!(dir = %dir.display(), "update refused: {error}");
            let image = self.current.as_ref().map(|c| c.state.image.to_string());
            self.send_event(report::error_event(
                &self.config.host,
                image.as_deref(),
                &error,
            ));
        }
        self.space_error = Some(error);
        self.space_needed = needed;
        self.publish();
        false
    }

    /// An update refused for want of space looks again: when there is
    /// room now, the machine is compared with its image at once.
    pub(crate) async fn recheck_space(&mut self) {
        let free = room(self.state_dir.path()).map_or(0, |r| r.free);
        if self.space_error.is_some() && free >= self.space_needed {
            tracing::info!("space freed; trying the update again");
            self.enforce().await;
            self.publish();
        }
    }

    /// The desired image changed: an earlier refusal no longer holds, and
    /// objects no wanted image needs go.
    pub(crate) async fn desired_image_changed(&mut self) {
        self.space_error = None;
        self.drop_unwanted_objects().await;
    }

    fn room_found(&mut self) {
        if self.space_error.take().is_some() {
            tracing::info!("there is room for the fetch now");
        }
    }

    /// Removes from the object cache every object neither the desired
    /// image nor the planned image fetched ahead needs; returns how many
    /// went.
    async fn drop_unwanted_objects(&mut self) -> u64 {
        let mut keep: HashSet<ObjectId> = self.prefetch.keep.clone();
        if let Some(current) = &self.current {
            keep.extend(current.manifest.objects().into_iter().map(|(id, _)| id));
        }
        let objects = self.converger.objects.clone();
        match off_thread(move || objects.retain(&keep)).await {
            Ok((count, bytes)) => {
                if count > 0 {
                    tracing::info!(
                        objects = count,
                        bytes,
                        "dropped cached objects no wanted image needs"
                    );
                }
                count
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tidy the object cache");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_share_of_the_file_system_within_bounds() {
        assert_eq!(margin(40 << 20), MARGIN_MIN);
        assert_eq!(margin(10 << 30), (10 << 30) / 100);
        assert_eq!(margin(1 << 40), MARGIN_MAX);
        let id = ObjectId::of(b"x");
        assert_eq!(need(&[(id, 100)], 40 << 20), 100 + MARGIN_MIN);
    }

    #[test]
    fn the_file_system_of_a_directory_has_room() {
        let tmp = tempfile::tempdir().unwrap();
        let room = room(tmp.path()).unwrap();
        assert!(room.size >= room.free && room.size > 0, "{room:?}");
    }
}
