//! Asking the dominator before an update that fires HighImpact triggers
//! (DESIGN §5 step 5).
//!
//! When the changed paths fire a trigger marked `HighImpact` (in the old
//! image's triggers or the new one's), the update waits for the
//! dominator's permission, which caps how many machines run such updates
//! at once. Until the machine's desired state carries
//! `high_impact_granted`, nothing is touched: the agent fetches what the
//! update needs into its cache, asks in its state report (`high_impact`)
//! and keeps scanning. Once the grant arrives the next scan applies the
//! update, and the request is withdrawn, which frees the place.
//!
//! Two rules keep a grant from being used twice:
//!
//! - A grant is used once. After an update ran under it, the agent neither
//!   asks nor runs another HighImpact update until the dominator has
//!   withdrawn it (a desired state without the grant), so the place goes
//!   round the fleet. This is kept in `applied.json`, across restarts.
//! - A grant is trusted only when the bus delivered it to this run of the
//!   agent: the desired state kept in the state directory may carry one
//!   the dominator has handed on since.
//!
//! An agent that no dominator manages never gets a grant, so its
//! HighImpact updates wait for ever, unless it runs without asking
//! ([`Config::high_impact_permission`](crate::Config::high_impact_permission)
//! off: `--no-high-impact-permission`).

use dom_model::report::HighImpactRequest;
use dom_model::DesiredState;

use crate::agent::Core;
use crate::update::ServicePlan;

impl Core {
    /// Whether an update firing HighImpact triggers may run now.
    pub(crate) fn may_run_high_impact(&self) -> bool {
        !self.config.high_impact_permission
            || (!self.applied.high_impact_spent && self.current.as_ref().is_some_and(|c| c.granted))
    }

    /// Asks for the dominator's permission to update to `image`, in the
    /// state report the caller publishes. A grant already used is waited
    /// out first: asking again before the dominator saw it given back
    /// would keep it.
    pub(crate) fn ask_high_impact(&mut self, image: &str, services: &ServicePlan) {
        if self.applied.high_impact_spent {
            self.withdraw_high_impact();
            tracing::debug!(
                image,
                "waiting for the dominator to take back the HighImpact grant used"
            );
            return;
        }
        let request = HighImpactRequest {
            image: image.to_string(),
            services: services.high_impact_services.clone(),
        };
        if self.report.high_impact.as_ref() != Some(&request) {
            tracing::info!(
                image,
                services = ?request.services,
                "waiting for the dominator's permission to run HighImpact triggers"
            );
            self.report.high_impact = Some(request);
        }
    }

    /// Withdraws the request, if there is one.
    pub(crate) fn withdraw_high_impact(&mut self) {
        if let Some(request) = self.report.high_impact.take() {
            tracing::debug!(image = request.image, "HighImpact request withdrawn");
        }
    }

    /// An update firing HighImpact triggers ran: its grant is spent (kept
    /// with the update's result) and the request withdrawn.
    pub(crate) fn used_high_impact(&mut self) {
        if self.config.high_impact_permission {
            self.applied.high_impact_spent = true;
        }
        self.withdraw_high_impact();
    }

    /// A desired state the bus delivered (new or a repeat): a grant it
    /// carries is trusted once it is enforced, and one without a grant
    /// means the dominator took back any grant given before.
    pub(crate) async fn high_impact_delivered(&mut self, state: &DesiredState) {
        if !state.high_impact_granted && self.applied.high_impact_spent {
            tracing::debug!("the dominator took back the HighImpact grant used");
            self.applied.high_impact_spent = false;
            self.keep_applied("the grant's return").await;
        }
        if let Some(current) = self.current.as_mut().filter(|c| c.state == *state) {
            current.granted = state.high_impact_granted;
        }
    }
}
