//! `window-bench [--files N] [--dir DIR]`: the time services are down in an
//! update that changes N files (default 1,000): a machine tree and a new
//! version of it are made under DIR (default: a temporary directory), the
//! new version's objects are put in the agent's cache as a fetch would,
//! and the update is applied with a trigger naming a service for every
//! path (service command `true`).
//!
//! Prints `window=… transition=… update=…` in seconds: `window` is the
//! tree-changing part, `transition` from the first service command to the
//! end of the last (so it includes two runs of `true`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Parser;
use dom_model::plan::{plan, Desired};
use dom_model::Triggers;
use dom_scan::{scan_tree, Counters, ScanOptions};
use subd::objects::ObjectCache;
use subd::services::ServiceCommand;
use subd::update::{apply, UpdateContext};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    files: usize,
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn tree(root: &Path, files: usize, version: &str) -> Result<()> {
    for i in 0..files {
        let dir = root.join(format!("srv/app/d{}", i % 25));
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join(format!("f{i}.conf")),
            format!("{version} {i}\n").repeat(40),
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let (machine_root, source) = (tmp.path().join("machine"), tmp.path().join("source"));
    tree(&machine_root, args.files, "old")?;
    tree(&source, args.files, "new")?;
    let options = ScanOptions {
        protected: vec!["/.subd".into()],
        ..Default::default()
    };
    let machine = scan_tree(&machine_root, &options, &Counters::default())?.manifest;
    let image = scan_tree(&source, &options, &Counters::default())?.manifest;
    let the_plan = plan(&machine, &Desired::sparse(&image));
    if the_plan.installs.len() != args.files {
        bail!(
            "expected {} installs, planned {}",
            args.files,
            the_plan.installs.len()
        );
    }
    let objects = ObjectCache::open(machine_root.join(".subd/objects"))?;
    for install in &the_plan.installs {
        objects.insert_from_file(
            &install.object,
            &source.join(install.path.trim_start_matches('/')),
        )?;
    }
    let triggers = Triggers::parse(r#"[{"MatchLines": ["/srv/.*"], "Service": "app"}]"#)?;
    let services = ServiceCommand::parse("true")?;
    let outcome = apply(
        &the_plan,
        &UpdateContext {
            root: machine_root.clone(),
            objects: &objects,
            old_triggers: Some(&triggers),
            new_triggers: &triggers,
            services: &services,
            reboot: None,
        },
    );
    if !outcome.ok || outcome.changed != args.files as u64 {
        bail!(
            "update failed: {:?} ({} changed)",
            outcome.error,
            outcome.changed
        );
    }
    println!(
        "files={} window={:.4} transition={:.4} update={:.4}",
        args.files,
        outcome.window.as_secs_f64(),
        outcome.transition.map_or(0.0, |t| t.as_secs_f64()),
        outcome.duration.as_secs_f64()
    );
    Ok(())
}
