//! Triggers around an update: the services whose files change are stopped
//! before and started after, through the configured service command.

use std::fs;

use crate::update_support::*;
use dom_model::Triggers;

fn sshd_triggers() -> Triggers {
    let path = dom_tests::repo_root().join("ops/examples/triggers.sshd");
    Triggers::parse(&fs::read_to_string(path).unwrap()).unwrap()
}

/// A machine with an sshd config and an nginx config, and an image that
/// changes only the sshd config.
fn sshd_change() -> (Machine, Source, dom_model::Plan) {
    let m = Machine::new();
    write(&m.root, "/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    write(&m.root, "/etc/nginx/nginx.conf", "worker_processes 1;\n");
    let src = Source::new();
    src.file("/etc/ssh/sshd_config", "PermitRootLogin no\n")
        .file("/etc/nginx/nginx.conf", "worker_processes 1;\n");
    let plan = m.plan(&src.image(), None);
    m.fill_cache(&plan, src.root());
    (m, src, plan)
}

#[test]
fn sshd_is_stopped_before_and_started_after_its_config_changes() {
    let (m, _src, plan) = sshd_change();
    // The recorder notes what the config said when it was called.
    let config = m.path("/etc/ssh/sshd_config");
    let recorder = Recorder::new(&format!(
        "cat '{}' >> \"$(dirname \"$0\")/calls\"",
        config.display()
    ));
    let triggers = sshd_triggers();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(out.ok, "{:?}", out.error);
    assert_eq!(
        recorder.calls(),
        [
            "sshd stop",
            "PermitRootLogin yes",
            "sshd start",
            "PermitRootLogin no"
        ]
    );
    assert_eq!(out.stopped, ["sshd"]);
    assert_eq!(out.started, ["sshd"]);
    assert!(out.reloaded.is_empty() && out.trigger_failures.is_empty());
    assert!(out.transition.is_some());
    assert!(!out.rebooted && !out.restart_agent);
}

#[test]
fn services_whose_files_did_not_change_are_left_alone() {
    let (m, _src, plan) = sshd_change();
    let recorder = Recorder::new("");
    let triggers = Triggers::parse(
        r#"[{"MatchLines": ["/etc/nginx/.*"], "Service": "nginx"},
            {"MatchLines": ["/etc/ssh/.*"], "Service": "sshd"}]"#,
    )
    .unwrap();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(out.ok);
    assert_eq!(recorder.calls(), ["sshd stop", "sshd start"]);
}

#[test]
fn a_reload_trigger_only_reloads() {
    let (m, _src, plan) = sshd_change();
    let recorder = Recorder::new("");
    let triggers = Triggers::parse(
        r#"[{"MatchLines": ["/etc/ssh/.*"], "Service": "sshd", "DoReload": true}]"#,
    )
    .unwrap();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(out.ok);
    assert_eq!(recorder.calls(), ["sshd reload"]);
    assert_eq!(out.reloaded, ["sshd"]);
    assert!(out.stopped.is_empty() && out.started.is_empty());
}

#[test]
fn the_old_image_s_triggers_decide_what_stops() {
    let (m, _src, plan) = sshd_change();
    let recorder = Recorder::new("");
    let old = Triggers::parse(r#"[{"MatchLines": ["/etc/ssh/.*"], "Service": "ssh"}]"#).unwrap();
    let new = sshd_triggers();
    let out = m.apply_with(&plan, Some(&old), &new, &recorder.service_command(), None);
    assert!(out.ok);
    assert_eq!(recorder.calls(), ["ssh stop", "sshd start"]);
}

#[test]
fn the_agent_is_never_stopped() {
    let m = Machine::new();
    write(&m.root, "/usr/sbin/subd", "old agent\n");
    let src = Source::new();
    src.file("/usr/sbin/subd", "new agent\n");
    let plan = m.plan(&src.image(), None);
    m.fill_cache(&plan, src.root());
    let recorder = Recorder::new("");
    let triggers = Triggers::parse(
        r#"[{"MatchLines": ["/usr/sbin/subd"], "Service": "subd"},
            {"MatchLines": ["/usr/sbin/.*"], "Service": "cron", "SortName": "a"}]"#,
    )
    .unwrap();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(out.ok);
    assert_eq!(recorder.calls(), ["cron stop", "cron start"]);
    assert!(out.restart_agent);
}

#[test]
fn a_reboot_trigger_runs_the_reboot_command_after_the_starts() {
    let (m, _src, plan) = sshd_change();
    let recorder = Recorder::new("");
    let triggers = Triggers::parse(
        r#"[{"MatchLines": ["/etc/ssh/.*"], "Service": "sshd", "DoReboot": true}]"#,
    )
    .unwrap();
    let reboot = recorder.reboot_command();
    let out = m.apply_with(
        &plan,
        None,
        &triggers,
        &recorder.service_command(),
        Some(&reboot),
    );
    assert!(out.ok && out.rebooted);
    assert_eq!(recorder.calls(), ["sshd stop", "sshd start", "reboot"]);

    // With reboots disabled, the need is reported instead.
    let (m, _src, plan) = sshd_change();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(!out.rebooted);
    assert_eq!(
        out.trigger_failures,
        ["reboot: asked for, but reboots are disabled"]
    );
}

#[test]
fn failed_service_commands_are_reported_and_the_update_goes_on() {
    let (m, _src, plan) = sshd_change();
    let recorder =
        Recorder::new("[ \"$2\" = start ] && { echo 'sshd: bad config' >&2; exit 1; }; exit 0");
    let out = m.apply_with(
        &plan,
        None,
        &sshd_triggers(),
        &recorder.service_command(),
        None,
    );
    assert!(out.ok, "the tree was updated: {:?}", out.error);
    assert_eq!(
        out.trigger_failures,
        ["sshd start: exit status 1: sshd: bad config"]
    );
    assert_eq!(out.stopped, ["sshd"]);
    assert!(out.started.is_empty());
    assert_eq!(
        read(&m.root, "/etc/ssh/sshd_config"),
        "PermitRootLogin no\n"
    );
}

#[test]
fn nothing_runs_when_the_objects_are_missing() {
    let m = Machine::new();
    write(&m.root, "/etc/ssh/sshd_config", "old\n");
    let src = Source::new();
    src.file("/etc/ssh/sshd_config", "new\n");
    let plan = m.plan(&src.image(), None);
    let recorder = Recorder::new("");
    let out = m.apply_with(
        &plan,
        None,
        &sshd_triggers(),
        &recorder.service_command(),
        None,
    );
    assert!(!out.ok);
    assert!(recorder.calls().is_empty());
    assert_eq!(out.transition, None);
}
