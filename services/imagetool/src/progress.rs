//! Progress display on a terminal; silent otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dom_scan::Counters;

pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Shows progress when asked to and stderr is a terminal.
    pub fn new(wanted: bool) -> Self {
        Self {
            enabled: wanted && std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self, bar: ProgressBar) -> ProgressBar {
        if !self.enabled {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar
    }

    pub fn spinner(&self, message: &'static str) -> ProgressBar {
        let bar = self.bar(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
        bar.set_message(message);
        bar
    }

    /// A bar of bytes done of `bytes`, its message the objects done of
    /// `objects`.
    pub fn transfer(&self, objects: u64, bytes: u64) -> ProgressBar {
        let bar = self.bar(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template("{msg}, {bytes}/{total_bytes} {wide_bar} {elapsed}")
                .expect("template"),
        );
        bar.set_message(format!("0/{objects} objects"));
        bar
    }

    /// Updates a spinner with scan counts until aborted.
    pub fn tick_scan(
        &self,
        bar: ProgressBar,
        counters: Arc<Counters>,
        uploaded: Arc<std::sync::atomic::AtomicU64>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let (files, bytes) = counters.counts();
                let sent = uploaded.load(std::sync::atomic::Ordering::Relaxed);
                bar.set_message(format!(
                    "scanning: {files} files, {} hashed, {} uploaded",
                    crate::human_bytes(bytes),
                    crate::human_bytes(sent)
                ));
                bar.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}
