//! Durations as users write them: `90s`, `10m`, `1h30m`.

use std::time::Duration;

/// Parses `<n>h`, `<n>m`, `<n>s` in any combination, e.g. `1h30m`. Zero is an error.
pub fn parse(field: &str, value: &str) -> Result<Duration, String> {
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
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{field}: {value:?} needs a number before {c:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
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
}
