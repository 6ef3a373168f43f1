//! Triggers: which services to stop, start or reload when which paths change.
//!
//! The format is the original Dominator's JSON: a list of
//! `{"MatchLines": [regex...], "Service": "name", "DoReload": bool,
//! "DoReboot": bool, "HighImpact": bool, "SortName": "..."}`. Match lines
//! are anchored at the start of the path, like filter lines.

use std::cmp::Ordering;

use regex::RegexSet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::filter::{anchor, first_line};

#[derive(Debug, Error)]
pub enum TriggersError {
    #[error("triggers are not valid JSON: {0}")]
    Json(String),
    #[error("trigger {index}: the Service name is empty")]
    NoService { index: usize },
    #[error("trigger {index} ({service}): invalid regular expression {pattern:?}: {reason}")]
    BadRegex {
        index: usize,
        service: String,
        pattern: String,
        reason: String,
    },
}

/// One trigger, as written in a triggers file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(rename = "MatchLines", default)]
    pub match_lines: Vec<String>,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "DoReload", default, skip_serializing_if = "is_false")]
    pub do_reload: bool,
    #[serde(rename = "DoReboot", default, skip_serializing_if = "is_false")]
    pub do_reboot: bool,
    #[serde(rename = "HighImpact", default, skip_serializing_if = "is_false")]
    pub high_impact: bool,
    #[serde(rename = "SortName", default, skip_serializing_if = "String::is_empty")]
    pub sort_name: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Trigger {
    /// The name triggers are ordered by: `SortName`, or the service name.
    pub fn order_name(&self) -> &str {
        if self.sort_name.is_empty() {
            &self.service
        } else {
            &self.sort_name
        }
    }
}

/// A validated, compiled list of triggers.
#[derive(Clone, Debug)]
pub struct Triggers {
    list: Vec<Trigger>,
    sets: Vec<RegexSet>,
}

impl Triggers {
    /// Validates and compiles a list of triggers.
    pub fn new(list: Vec<Trigger>) -> Result<Self, TriggersError> {
        let mut sets = Vec::with_capacity(list.len());
        for (i, trigger) in list.iter().enumerate() {
            let index = i + 1;
            if trigger.service.trim().is_empty() {
                return Err(TriggersError::NoService { index });
            }
            let mut patterns = Vec::with_capacity(trigger.match_lines.len());
            for line in &trigger.match_lines {
                let anchored = anchor(line);
                regex::Regex::new(&anchored).map_err(|e| TriggersError::BadRegex {
                    index,
                    service: trigger.service.clone(),
                    pattern: line.clone(),
                    reason: first_line(&e.to_string()),
                })?;
                patterns.push(anchored);
            }
            sets.push(RegexSet::new(&patterns).expect("each pattern compiled on its own"));
        }
        Ok(Self { list, sets })
    }

    /// Parses the JSON text of a triggers file. Unknown fields are ignored,
    /// as the original does; `null` and an empty file mean no triggers.
    pub fn parse(text: &str) -> Result<Self, TriggersError> {
        if text.trim().is_empty() {
            return Self::new(Vec::new());
        }
        let list: Option<Vec<Trigger>> =
            serde_json::from_str(text).map_err(|e| TriggersError::Json(e.to_string()))?;
        Self::new(list.unwrap_or_default())
    }

    pub fn empty() -> Self {
        Self {
            list: Vec::new(),
            sets: Vec::new(),
        }
    }

    pub fn list(&self) -> &[Trigger] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The triggers matched by any of `paths`, in `SortName` (version) order.
    pub fn matching<'a, I, S>(&self, paths: I) -> Vec<&Trigger>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str> + 'a,
    {
        let mut hit = vec![false; self.list.len()];
        for path in paths {
            let path = path.as_ref();
            for (i, set) in self.sets.iter().enumerate() {
                if !hit[i] && set.is_match(path) {
                    hit[i] = true;
                }
            }
            if hit.iter().all(|h| *h) {
                break;
            }
        }
        let mut fired: Vec<&Trigger> = self
            .list
            .iter()
            .zip(hit)
            .filter_map(|(t, h)| h.then_some(t))
            .collect();
        fired.sort_by(|a, b| version_cmp(a.order_name(), b.order_name()));
        fired
    }
}

/// Compares like version strings: runs of digits compare as numbers
/// (`sshd2` < `sshd10`), everything else byte by byte.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = trim_zeros(&a[..da]);
                let nb = trim_zeros(&b[..db]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|d| **d == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSHD: &str = r#"[{"MatchLines": ["/etc/ssh/.*", "/usr/sbin/sshd"], "Service": "sshd"}]"#;

    #[test]
    fn parses_the_user_guide_example() {
        let t = Triggers::parse(SSHD).unwrap();
        assert_eq!(t.list()[0].service, "sshd");
        assert_eq!(t.matching(["/etc/ssh/sshd.conf"]).len(), 1);
        assert!(t.matching(["/etc/passwd", "/srv/etc/ssh/x"]).is_empty());
    }

    #[test]
    fn unknown_fields_ignored_and_empty_accepted() {
        let t = Triggers::parse(r#"[{"Service":"x","MatchLines":["/x"],"Extra":1}]"#).unwrap();
        assert_eq!(t.list().len(), 1);
        assert!(Triggers::parse("").unwrap().is_empty());
        assert!(Triggers::parse("null").unwrap().is_empty());
        assert!(Triggers::parse("[]").unwrap().is_empty());
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            "{not json",
            r#"{"Service":"x"}"#,
            r#"[{"MatchLines":["/x"]}]"#,
            r#"[{"Service":"x","MatchLines":["(unclosed"]}]"#,
            r#"[{"Service":"x","MatchLines":"/x"}]"#,
        ] {
            let err = Triggers::parse(bad).unwrap_err().to_string();
            assert!(!err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn fired_in_version_order() {
        let t = Triggers::parse(
            r#"[{"Service":"b","SortName":"svc10","MatchLines":["/x"]},
                {"Service":"a","SortName":"svc9","MatchLines":["/x"]},
                {"Service":"c","MatchLines":["/y"]}]"#,
        )
        .unwrap();
        let names: Vec<_> = t
            .matching(["/x/1"])
            .iter()
            .map(|t| t.service.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn version_order() {
        assert_eq!(version_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(version_cmp("a010", "a10"), Ordering::Equal);
        assert_eq!(version_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(version_cmp("a", "ab"), Ordering::Less);
    }
}
