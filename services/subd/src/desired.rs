//! Taking on a desired state: a refused one is reported and changes
//! nothing; an accepted one has its manifest read from the store (or, for
//! the state kept from before, from the state directory), is kept with it
//! in the state directory, and from then on decides the scan's filter and
//! rate limit and what the machine is compared with.

use std::sync::Arc;

use dom_bus::DesiredMessage;
use dom_model::{DesiredState, Filter, Manifest};

use crate::agent::{Core, Current};
use crate::report;
use crate::scanner::ScanSpec;

impl Core {
    /// A desired state from the bus.
    pub(crate) async fn desired(&mut self, message: DesiredMessage) {
        let state = match message.state {
            Ok(state) => state,
            Err(refused) => {
                let reason = format!("refused desired state #{}: {refused}", message.sequence);
                tracing::warn!("{reason}");
                self.send_event(report::rejected_event(&self.config.host, &reason));
                self.desired_error = Some(reason);
                self.publish();
                return;
            }
        };
        self.desired_error = None;
        self.high_impact_delivered(&state).await;
        let known = self.current.as_ref().is_some_and(|c| c.state == state)
            || self.waiting.as_ref().is_some_and(|(_, w)| *w == state);
        if !known {
            // The scan to act on runs while the manifest is read.
            self.scan_urgently();
            self.waiting = Some((message.sequence, state));
            self.load_waiting().await;
        }
        self.publish();
    }

    /// Reads the manifest of the desired state waiting for it, when it can,
    /// and enforces that state from then on.
    pub(crate) async fn load_waiting(&mut self) {
        let Some((sequence, state)) = self.waiting.clone() else {
            return;
        };
        self.report.desired_image = Some(state.image.to_string());
        let same = self
            .current
            .as_ref()
            .filter(|c| c.state.manifest == state.manifest);
        if let Some(manifest) = same.map(|c| c.manifest.clone()) {
            let encoded = manifest.encode();
            self.adopt(sequence, state, manifest, &encoded, true).await;
            return;
        }
        let Some(store) = &self.store else {
            return;
        };
        let started = std::time::Instant::now();
        match dom_store::ContentStore::manifest(store, state.manifest).await {
            Ok(stored) => {
                tracing::debug!(
                    bytes = stored.encoded.len(),
                    entries = stored.manifest.entries.len(),
                    elapsed = ?started.elapsed(),
                    "manifest read"
                );
                let manifest = Arc::new(stored.manifest);
                self.adopt(sequence, state, manifest, &stored.encoded, true)
                    .await
            }
            Err(dom_store::StoreError::NotManifest { error, .. }) => {
                let reason = format!(
                    "refused desired state #{sequence}: the manifest of image {} is unusable: {error}",
                    state.image
                );
                tracing::warn!("{reason}");
                self.send_event(report::rejected_event(&self.config.host, &reason));
                self.desired_error = Some(reason);
                self.waiting = None;
            }
            Err(e) => {
                let error = format!("cannot read the manifest of image {}: {e}", state.image);
                if self.manifest_error.as_ref() != Some(&error) {
                    tracing::warn!("{error}");
                    let image = Some(state.image.as_str());
                    self.send_event(report::error_event(&self.config.host, image, &error));
                    self.manifest_error = Some(error);
                }
            }
        }
    }

    /// Enforces `state` from now on; `keep` (a state the bus delivered)
    /// saves it in the state directory first and trusts a HighImpact grant
    /// it carries.
    pub(crate) async fn adopt(
        &mut self,
        sequence: u64,
        state: DesiredState,
        manifest: Arc<Manifest>,
        encoded: &[u8],
        keep: bool,
    ) {
        let (Ok(filter), Ok(triggers)) = (state.compile_filter(), state.compile_triggers()) else {
            // Decoding validated both; a kept state was validated on load.
            tracing::warn!(image = %state.image, "desired state does not compile; ignored");
            return;
        };
        if keep {
            // Kept while the agent gets on with it: only an update must
            // wait for it (see `kept`), so that a machine that restarts
            // without NATS never goes back to the image before.
            self.kept().await;
            let (dir, kept, encoded) = (self.state_dir.clone(), state.clone(), encoded.to_vec());
            let started = std::time::Instant::now();
            self.keeping = Some(tokio::task::spawn_blocking(move || {
                let saved = dir.save_desired(sequence, &kept, &encoded);
                tracing::debug!(elapsed = ?started.elapsed(), "desired state kept");
                saved
            }));
        }
        let old = self.current.take();
        let image_changed = old.as_ref().is_none_or(|c| c.state.image != state.image);
        let filter_changed = old
            .as_ref()
            .is_none_or(|c| c.state.filter != state.filter || c.state.sparse != state.sparse);
        tracing::info!(image = %state.image, sequence, "desired state accepted");
        self.report.desired_image = Some(state.image.to_string());
        self.current = Some(Current {
            sequence,
            granted: keep && state.high_impact_granted,
            state,
            manifest,
            filter,
            triggers,
        });
        self.waiting = None;
        self.manifest_error = None;
        if image_changed {
            if let Some(current) = &self.current {
                let image = current.state.image.to_string();
                self.drop_health_check_unless(&image).await;
            }
            if old.is_some() {
                self.desired_image_changed().await;
            }
            self.compliant = None;
            self.retry_at = None;
            self.retry_delay = self.config.retry_min;
        }
        if filter_changed {
            self.epoch += 1;
        }
        if self.scanner.is_some() {
            let spec = self.scan_spec().await;
            if let Some(scanner) = &self.scanner {
                scanner.set_spec(spec);
            }
            // The scan asked for on arrival serves, unless it was made
            // with the old filter, or was taken already (the manifest
            // could not be read then).
            if filter_changed || !self.urgent {
                self.scan_urgently();
            }
        }
    }

    /// Takes the disk's speed on once a measurement under way is done, for
    /// background scans from then on.
    pub(crate) async fn measured_media(&mut self) {
        if self.media.measured().await.is_some() {
            let spec = self.scan_spec().await;
            if let Some(scanner) = &self.scanner {
                scanner.set_spec(spec);
            }
        }
    }

    /// Waits until the last desired state accepted is kept in the state
    /// directory.
    pub(crate) async fn kept(&mut self) {
        let Some(keeping) = self.keeping.take() else {
            return;
        };
        let saved = keeping
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot keep the desired state; it is enforced, but not across a restart without NATS");
        }
    }

    /// The fetch rate limit now: the desired state's, else the agent's.
    pub(crate) fn fetch_rate(&self) -> Option<u64> {
        self.current
            .as_ref()
            .and_then(|c| c.state.config.fetch_rate)
            .or(self.config.fetch_rate)
    }

    /// The filter and rate limit scans use now. The limit is for
    /// background scans; urgent ones go at full speed unless the operator
    /// chose otherwise.
    pub(crate) async fn scan_spec(&mut self) -> ScanSpec {
        let percent = self
            .current
            .as_ref()
            .and_then(|c| c.state.config.scan_speed_percent)
            .unwrap_or(self.config.scan_speed_percent);
        let bytes_per_second = if percent.is_full() {
            None
        } else {
            let speed = self.media.speed(&self.config.root, &self.state_dir).await;
            Some(percent.of(speed))
        };
        self.report.scan_rate = bytes_per_second;
        self.observed
            .rate_limits(bytes_per_second, self.fetch_rate());
        ScanSpec {
            filter: self
                .current
                .as_ref()
                .and_then(|c| c.filter.clone())
                .unwrap_or_else(Filter::empty),
            epoch: self.epoch,
            rate: bytes_per_second,
        }
    }
}
