//! The man pages and shell completions of every binary, written from the
//! same clap definitions the binaries parse with, so they cannot drift
//! from the flags. `ops/package/build.sh` puts them in the packages; the
//! `dom-assets` binary is a thin wrapper over [`write`].
//!
//! Under the output directory the layout is that of `/usr/share`:
//!
//! - `man/man1/NAME.1`, and `NAME-COMMAND.1` for each subcommand
//! - `bash-completion/completions/NAME`
//! - `zsh/vendor-completions/_NAME`
//! - `fish/vendor_completions.d/NAME.fish`

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Arg, Command, CommandFactory};
use clap_complete::Shell;

/// Every binary the packages install, in the order of the packages: the
/// agent's, then the fleet servers' and tools'.
pub const BINARIES: &[&str] = &[
    "subd",
    "dominator",
    "domtool",
    "mdbd",
    "imagetool",
    "domsetup",
    "domsecure",
];

/// The command-line definition of the binary `name`.
pub fn command(name: &str) -> Result<Command> {
    Ok(match name {
        "subd" => subd::Cli::command(),
        "dominator" => dominator::Cli::command(),
        "domtool" => domtool::Cli::command(),
        "mdbd" => mdbd::Cli::command(),
        "imagetool" => imagetool::Cli::command(),
        "domsetup" => domsetup::Cli::command(),
        "domsecure" => domsecure(),
        _ => bail!("no binary {name}; expected one of {}", BINARIES.join(", ")),
    })
}

/// The commands of `domsecure` (a bash script, ops/secure/domsecure),
/// for its man page and completions; the script parses its own.
pub fn domsecure() -> Command {
    let name = || {
        Arg::new("name")
            .long("name")
            .value_name("DNS-OR-IP")
            .action(clap::ArgAction::Append)
            .help("Another name the server's certificate is for (repeatable)")
    };
    let listen = || {
        Arg::new("listen")
            .long("listen")
            .value_name("ADDR")
            .help("The client address of the server")
    };
    let monitor = || {
        Arg::new("monitor")
            .long("monitor")
            .value_name("ADDR|off")
            .help("The server's monitoring address, or off")
    };
    let host = || {
        Arg::new("host")
            .value_name("HOST")
            .required(true)
            .help("The machine's name on the bus")
    };
    Command::new("domsecure")
        .version(dom_version::VERSION)
        .about("Set a secured fleet's NATS server up: TLS, and one nkey credential per role")
        .long_about(
            "Set a secured fleet's NATS server up: a CA and the server's certificate, one nkey \
             user per role (operator, builder, dominator, viewer, and one subd per machine) \
             with only the permissions its role needs, and the server's configuration. \
             Every command works in one directory (--dir) and, after changing users or \
             certificates, makes a server running from it re-read them. Credentials are \
             nkey seeds in DIR/creds/ROLE.nk: give one to any tool with --nkey FILE, and \
             the CA with --tls-ca DIR/ca/ca.pem. domsetup makes the nkeys and permissions.",
        )
        .subcommand_required(true)
        .arg(
            Arg::new("dir")
                .long("dir")
                .global(true)
                .value_name("DIR")
                .env("DOM_SECURE_DIR")
                .value_hint(clap::ValueHint::DirPath)
                .help("The directory of the CA, credentials and configuration (installed: /var/lib/domsecure; in a checkout: var/secure)"),
        )
        .arg(
            Arg::new("prefix")
                .long("prefix")
                .global(true)
                .value_name("PREFIX")
                .env("DOM_PREFIX")
                .help("The fleet's subject prefix [default: dom]"),
        )
        .subcommand(
            Command::new("init")
                .about("A CA, the server's certificate, the operator, builder, dominator and viewer credentials, and nats.conf; what exists is kept")
                .args([name(), listen(), monitor()])
                .arg(Arg::new("domain").long("domain").value_name("DOMAIN").help("The hub's JetStream domain (for remote sites)"))
                .arg(Arg::new("leafnodes").long("leafnodes").value_name("ADDR").help("Where the hub accepts the sites' leaf connections")),
        )
        .subcommand(Command::new("add-host").about("A subd credential for HOST").arg(host()))
        .subcommand(Command::new("remove-host").about("HOST's credential stops working").arg(host()))
        .subcommand(
            Command::new("rotate")
                .about("A new credential for ROLE; the old one stops working")
                .arg(
                    Arg::new("role")
                        .value_name("ROLE")
                        .required(true)
                        .help("operator, builder, dominator, viewer, or subd (with HOST)"),
                )
                .arg(Arg::new("host").value_name("HOST").help("The machine (for subd) or site (for site)")),
        )
        .subcommand(Command::new("server-cert").about("A new server certificate").arg(name()))
        .subcommand(
            Command::new("add-site")
                .about("A remote site: its leaf credential on the hub, and its server's files in --site-dir")
                .arg(Arg::new("site").value_name("NAME").required(true).help("The site's JetStream domain"))
                .arg(
                    Arg::new("site-dir")
                        .long("site-dir")
                        .value_name("DIR")
                        .required(true)
                        .value_hint(clap::ValueHint::DirPath),
                )
                .arg(Arg::new("hub-url").long("hub-url").value_name("URL").required(true).help("The hub's leaf address, tls://HUB:7422"))
                .args([name(), listen(), monitor()]),
        )
        .subcommand(
            Command::new("remove-site")
                .about("The site's link to the hub stops working")
                .arg(Arg::new("site").value_name("NAME").required(true)),
        )
        .subcommand(Command::new("reload").about("Gather the users into auth.conf again and make the running server re-read it"))
}

/// Writes the man pages and completions of `binaries` under `out` (the
/// layout above); returns the files written.
pub fn write(out: &Path, binaries: &[&str]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out.join("man/man1");
    fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    for &name in binaries {
        let command = command(name)?;
        written.extend(man_pages(&command, &man)?);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = out.join(completion_path(shell, name));
            let dir = path.parent().expect("a completion has a directory");
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut command.clone(), name, &mut text);
            fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Where the completion of `name` for `shell` goes, under `/usr/share`.
pub fn completion_path(shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Bash => format!("bash-completion/completions/{name}"),
        Shell::Zsh => format!("zsh/vendor-completions/_{name}"),
        Shell::Fish => format!("fish/vendor_completions.d/{name}.fish"),
        _ => unreachable!("only bash, zsh and fish are packaged"),
    }
    .into()
}

/// The page of `command` and, one each, of its subcommands at every
/// depth (`domtool-mdb-set.1`), in `dir`; as `clap_mangen::generate_to`
/// does, but saying what it wrote.
fn man_pages(command: &Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fn pages(command: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        let path = clap_mangen::Man::new(command.clone())
            .generate_to(dir)
            .with_context(|| {
                format!(
                    "cannot write the page of {} in {}",
                    command.get_name(),
                    dir.display()
                )
            })?;
        written.push(path);
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            pages(sub, dir, written)?;
        }
        Ok(())
    }
    let mut command = command.clone().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    pages(&command, dir, &mut written)?;
    Ok(written)
}
