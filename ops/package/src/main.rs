//! `dom-assets OUT [BINARY...]`: writes the man pages and shell
//! completions of the binaries (default: all) under OUT, in the layout of
//! /usr/share (see the library).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Write the man pages and shell completions (bash, zsh, fish) of the
/// project's binaries under OUT, laid out as in /usr/share.
#[derive(Debug, Parser)]
#[command(name = "dom-assets", version = dom_version::VERSION)]
struct Cli {
    /// The directory to write into (man/man1, bash-completion, zsh, fish).
    #[arg(value_name = "OUT")]
    out: PathBuf,
    /// The binaries to write them for (default: every one).
    #[arg(value_name = "BINARY", value_parser = clap::builder::PossibleValuesParser::new(dom_assets::BINARIES))]
    binaries: Vec<String>,
}

fn main() -> ExitCode {
    let cli: Cli = dom_bus::cli::parse();
    let binaries: Vec<&str> = if cli.binaries.is_empty() {
        dom_assets::BINARIES.to_vec()
    } else {
        cli.binaries.iter().map(String::as_str).collect()
    };
    match dom_assets::write(&cli.out, &binaries) {
        Ok(written) => {
            println!(
                "dom-assets: {} files in {}",
                written.len(),
                cli.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dom-assets: {e:#}");
            ExitCode::FAILURE
        }
    }
}
