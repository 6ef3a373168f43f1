//! Fetching a planned image ahead of time. While the machine matches its
//! image, a desired state may name the image it will be moved to next; the
//! objects of that image the machine lacks are fetched into the object
//! cache (verified, at the fetch rate), and kept there, so the update
//! itself only renames. Nothing of the planned image is applied, and
//! nothing is fetched ahead when it would not leave the margin
//! [`crate::space`] keeps free.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use dom_model::{Inode, ObjectId};
use dom_store::ContentStore;

use crate::agent::Core;

/// Wait before trying a failed pre-fetch again.
const RETRY: Duration = Duration::from_secs(60);

/// The planned image whose objects the cache holds (or is to hold).
#[derive(Debug, Default)]
pub(crate) struct Prefetch {
    /// The planned manifest fetched for, once done.
    pub done: Option<ObjectId>,
    /// The objects kept for it.
    pub keep: HashSet<ObjectId>,
    pub retry_at: Option<(ObjectId, Instant)>,
}

impl Core {
    /// Fetches the planned image's missing objects, if there is one, the
    /// machine matches its image, and it was not done already.
    pub(crate) async fn prefetch(&mut self) {
        let Some(current) = &self.current else {
            return;
        };
        let (Some(planned), Some(store), Some(tree)) = (
            current.state.planned.clone(),
            self.store.clone(),
            &self.tree,
        ) else {
            return;
        };
        let id = planned.manifest;
        let waiting = self
            .prefetch
            .retry_at
            .is_some_and(|(failed, at)| failed == id && Instant::now() < at);
        if self.prefetch.done == Some(id) || waiting || !self.report.compliant {
            return;
        }
        let held: HashSet<ObjectId> = tree
            .entries
            .iter()
            .filter_map(|e| match &e.inode {
                Inode::File { object, .. } => Some(*object),
                _ => None,
            })
            .collect();
        let fetch_rate = self.fetch_rate();
        let image = planned.image.to_string();
        let wanted: Vec<(ObjectId, u64)> = match store.manifest(id).await {
            Ok(stored) => stored
                .manifest
                .objects()
                .into_iter()
                .filter(|(object, _)| !held.contains(object))
                .collect(),
            Err(e) => {
                tracing::warn!(
                    image,
                    "cannot pre-fetch the planned image: its manifest: {e}"
                );
                self.prefetch.retry_at = Some((id, Instant::now() + RETRY));
                return;
            }
        };
        let room = crate::space::room(self.state_dir.path());
        if let Some(room) = room.filter(|r| crate::space::need(&wanted, r.size) > r.free) {
            // Only a head start: the update checks the space again, and
            // says so when there is not enough.
            tracing::info!(
                image,
                free = room.free,
                "not pre-fetching the planned image: not enough space"
            );
            self.prefetch.retry_at = Some((id, Instant::now() + RETRY));
            return;
        }
        tracing::info!(
            image,
            objects = wanted.len(),
            "pre-fetching the planned image"
        );
        self.report.fetching = true;
        self.publish();
        let keep = wanted.iter().map(|(object, _)| *object).collect();
        let result = self
            .converger
            .fetch_objects(wanted, BTreeMap::new(), Some(store), fetch_rate)
            .await;
        self.report.fetching = false;
        match result {
            Ok(_) => {
                self.prefetch = Prefetch {
                    done: Some(id),
                    keep,
                    retry_at: None,
                };
            }
            Err(e) => {
                tracing::warn!(image, "cannot pre-fetch the planned image: {e}");
                self.prefetch.retry_at = Some((id, Instant::now() + RETRY));
            }
        }
        self.publish();
    }
}
