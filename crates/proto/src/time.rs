//! Timestamps as the protocols write them: `ms` since the epoch, and RFC 3339 UTC with
//! milliseconds (`2025-01-15T12:00:00.000Z`).

use time::OffsetDateTime;
use time::macros::format_description;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `ms` as RFC 3339 UTC with milliseconds.
pub fn iso_from_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("a UTC date always formats")
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_iso() -> String {
    iso_from_ms(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds_and_z() {
        assert_eq!(iso_from_ms(1_736_942_400_000), "2025-01-15T12:00:00.000Z");
        assert_eq!(iso_from_ms(1_736_942_400_123), "2025-01-15T12:00:00.123Z");
    }
}
