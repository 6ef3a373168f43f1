//! What every message a tool publishes is stamped with: when (RFC 3339,
//! to the second, in UTC) and who (`user@host`).

use std::time::SystemTime;

use time::OffsetDateTime;

pub use dom_model::text::rfc3339;

/// Now, RFC 3339 to the second, in UTC.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Now, Unix seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `user@host`: who made an image, a control or an MDB change.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", host())
}

/// This machine's host name (`unknown` when the kernel does not say).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn times_are_rfc3339_seconds_in_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_770_000_250);
        assert_eq!(rfc3339(at), "2026-11-27T09:00:00Z");
        let parsed = OffsetDateTime::parse(&now_rfc3339(), &Rfc3339).unwrap();
        assert!((parsed.unix_timestamp() - now_unix()).abs() <= 1);
    }

    #[test]
    fn who_is_user_at_host() {
        let who = who();
        let (user, host) = who.split_once('@').unwrap();
        assert!(!user.is_empty() && !host.is_empty(), "{who}");
    }
}
