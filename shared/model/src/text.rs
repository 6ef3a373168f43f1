//! Text for people: times, sizes, and bounded echoes of what others sent.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The most of someone else's text an error, a log line or an event
/// repeats.
pub const ECHO_LIMIT: usize = 256;

/// `at`, RFC 3339 to the second, in UTC.
pub fn rfc3339(at: impl Into<OffsetDateTime>) -> String {
    let at: OffsetDateTime = at.into();
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Bytes with a binary unit and one decimal above a KiB: `512 B`,
/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `text` as an error or a log line may repeat it: whole when short, else
/// its first [`ECHO_LIMIT`] bytes (cut at a character boundary) and how
/// long it was, so that a hostile payload cannot inflate what quotes it.
pub fn bounded(text: &str) -> String {
    if text.len() <= ECHO_LIMIT {
        return text.to_string();
    }
    let mut end = ECHO_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(953_674_316 * 1024), "909.5 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn echoes_are_bounded() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(450_000);
        let echo = bounded(&long);
        assert!(echo.len() < ECHO_LIMIT + 40, "{}", echo.len());
        assert!(echo.ends_with("… (900000 bytes in all)"), "{echo}");
        assert!(echo.starts_with("éé"));
    }
}
