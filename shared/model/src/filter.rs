//! Filters: regular expressions naming paths an image does not own.
//!
//! A filter file holds one regex a line, each anchored at the start of the
//! path (so `/etc/fstab` also matches `/etc/fstab.bak` and `/tmp/.*` covers
//! all of `/tmp`). Empty lines and lines starting with `#` are ignored. A
//! line `!` inverts the filter: then only matching paths are owned. Paths a
//! filter matches are left out of an image and never touched on a machine.

use regex::RegexSet;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FilterError {
    #[error("filter line {line}: invalid regular expression {pattern:?}: {reason}")]
    BadRegex {
        line: usize,
        pattern: String,
        reason: String,
    },
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    lines: Vec<String>,
    set: RegexSet,
    inverted: bool,
}

impl Filter {
    /// Compiles filter lines as read from a filter file.
    pub fn new<S: AsRef<str>>(lines: &[S]) -> Result<Self, FilterError> {
        let mut kept = Vec::new();
        let mut patterns = Vec::new();
        let mut inverted = false;
        for (index, raw) in lines.iter().enumerate() {
            let line = raw.as_ref().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            kept.push(line.to_string());
            if line == "!" {
                inverted = true;
                continue;
            }
            let anchored = anchor(line);
            regex::Regex::new(&anchored).map_err(|e| FilterError::BadRegex {
                line: index + 1,
                pattern: line.to_string(),
                reason: first_line(&e.to_string()),
            })?;
            patterns.push(anchored);
        }
        let set = RegexSet::new(&patterns).expect("each pattern compiled on its own");
        Ok(Self {
            lines: kept,
            set,
            inverted,
        })
    }

    /// Parses the text of a filter file.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        Self::new(&text.lines().collect::<Vec<_>>())
    }

    /// A filter that matches nothing.
    pub fn empty() -> Self {
        Self::new::<&str>(&[]).expect("empty filter compiles")
    }

    /// Whether `path` is filtered out (not owned by the image).
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path) != self.inverted
    }

    /// The effective lines, as stored in the image record.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// Anchors a user's regex at the start of the path without changing the
/// meaning of alternations inside it.
pub(crate) fn anchor(pattern: &str) -> String {
    format!("^(?:{pattern})")
}

/// The first line of a regex error, which is multi-line by default.
pub(crate) fn first_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| message.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Filter {
        Filter::parse(
            "/etc/fstab\n/etc/hostname\n/tmp/.*\n/var/log/.*\n/var/mail/.*\n/var/spool/.*\n/var/tmp/.*\n",
        )
        .unwrap()
    }

    #[test]
    fn anchored_at_start_only() {
        let f = example();
        assert!(f.matches("/etc/fstab"));
        assert!(f.matches("/etc/fstab.bak"));
        assert!(f.matches("/var/log/syslog"));
        assert!(!f.matches("/var/log"));
        assert!(!f.matches("/srv/etc/fstab"));
        assert!(!f.matches("/etc/passwd"));
    }

    #[test]
    fn alternation_stays_anchored() {
        let f = Filter::parse("/a|/b").unwrap();
        assert!(f.matches("/b/x"));
        assert!(!f.matches("/x/b"));
    }

    #[test]
    fn inverted() {
        let f = Filter::parse("!\n/etc/.*").unwrap();
        assert!(!f.matches("/etc/passwd"));
        assert!(f.matches("/usr/bin/ls"));
    }

    #[test]
    fn comments_and_blank_lines_ignored() {
        let f = Filter::parse("# keep\n\n/x\n").unwrap();
        assert_eq!(f.lines(), ["/x"]);
        assert!(!Filter::empty().matches("/anything"));
    }

    #[test]
    fn bad_regex_names_the_line() {
        let err = Filter::parse("/ok\n/bad[\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("/bad["), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
