//! Durations as users write them: `90s`, `10m`, `1h30m`.

use std::time::Duration;

/// The longest duration any field takes: 366 days. Longer values are refused, so no
/// arithmetic on a user's duration can overflow.
pub const MAX: Duration = Duration::from_secs(366 * 86_400);

/// `spec.resyncInterval` (and `--resync-interval`): from 10 s to 24 h, as the CRD enforces.
pub const RESYNC_MIN: Duration = Duration::from_secs(10);
pub const RESYNC_MAX: Duration = Duration::from_secs(86_400);

/// Periodic requeues come up to this fraction of the resync late (jitter), so resources
/// created together do not resync together.
pub const RESYNC_JITTER: f64 = 0.1;

/// The latest a resync requeued now comes back: the interval plus its full jitter.
pub fn latest_resync(resync: Duration) -> Duration {
    resync.saturating_add(resync.mul_f64(RESYNC_JITTER))
}

/// The longest maintenance window: 7 days (168 h), as the CRD enforces.
pub const WINDOW_MAX: Duration = Duration::from_secs(7 * 86_400);

/// Parses `<n>h`, `<n>m`, `<n>s` in any combination, e.g. `1h30m`, between `min` and `max`.
pub fn parse_within(field: &str, value: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse(field, value)?;
    if d < min || d > max {
        return Err(format!(
            "{field}: {value:?} must be between {} and {}",
            human(min),
            human(max)
        ));
    }
    Ok(d)
}

/// `90s`, `10m`, `24h`: the shortest way to write a whole number of seconds.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// [`parse`], as a span of wall-clock time (never out of chrono's range: at most [`MAX`]).
pub fn parse_span(field: &str, value: &str) -> Result<chrono::Duration, String> {
    let d = parse(field, value)?;
    chrono::Duration::from_std(d).map_err(|e| format!("{field}: {e}"))
}

/// Parses `<n>h`, `<n>m`, `<n>s` in any combination, e.g. `1h30m`. Zero and anything
/// longer than [`MAX`] are errors.
pub fn parse(field: &str, value: &str) -> Result<Duration, String> {
    let too_long = || format!("{field}: {value:?} is too long; at most {}", human(MAX));
    let mut total = 0u64;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "{field}: {value:?} has an unknown unit {c:?}; use h, m or s, e.g. 1h30m"
                ));
            }
        };
        if digits.is_empty() {
            return Err(format!("{field}: {value:?} needs a number before {c:?}"));
        }
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .filter(|t| *t <= MAX.as_secs())
            .ok_or_else(too_long)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{field}: {value:?} ends without a unit; use h, m or s, e.g. 10m"
        ));
    }
    if total == 0 {
        return Err(format!("{field}: {value:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combinations_and_names_the_field() {
        assert_eq!(parse("d", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("d", "1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("d", "2h").unwrap(), Duration::from_secs(7200));
        assert!(
            parse("spec.recurring.duration", "0m")
                .unwrap_err()
                .starts_with("spec.recurring.duration")
        );
        assert!(parse("d", "10").unwrap_err().contains("without a unit"));
        assert!(parse("d", "1d").unwrap_err().contains("unknown unit"));
        assert!(parse("d", "h").unwrap_err().contains("needs a number"));
    }

    #[test]
    fn huge_values_are_refused_not_wrapped() {
        for v in [
            "9999999999999999999s",
            "3000000000h",
            "99999999999999999999999h",
            "8785h",
        ] {
            let e = parse("spec.resyncInterval", v).unwrap_err();
            assert!(e.contains("too long"), "{v}: {e}");
        }
        assert_eq!(parse("d", "8784h").unwrap(), MAX);
        let e = parse_within("spec.resyncInterval", "5s", RESYNC_MIN, RESYNC_MAX).unwrap_err();
        assert_eq!(e, "spec.resyncInterval: \"5s\" must be between 10s and 24h");
        assert!(parse_within("x", "25h", RESYNC_MIN, RESYNC_MAX).is_err());
        assert_eq!(parse_within("x", "24h", RESYNC_MIN, RESYNC_MAX).unwrap(), RESYNC_MAX);
    }
}
