//! The images a command names, checked before anything is published: an
//! MDB record or a control naming an image that does not exist, was
//! deleted or has expired would only put machines in error, so it is
//! refused unless `--force` (an image about to be added, say). The
//! words are the policy's own ([`Fleet::resolve`]), so the refusal reads
//! as the dominator would report the machine.

use anyhow::bail;
use dom_bus::stamp::now_unix;
use dom_bus::{Bus, FleetKind};
use dom_model::policy::ImageProblem;
use dom_model::{Fleet, ImageName};

/// The image records (and tombstones) a check looks at.
pub struct Images {
    fleet: Fleet,
    now: i64,
}

impl Images {
    /// Every image on the bus, for checking many names (`mdb load`).
    pub async fn all(bus: &Bus) -> anyhow::Result<Self> {
        let view = bus.view_of(&[FleetKind::Image]).await?;
        Ok(Self {
            fleet: view.fleet,
            now: now_unix(),
        })
    }

    /// The one image `name`, for checking it alone.
    pub async fn one(bus: &Bus, name: &ImageName) -> anyhow::Result<Self> {
        let mut fleet = Fleet::default();
        if let Some(stored) = bus.image(name).await? {
            fleet.add_image(stored.message);
        }
        Ok(Self {
            fleet,
            now: now_unix(),
        })
    }

    /// Why `name` is no live image now, if it is not.
    pub fn problem(&self, name: &ImageName) -> Option<ImageProblem> {
        self.fleet.resolve(name, self.now).err()
    }

    /// Refuses `name` unless it is a live image or `force`.
    pub fn check(&self, name: &ImageName, force: bool) -> anyhow::Result<()> {
        match self.problem(name) {
            Some(problem) if !force => bail!("{}", refusal(&problem)),
            _ => Ok(()),
        }
    }
}

/// The one line that refuses an image, with what to do instead.
pub fn refusal(problem: &ImageProblem) -> String {
    let hint = match problem {
        ImageProblem::Unknown(_) => "add it with imagetool first",
        ImageProblem::Deleted { .. } | ImageProblem::Expired { .. } => "pick a live image",
    };
    format!("{problem}; {hint} (or --force)")
}

/// `name` parsed and, unless `force`, checked to be a live image.
pub async fn live(bus: &Bus, name: &str, force: bool) -> anyhow::Result<ImageName> {
    let name = ImageName::parse(name)?;
    if !force {
        Images::one(bus, &name).await?.check(&name, false)?;
    }
    Ok(name)
}
