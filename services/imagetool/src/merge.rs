//! `merge-filters` and `merge-triggers`: combine the filter or triggers
//! files of several image streams into one, as a release pipeline does
//! when one image is built from several parts. Both read local files only
//! and never connect to a server.
//!
//! Filters merge as a union of their lines, each kept once, in the order
//! first met. Triggers merge as the original Dominator's `lib/triggers`
//! does: triggers for the same service (and the same `DoReload`) become
//! one, whose match lines are the union of theirs, sorted; `DoReboot` and
//! `HighImpact` are set if any of them set it. The result is ordered by
//! service name, a reload trigger before a restart one of the same
//! service. Unlike the original, a `SortName` survives the merge (the
//! first one given for the service), so the merged triggers still run in
//! the order their authors chose.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dom_model::{Filter, Trigger, Triggers};

/// Prints the merged filter of `files`, one line each.
pub fn merge_filters(files: &[PathBuf], out: &mut impl Write) -> Result<()> {
    let mut filters = Vec::with_capacity(files.len());
    for file in files {
        let text = read(file, "filter")?;
        let filter =
            Filter::parse(&text).with_context(|| format!("filter file {}", file.display()))?;
        filters.push(filter);
    }
    for line in merged_filter_lines(&filters) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Prints the merged triggers of `files` as JSON.
pub fn merge_triggers(files: &[PathBuf], out: &mut impl Write) -> Result<()> {
    let mut all = Vec::with_capacity(files.len());
    for file in files {
        let text = read(file, "triggers")?;
        let triggers =
            Triggers::parse(&text).with_context(|| format!("triggers file {}", file.display()))?;
        all.push(triggers);
    }
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&merged_triggers(&all))?
    )?;
    Ok(())
}

fn read(file: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {what} file {}", file.display()))
}

/// Every filter's lines, each once, in the order first met.
pub fn merged_filter_lines(filters: &[Filter]) -> Vec<String> {
    let mut seen = HashSet::new();
    filters
        .iter()
        .flat_map(|f| f.lines())
        .filter(|line| seen.insert(line.as_str()))
        .cloned()
        .collect()
}

/// One trigger per service and action, as the module doc says.
pub fn merged_triggers(all: &[Triggers]) -> Vec<Trigger> {
    // Key: service, then restart (false) after reload (true).
    let mut merged: BTreeMap<(String, bool), (Trigger, BTreeSet<String>)> = BTreeMap::new();
    for trigger in all.iter().flat_map(|t| t.list()) {
        let key = (trigger.service.clone(), !trigger.do_reload);
        let (into, lines) = merged.entry(key).or_insert_with(|| {
            (
                Trigger {
                    service: trigger.service.clone(),
                    do_reload: trigger.do_reload,
                    ..Default::default()
                },
                BTreeSet::new(),
            )
        });
        lines.extend(trigger.match_lines.iter().cloned());
        into.do_reboot |= trigger.do_reboot;
        into.high_impact |= trigger.high_impact;
        if into.sort_name.is_empty() {
            into.sort_name = trigger.sort_name.clone();
        }
    }
    merged
        .into_values()
        .map(|(trigger, lines)| Trigger {
            match_lines: lines.into_iter().collect(),
            ..trigger
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_lines_are_kept_once_in_order() {
        let a = Filter::parse("/tmp/.*\n# comment\n/var/log/.*\n").unwrap();
        let b = Filter::parse("/var/log/.*\n/etc/fstab\n/tmp/.*\n").unwrap();
        assert_eq!(
            merged_filter_lines(&[a, b]),
            ["/tmp/.*", "/var/log/.*", "/etc/fstab"]
        );
    }

    #[test]
    fn triggers_of_one_service_merge_and_reload_stays_apart() {
        let a = Triggers::parse(
            r#"[{"Service":"sshd","MatchLines":["/usr/sbin/sshd","/etc/ssh/.*"]},
                {"Service":"nginx","MatchLines":["/etc/nginx/.*"],"DoReload":true}]"#,
        )
        .unwrap();
        let b = Triggers::parse(
            r#"[{"Service":"sshd","MatchLines":["/etc/ssh/.*","/lib/ssh"],"HighImpact":true,"SortName":"a1"},
                {"Service":"nginx","MatchLines":["/usr/sbin/nginx"],"DoReboot":true}]"#,
        )
        .unwrap();
        let merged = merged_triggers(&[a, b]);
        let shown: Vec<_> = merged
            .iter()
            .map(|t| {
                (
                    t.service.as_str(),
                    t.do_reload,
                    t.do_reboot,
                    t.high_impact,
                    t.sort_name.as_str(),
                    t.match_lines.join(" "),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("nginx", true, false, false, "", "/etc/nginx/.*".to_string()),
                (
                    "nginx",
                    false,
                    true,
                    false,
                    "",
                    "/usr/sbin/nginx".to_string()
                ),
                (
                    "sshd",
                    false,
                    false,
                    true,
                    "a1",
                    "/etc/ssh/.* /lib/ssh /usr/sbin/sshd".to_string()
                ),
            ]
        );
    }
}
