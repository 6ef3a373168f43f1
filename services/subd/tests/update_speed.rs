//! How long the machine spends in transition: an update changing a
//! thousand files stops its service, renames the files into place and
//! starts it again, with everything slow done before the stop.
//!
//! In a file of its own, so no other test's disk flushes run alongside.

use crate::update_support::*;
use dom_model::Triggers;

#[test]
fn a_thousand_files_change_within_a_short_window() {
    let m = Machine::new();
    let src = Source::new();
    for i in 0..1000 {
        let p = format!("/srv/d{}/f{i}", i % 20);
        write(&m.root, &p, "old\n");
        src.file(&p, &format!("new {i}\n"));
    }
    let plan = m.plan(&src.image(), None);
    assert_eq!(plan.installs.len(), 1000);
    m.fill_cache(&plan, src.root());
    let recorder = Recorder::new("");
    let triggers = Triggers::parse(r#"[{"MatchLines": ["/srv/.*"], "Service": "app"}]"#).unwrap();
    let out = m.apply_with(&plan, None, &triggers, &recorder.service_command(), None);
    assert!(out.ok, "{:?}", out.error);
    assert_eq!(out.changed, 1000);
    eprintln!(
        "1000 files: tree changed in {:?}, transition {:?}, update {:?}",
        out.window, out.transition, out.duration
    );
    // How long it takes is measured by `ops/just bench`, not asserted here.
    assert_eq!(read(&m.root, "/srv/d7/f7"), "new 7\n");
}
