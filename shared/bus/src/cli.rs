//! Parsing a binary's command line, with the project's rule for errors:
//! what clap refuses is one line on stderr, naming the binary and the
//! flag, and exit status 1, like every other error a user meets. `--help`
//! and `--version` print as usual and exit 0.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::Parser;

/// Parses the process's arguments into `C`, or exits as described above.
pub fn parse<C: Parser>() -> C {
    parse_from(std::env::args_os())
}

/// Parses `args` (the program name first) into `C`, or exits as
/// described above.
pub fn parse_from<C, I, T>(args: I) -> C
where
    C: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match C::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let name = C::command().get_name().to_string();
            std::process::exit(match refuse(&name, &error) {
                Some(line) => {
                    eprintln!("{line}");
                    1
                }
                None => {
                    let _ = error.print();
                    match error.kind() {
                        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                        _ => 1,
                    }
                }
            })
        }
    }
}

/// The line to print for a parse error of the binary `name`, or `None`
/// when clap's own text is what the user asked for (help, version, or the
/// help shown when a command is missing).
pub fn refuse(name: &str, error: &clap::Error) -> Option<String> {
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => None,
        _ => Some(format!("{name}: {}", one_line(&error.to_string()))),
    }
}

/// Clap's error text as one line: its first paragraph (the error, with
/// the values it lists), then any tips, without usage and help hints.
fn one_line(text: &str) -> String {
    let mut paragraphs = text.split("\n\n").map(|paragraph| {
        paragraph
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let first = paragraphs.next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(&first).to_string();
    for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
        line.push_str("; ");
        line.push_str(&tip);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "demo", version)]
    struct Demo {
        /// A percentage.
        #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=100))]
        speed_percent: Option<u32>,
        /// A file.
        #[arg(long, value_name = "PATH")]
        file: String,
    }

    fn refused(args: &[&str]) -> Option<String> {
        let error =
            Demo::try_parse_from(std::iter::once("demo").chain(args.iter().copied())).unwrap_err();
        refuse("demo", &error)
    }

    #[test]
    fn a_bad_value_is_one_line_naming_the_flag() {
        assert_eq!(
            refused(&["--file", "f", "--speed-percent", "0"]).unwrap(),
            "demo: invalid value '0' for '--speed-percent <PCT>': 0 is not in 1..=100"
        );
    }

    #[test]
    fn a_missing_flag_is_named() {
        assert_eq!(
            refused(&[]).unwrap(),
            "demo: the following required arguments were not provided: --file <PATH>"
        );
    }

    #[test]
    fn a_misspelt_flag_keeps_the_tip() {
        assert_eq!(
            refused(&["--file", "f", "--speed", "3"]).unwrap(),
            "demo: unexpected argument '--speed' found; tip: a similar argument exists: '--speed-percent'"
        );
    }

    #[test]
    fn help_and_version_are_clap_s_own() {
        assert_eq!(refused(&["--help"]), None);
        assert_eq!(refused(&["--version"]), None);
    }
}
