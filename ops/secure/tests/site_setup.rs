//! Setting a secured remote site up with bad input: one line saying what
//! is wrong, and nothing written (no seed, no user entry, no site
//! directory).

use std::path::Path;
use std::process::Command;

use dom_tests::{repo_root, Run};

fn domsecure(dir: &Path, args: &[&str]) -> Run {
    Run::from(
        Command::new(repo_root().join("ops/secure/domsecure"))
            .arg("--dir")
            .arg(dir)
            .args(args)
            .env("DOMSETUP", env!("CARGO_BIN_EXE_domsetup"))
            .env_remove("DOM_SECURE_DIR")
            .output()
            .expect("domsecure runs"),
    )
}

#[track_caller]
fn refused(dir: &Path, args: &[&str], says: &str) {
    let run = domsecure(dir, args);
    assert_eq!(run.code, 1, "{args:?}: {}{}", run.stdout, run.stderr);
    let line = run.stderr.trim();
    assert!(
        line.starts_with("domsecure: ") && line.contains(says) && !line.contains('\n'),
        "{args:?}: {line}"
    );
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = dom_tests::files_under(dir)
        .iter()
        .map(|f| f.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn a_site_needs_a_hub_with_a_domain_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, site) = (dir.path().join("hub"), dir.path().join("site1"));
    let site_dir = site.display().to_string();
    let url = "tls://127.0.0.1:7422";
    let add_site = [
        "add-site",
        "site1",
        "--site-dir",
        &site_dir,
        "--hub-url",
        url,
    ];

    // Without a domain, a server is no hub.
    assert_eq!(domsecure(&hub, &["init", "--monitor", "off"]).code, 0);
    let before = files(&hub);
    refused(&hub, &add_site, "is not a hub: run domsecure init --domain");
    assert_eq!(files(&hub), before);
    assert!(!site.exists());
    refused(
        &hub,
        &["init", "--leafnodes", "127.0.0.1:7422"],
        "--leafnodes needs --domain",
    );

    let hub = dir.path().join("hub2");
    let init = domsecure(&hub, &["init", "--monitor", "off", "--domain", "hub"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    assert!(std::fs::read_to_string(hub.join("nats.conf"))
        .unwrap()
        .contains("domain: hub"));
    let before = files(&hub);
    for (args, says) in [
        (
            vec!["add-site", "site1", "--hub-url", url],
            "--site-dir DIR is needed",
        ),
        (
            vec!["add-site", "site1", "--site-dir", &site_dir],
            "--hub-url is needed",
        ),
        (
            vec!["add-site", "a.b", "--site-dir", &site_dir, "--hub-url", url],
            "invalid site name a.b",
        ),
        (
            vec!["add-site", "hub", "--site-dir", &site_dir, "--hub-url", url],
            "must differ from the hub's domain",
        ),
        (vec!["add-site"], "usage: domsecure add-site NAME"),
        (vec!["remove-site", "nowhere"], "no site nowhere"),
        (
            vec!["init", "--domain", "other"],
            "is for JetStream domain hub, not other",
        ),
    ] {
        refused(&hub, &args, says);
    }
    assert_eq!(files(&hub), before);
    assert!(!site.exists());

    // Made once; a second time is refused, changing nothing.
    let made = domsecure(&hub, &add_site);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let (hub_files, site_files) = (files(&hub), files(&site));
    assert!(hub_files.contains(&"users/site-site1.conf".to_string()));
    for file in [
        "nats.conf",
        "leaf.conf",
        "auth.conf",
        "ca/ca.pem",
        "users/operator.conf",
    ] {
        assert!(
            site_files.contains(&file.to_string()),
            "{file}: {site_files:?}"
        );
    }
    assert!(
        !site_files.iter().any(|f| f.contains("ca-key")),
        "{site_files:?}"
    );
    refused(&hub, &add_site, "site site1 exists already");
    assert_eq!((files(&hub), files(&site)), (hub_files, site_files));
}

#[test]
fn a_site_credential_without_the_hub_domain_writes_no_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("site.nk");
    for (args, says) in [
        (
            vec!["credential", "site", "site1"],
            "needs the hub's JetStream domain",
        ),
        (
            vec!["credential", "site"],
            "role site needs the site's name",
        ),
        (
            vec![
                "credential",
                "viewer",
                "--hub-domain",
                "hub",
                "--site-domain",
                "s1",
            ],
            "only operator and subd credentials are used at a site",
        ),
        (
            vec!["credential", "subd", "s0", "--site-domain", "s1"],
            "--site-domain needs --hub-domain",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--seed", seed.to_str().unwrap()]);
        let run = Run::from(
            Command::new(env!("CARGO_BIN_EXE_domsetup"))
                .args(&args)
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        let line = run.one_line_error();
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!seed.exists(), "{args:?} wrote a seed");
    }
}
