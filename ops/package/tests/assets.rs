//! `dom-assets` writes a man page and bash, zsh and fish completions for
//! every binary the packages install, and a page for each subcommand.

use std::path::Path;
use std::process::Command;

use dom_assets::BINARIES;

fn dom_assets(out: &Path, binaries: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dom-assets"))
        .arg(out)
        .args(binaries)
        .output()
        .expect("run dom-assets")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_binary_has_a_man_page_and_completions() {
    let out = tempfile::tempdir().unwrap();
    let run = dom_assets(out.path(), &[]);
    assert!(run.status.success(), "{run:?}");
    for name in BINARIES {
        let page = read(&out.path().join(format!("man/man1/{name}.1")));
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH"),
            "{name}.1: {page}"
        );
        assert!(
            page.contains(&format!(".TH {name} 1")),
            "{name}.1 has no title: {page}"
        );
        // The version with its revision, as --version prints it.
        assert!(
            page.contains(dom_version::VERSION),
            "{name}.1 has no version"
        );
        let bash = read(
            &out.path()
                .join(format!("bash-completion/completions/{name}")),
        );
        assert!(
            bash.contains(&format!("complete -F _{name}")),
            "{name}: {bash}"
        );
        let zsh = read(&out.path().join(format!("zsh/vendor-completions/_{name}")));
        assert!(
            zsh.starts_with(&format!("#compdef {name}")),
            "_{name}: {zsh}"
        );
        let fish = read(
            &out.path()
                .join(format!("fish/vendor_completions.d/{name}.fish")),
        );
        assert!(
            fish.contains(&format!("complete -c {name}")),
            "{name}.fish: {fish}"
        );
    }
}

#[test]
fn subcommands_have_pages_of_their_own() {
    let out = tempfile::tempdir().unwrap();
    let run = dom_assets(out.path(), &["domtool", "imagetool", "domsecure"]);
    assert!(run.status.success(), "{run:?}");
    for page in [
        "imagetool-add",
        "imagetool-show",
        "domtool-mdb",
        "domtool-mdb-set",
        "domsecure-add-host",
    ] {
        let text = read(&out.path().join(format!("man/man1/{page}.1")));
        assert!(text.contains(&format!(".TH {page} 1")), "{page}.1: {text}");
    }
    // Only what was asked for.
    assert!(!out.path().join("man/man1/subd.1").exists());
    // No page for clap's own `help` subcommand.
    assert!(!out.path().join("man/man1/domtool-help.1").exists());
}

#[test]
fn an_unknown_binary_is_one_line() {
    let out = tempfile::tempdir().unwrap();
    let run = dom_assets(out.path(), &["subdd"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("dom-assets: invalid value 'subdd'"),
        "{stderr}"
    );
}

#[test]
fn domsecure_pages_name_the_commands_the_script_has() {
    // The script parses its own arguments: its man page and completions
    // come from a clap definition kept beside the others, which must name
    // exactly the commands of the script's `case`.
    let script = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../secure/domsecure"));
    let (_, commands) = script
        .split_once("case \"$command\" in\n")
        .expect("the script's command case");
    let (commands, _) = commands
        .split_once("\n    esac")
        .expect("the end of the case");
    let mut in_script: Vec<&str> = commands
        .lines()
        .filter_map(|line| line.strip_prefix("        ")?.split_once(')'))
        .map(|(name, _)| name)
        .filter(|name| *name != "*" && !name.starts_with(char::is_whitespace))
        .collect();
    in_script.sort();
    let mut defined: Vec<String> = dom_assets::domsecure()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    defined.sort();
    assert_eq!(in_script, defined);
}
