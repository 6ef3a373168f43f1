//! domsetup: sets a secured fleet up (see docs/SECURITY.md); the
//! `domsetup` binary is a thin wrapper over [`run`].
//!
//! - `domsetup credential ROLE [HOST] --seed FILE`: a new nkey for a role,
//!   its seed written to FILE (readable by its owner only), and the
//!   nats-server `authorization.users` entry with the role's permissions
//!   printed on stdout. `ops/secure` keeps one such entry per file.
//! - `domsetup auth DIR [--hub-domain H --site-domain S]`: the nats-server `accounts` block (of a site's server, with both domains), with every
//!   user entry of DIR (one file per credential, named after its role:
//!   `viewer.conf`, `subd-web1.conf`) in its role's account.
//! - `domsetup streams`: creates or updates the fleet's streams and object
//!   bucket; run it once with the operator's credentials before the
//!   other roles, which may not create them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dom_bus::roles::{Place, Role};
use dom_bus::{Bus, ConnectArgs, Layout, LogArgs, StreamPlace, Subjects};

/// Sets a secured fleet up: credentials for each role, and the streams.
#[derive(Debug, Parser)]
#[command(name = "domsetup", version = dom_version::VERSION)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new nkey for ROLE (operator, builder, dominator, subd HOST,
    /// viewer): its seed goes to --seed, the nats-server user entry with
    /// the role's permissions to stdout.
    ///
    /// Role site is a remote site's leaf connection to the hub (give
    /// --hub-domain); a subd with --hub-domain and --site-domain is a
    /// machine at a site, whose entry goes on the site's server.
    Credential {
        /// operator, builder, dominator, subd, viewer or site.
        role: String,
        /// The machine, for role subd; the site's name, for role site.
        host: Option<String>,
        /// Where to write the new seed; refused if the file exists.
        #[arg(long, value_name = "FILE")]
        seed: PathBuf,
        /// Subject prefix of the fleet.
        #[arg(long, env = "DOM_PREFIX", default_value = dom_bus::subjects::DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Print the nats-server `accounts` block: the fleet's accounts, what
    /// each imports, and every user entry of DIR (files ROLE.conf or
    /// subd-HOST.conf, as `credential` prints them) in its role's account.
    ///
    /// With --hub-domain and --site-domain, the block of a remote site's
    /// server, whose agents read the hub's domain and the site's.
    Auth {
        /// Directory of user entries.
        dir: PathBuf,
        /// Subject prefix of the fleet.
        #[arg(long, env = "DOM_PREFIX", default_value = dom_bus::subjects::DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Create or update the streams and the object bucket (operator),
    /// then show where each is: replicas, leader, and how far each copy
    /// is behind.
    ///
    /// On a cluster, `--replicas 3` keeps three copies of every stream and
    /// of the bucket, so the fleet survives the loss of a server. Run
    /// again on streams that have fewer, it raises them in place; no
    /// message is lost.
    Streams {
        /// Copies of every stream and of the bucket (1, 3 or 5; at most
        /// the cluster's servers). Without it each keeps what it has.
        #[arg(long, value_parser = replicas)]
        replicas: Option<usize>,
        /// Keep them on servers with this tag (as in nats-server's
        /// `server_tags`); repeatable.
        #[arg(long = "placement-tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Only show where the streams are; change nothing.
        #[arg(long)]
        show: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Set up a remote site (operator): on its leaf node (--server), in the
    /// site's own JetStream domain, mirrors of the hub's images stream and
    /// object bucket. The site's agents then run with `--js-domain HUB
    /// --objects-domain SITE` and fetch each object from the site; state
    /// reports and events still go to the hub (docs/SCALING.md).
    Site {
        /// The hub's JetStream domain (its `jetstream { domain: ... }`).
        #[arg(long, value_name = "DOMAIN")]
        hub_domain: String,
        /// Copies of each mirror, on a site cluster.
        #[arg(long, value_parser = replicas)]
        replicas: Option<usize>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Where the server a credential or an `accounts` block is for runs.
#[derive(Debug, clap::Args)]
pub struct PlaceArgs {
    /// The hub's JetStream domain, for a site's leaf credential and for
    /// the server of a site.
    #[arg(long, value_name = "DOMAIN")]
    pub hub_domain: Option<String>,
    /// The site's JetStream domain, for the server of a site and the
    /// machines there.
    #[arg(long, value_name = "DOMAIN")]
    pub site_domain: Option<String>,
}

impl PlaceArgs {
    fn place(&self) -> anyhow::Result<Place> {
        match (&self.hub_domain, &self.site_domain) {
            (None, None) => Ok(Place::Hub),
            (Some(hub), None) => Ok(Place::HubDomain {
                domain: hub.clone(),
            }),
            (Some(hub), Some(site)) if hub == site => {
                anyhow::bail!("the site's JetStream domain must differ from the hub's ({hub})")
            }
            (Some(hub), Some(site)) => Ok(Place::Site {
                hub: hub.clone(),
                site: site.clone(),
            }),
            (None, Some(_)) => anyhow::bail!("--site-domain needs --hub-domain"),
        }
    }
}

/// Runs one command; errors are returned for the caller to print as one
/// line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Credential {
            role,
            host,
            seed,
            prefix,
            place,
        } => credential(&role, host.as_deref(), &seed, &prefix, &place.place()?),
        Command::Auth { dir, prefix, place } => auth(&dir, &prefix, &place.place()?),
        Command::Streams {
            replicas,
            tags,
            show,
            connect,
        } => {
            let layout = (!show).then_some(Layout { replicas, tags });
            tokio::runtime::Runtime::new()
                .context("tokio runtime")
                .and_then(|runtime| runtime.block_on(streams(&connect, layout)))
        }
        Command::Site {
            hub_domain,
            replicas,
            connect,
        } => tokio::runtime::Runtime::new()
            .context("tokio runtime")
            .and_then(|runtime| runtime.block_on(site(&connect, &hub_domain, replicas))),
    }
}

async fn site(connect: &ConnectArgs, hub: &str, replicas: Option<usize>) -> anyhow::Result<()> {
    let bus = Bus::connect(connect, "domsetup").await?;
    let layout = Layout {
        replicas,
        tags: Vec::new(),
    };
    let made = bus.ensure_site_mirrors(hub, &layout).await?;
    for name in &made {
        dom_bus::outln!(
            "{name}: mirroring the hub's (domain {hub}) on {}",
            bus.server()
        );
    }
    if made.is_empty() {
        dom_bus::outln!("the site's mirrors are there already on {}", bus.server());
    }
    Ok(())
}

fn credential(
    role: &str,
    host: Option<&str>,
    seed: &PathBuf,
    prefix: &str,
    place: &Place,
) -> anyhow::Result<()> {
    let role = Role::new(role, host)?;
    let subjects = Subjects::new(prefix)?;
    // Refused before a seed is written.
    role.permissions_at(&subjects, "U", place)?;
    let key = nkeys::KeyPair::new_user();
    let secret = key.seed().context("encoding the new seed")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(seed)
        .with_context(|| format!("cannot write seed file {}", seed.display()))?;
    writeln!(file, "{secret}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write seed file {}", seed.display()))?;
    let entry = role.user_entry(&subjects, &key.public_key(), place)?;
    dom_bus::output::stdout().write_all(entry.as_bytes())?;
    Ok(())
}

