//! The `subd` binary's flags: what it refuses is one line naming the
//! flag, with exit status 1; `--help` and `--version` print and exit 0.

use std::process::Command;

use dom_tests::Run;

fn subd(args: &[&str]) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_subd"))
            .args(args)
            .env_remove("DOM_SERVER")
            .output()
            .expect("run subd"),
    )
}

#[track_caller]
fn refused(args: &[&str]) -> String {
    let run = subd(args);
    assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
    run.one_line_error()
}

#[test]
fn a_value_out_of_range_is_one_line_naming_the_flag() {
    assert_eq!(
        refused(&["--scan-speed-percent", "0"]),
        "subd: invalid value '0' for '--scan-speed-percent <PERCENT>': 0 is not between 0.001 and 100"
    );
    assert_eq!(
        refused(&["--health-timeout", "0s"]),
        "subd: invalid value '0s' for '--health-timeout <DURATION>': a duration of 0 leaves no time to check"
    );
    assert_eq!(
        refused(&["--fetch-rate", "10M"]),
        "subd: invalid value '10M' for '--fetch-rate <BYTES>': invalid digit found in string"
    );
}

#[test]
fn a_misspelt_flag_is_one_line_with_the_spelling() {
    assert_eq!(
        refused(&["--scan-speed", "5"]),
        "subd: unexpected argument '--scan-speed' found; \
         tip: a similar argument exists: '--scan-speed-percent'"
    );
}

#[test]
fn an_http_flag_that_is_no_address_is_one_line() {
    assert_eq!(
        refused(&["--http", "nonsense"]),
        "subd: invalid value 'nonsense' for '--http <ADDR>': \
         not an address: give HOST:PORT, :PORT (every interface) or off"
    );
}

#[test]
fn help_and_version_print_and_exit_0() {
    for flag in ["--help", "--version"] {
        let run = subd(&[flag]);
        assert!(run.stdout.contains("subd"), "{flag}: {}", run.stdout);
        assert_eq!(run.stderr, "", "{flag}");
        run.ok();
    }
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    // The package build sets DOM_REVISION; a build in a checkout takes
    // the commit it was built from, which is this checkout's HEAD.
    let revision = match std::env::var("DOM_REVISION") {
        Ok(revision) if !revision.is_empty() => revision,
        _ => {
            let head = Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("run git");
            assert!(head.status.success(), "git rev-parse: {head:?}");
            String::from_utf8(head.stdout)
                .expect("utf-8")
                .trim()
                .to_string()
        }
    };
    assert_eq!(
        subd(&["--version"]).ok(),
        format!("subd {} (rev {revision})\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_server_list_that_does_not_parse_is_one_line_at_start() {
    // Before: the agent started and called it an outage for ever.
    let error = refused(&[
        "--server",
        "nats://a:4222,nats://b:42x22",
        "--hostname",
        "web1",
        "--root",
        "/nonexistent",
    ]);
    assert!(
        error.starts_with("subd: invalid value 'nats://a:4222,nats://b:42x22' for '--server <SERVER>': nats://b:42x22: "),
        "{error}"
    );
    let run = Run::from(
        Command::new(env!("CARGO_BIN_EXE_subd"))
            .args(["--hostname", "web1", "--root", "/nonexistent"])
            .env("DOM_SERVER", "nats://a:4222,,nats://b:4222")
            .output()
            .expect("run subd"),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run.one_line_error();
    assert!(error.contains("an empty address between commas"), "{error}");
}
