//! The `domtool` binary's flags: what it refuses is one line naming the
//! flag, with exit status 1; `--help` and `--version` print and exit 0.

use std::process::Command;

use dom_tests::Run;

fn domtool(args: &[&str]) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_domtool"))
            .args(args)
            .env_remove("DOM_SERVER")
            .output()
            .expect("run domtool"),
    )
}

#[test]
fn flags_clap_refuses_are_one_line() {
    let run = domtool(&["show", "web1", "--events", "many"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.one_line_error();
    assert!(
        line.starts_with("domtool: invalid value 'many' for '--events <EVENTS>'"),
        "{line}"
    );
    let run = domtool(&["disable-updates"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "domtool: the following required arguments were not provided: <REASON>"
    );
}

#[test]
fn help_and_version_print_and_exit_0() {
    for flag in ["--help", "--version"] {
        let run = domtool(&[flag]);
        assert!(run.stdout.contains("domtool"), "{flag}: {}", run.stdout);
        run.ok();
    }
}
