//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use dom_bus::{ConnectArgs, LogArgs};

/// Publishes the changes of a Dominator mdb.json file to the MDB.
///
/// The file is a JSON array of MDB records, each with its Hostname
/// ({"Machines": [...]} is read too), replaced atomically (write a new
/// file, rename it over the old one) by whatever owns the inventory. Every
/// machine added or changed is published on dom.mdb.<host>, every machine
/// gone gets an empty payload; unchanged machines are left alone. A file
/// that does not parse is reported and ignored until it is fixed.
#[derive(Debug, Parser)]
#[command(name = "mdbd", version = dom_version::VERSION)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The mdb.json file to follow.
    #[arg(long, env = "MDBD_FILE", value_name = "PATH")]
    pub file: PathBuf,
    /// How often to look at the file's metadata.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}
