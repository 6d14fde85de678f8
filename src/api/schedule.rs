//! Admission rules shared by every cron schedule (DesktopMaintenanceWindow's `recurring`,
//! OtaSchedule's `window`): each cron field's range, and the time zone, checked by the
//! apiserver's CEL so that a typo is refused at `kubectl apply` instead of becoming a
//! terminal `InvalidSpec` later.

use kube::core::{Message, Rule};

/// A cron field: its place, its name for people, and a regex matching a number out of its
/// range (bounded by non-digits, so `10` is never read as `0`).
const CRON_FIELDS: [(&str, &str, &str, &str); 5] = [
    ("1st", "minute", "0-59", "[6-9][0-9]|[0-9]{3,}"),
    ("2nd", "hour", "0-23", "2[4-9]|[3-9][0-9]|[0-9]{3,}"),
    ("3rd", "day of month", "1-31", "0+|3[2-9]|[4-9][0-9]|[0-9]{3,}"),
    ("4th", "month", "1-12", "0+|1[3-9]|[2-9][0-9]|[0-9]{3,}"),
    ("5th", "day of week", "0-7", "[89]|[1-9][0-9]+"),
];

/// The rule that every number in cron field `index` (0-4) is within the field's range.
/// Names (`MON`, `JAN`) and croner's special characters (`L`, `W`, `#`, `?`) pass.
pub(crate) fn cron_field(index: usize) -> Rule {
    let (place, name, range, out_of_range) = CRON_FIELDS[index];
    let before = "\\\\S+ ".repeat(index);
    let after = " \\\\S+".repeat(4 - index);
    let pattern = format!("^{before}(\\\\S*[^0-9 ])?({out_of_range})([^0-9 ]\\\\S*)?{after}$");
    Rule::new(format!("!self.matches('{pattern}')")).message(Message::Expression(format!(
        "'cron ' + self + ': the {name} (the {place} field) must be within {range}'"
    )))
}

/// The apiserver refuses an unknown zone when it evaluates this rule, with "unknown time
/// zone <value>" and the field's path.
pub(crate) fn known_time_zone() -> Rule {
    Rule::new("timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0")
        .message("timeZone must be an IANA time zone such as Asia/Shanghai or UTC")
}

/// CEL also reads offsets such as `+08:00`, which have no daylight-saving rules.
pub(crate) fn not_an_offset() -> Rule {
    Rule::new("!self.matches('^[+-]')")
        .message("timeZone must be an IANA time zone name such as Asia/Shanghai, not a UTC offset")
}