fn auth(dir: &std::path::Path, prefix: &str, place: &Place) -> anyhow::Result<()> {
    let subjects = Subjects::new(prefix)?;
    let mut users = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let role = Role::from_name(name)
            .with_context(|| format!("{}: not named after a role", path.display()))?;
        let entry = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        users.push((role, entry));
    }
    write!(
        dom_bus::output::stdout(),
        "# Written by ops/secure/domsecure from users/*.conf; do not edit.\n{}",
        dom_bus::roles::accounts_config(&subjects, &users, place)
    )?;
    Ok(())
}

/// `--replicas`: 1 to 5, as JetStream allows.
fn replicas(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=5) => Ok(n),
        Ok(n) => Err(format!("{n} is not in 1..=5")),
        Err(e) => Err(e.to_string()),
    }
}

/// Sets the streams up as `layout` says (none: only shows them), then
/// shows where each is.
async fn streams(connect: &ConnectArgs, layout: Option<Layout>) -> anyhow::Result<()> {
    let bus = Bus::connect(connect, "domsetup").await?;
    if let Some(layout) = &layout {
        bus.ensure_streams_laid_out(layout).await?;
        dom_bus::outln!(
            "streams and object bucket of prefix {} are set up on {}",
            bus.subjects.prefix(),
            bus.server()
        );
    }
    let places = bus.stream_places().await?;
    for line in place_lines(&places) {
        dom_bus::outln!("{line}");
    }
    Ok(())
}

/// A table of where each stream is: its replicas, messages, leader and
/// followers (`n2 current`, `n3 behind 12`).
pub fn place_lines(places: &[StreamPlace]) -> Vec<String> {
    let width = places
        .iter()
        .map(|p| p.stream.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut lines = vec![format!(
        "{:width$}  replicas  {:>9}  leader  followers",
        "stream", "messages"
    )];
    for p in places {
        let followers: Vec<String> = p
            .followers
            .iter()
            .map(|(name, current, lag)| match (current, lag) {
                (true, 0) => format!("{name} current"),
                (false, 0) => format!("{name} not current"),
                (_, lag) => format!("{name} behind {lag}"),
            })
            .collect();
        lines.push(format!(
            "{:width$}  {:>8}  {:>9}  {:6}  {}",
            p.stream,
            p.replicas,
            p.messages,
            p.leader.as_deref().unwrap_or("-"),
            if followers.is_empty() {
                "-".to_string()
            } else {
                followers.join(", ")
            }
        ));
    }
    lines
}
