//! Windows in time: a one-off window, or a cron expression with a duration in an IANA
//! time zone (daylight saving time handled by croner and chrono-tz).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::api::maintenance::Blackout;

/// A 5-field cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct CronInZone {
    cron: Cron,
    tz: Tz,
}

impl CronInZone {
    /// `field` names the spec field in errors, e.g. `spec.recurring`.
    pub fn parse(field: &str, expr: &str, time_zone: &str) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("{field}.cron: {expr:?} is not a 5-field cron expression: {e}"))?;
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| format!("{field}.timeZone: {time_zone:?} is not an IANA time zone such as Asia/Shanghai"))?;
        Ok(CronInZone { cron, tz })
    }

    /// The first start strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Local time a day either side must exist, or the conversion below cannot be made.
        let day = chrono::Duration::days(1);
        t.checked_sub_signed(day)?.checked_add_signed(day + day)?;
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// A window: open at `start`, closed at `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The window open at an instant, and the next one to open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    pub current: Option<Window>,
    pub next: Option<Window>,
}

impl WindowState {
    /// The next instant at which the answer changes.
    pub fn next_boundary(&self) -> Option<DateTime<Utc>> {
        match (self.current, self.next) {
            (Some(c), _) => Some(c.end),
            (None, Some(n)) => Some(n.start),
            (None, None) => None,
        }
    }
}

/// The blackouts as instants, in order; an unreadable one names its field.
pub fn blackouts(list: &[Blackout]) -> Result<Vec<Window>, String> {
    let mut out = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let at = |field: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("spec.blackouts[{i}].{field}: {v:?} is not an RFC 3339 time: {e}"))
        };
        let (start, end) = (at("start", &b.start)?, at("end", &b.end)?);
        if end <= start {
            return Err(format!("spec.blackouts[{i}]: the end must be after the start"));
        }
        out.push(Window { start, end });
    }
    out.sort_by_key(|w| w.start);
    Ok(out)
}

#[derive(Clone, Debug)]
pub enum Schedule {
    Fixed(Window),
    Recurring {
        starts: Box<CronInZone>,
        duration: Duration,
    },
}

/// `t + d`, or the last representable time.
fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, or the first representable time.
fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Overlapping or touching recurring windows are merged; this bounds the merge.
const MAX_MERGED: usize = 1000;

impl Schedule {
    pub fn fixed(field: &str, start: &str, end: &str) -> Result<Self, String> {
        let parse = |name: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| format!("{field}.{name}: {v:?} is not an RFC 3339 time such as 2026-11-28T22:00:00+08:00"))
        };
        let (start, end) = (parse("start", start)?, parse("end", end)?);
        if end <= start {
            return Err(format!("{field}.end must be after {field}.start"));
        }
        if (end - start).to_std().is_ok_and(|d| d > super::duration::WINDOW_MAX) {
            return Err(format!("{field}: a window lasts at most 7 days (168h)"));
        }
        Ok(Schedule::Fixed(Window { start, end }))
    }

    pub fn recurring(field: &str, cron: &str, duration: &str, time_zone: &str) -> Result<Self, String> {
        let starts = CronInZone::parse(field, cron, time_zone)?;
        let d = super::duration::parse_within(
            &format!("{field}.duration"),
            duration,
            std::time::Duration::from_secs(1),
            super::duration::WINDOW_MAX,
        )?;
        let duration = Duration::from_std(d).map_err(|_| format!("{field}.duration: {duration:?} is too long"))?;
        if starts.next_after(Utc::now()).is_none() {
            return Err(format!("{field}.cron: {cron:?} never matches"));
        }
        Ok(Schedule::Recurring {
            starts: Box::new(starts),
            duration,
        })
    }

    pub fn at(&self, now: DateTime<Utc>) -> WindowState {
        match self {
            Schedule::Fixed(w) => {
                if now < w.start {
                    WindowState {
                        current: None,
                        next: Some(*w),
                    }
                } else if now < w.end {
                    WindowState {
                        current: Some(*w),
                        next: None,
                    }
                } else {
                    WindowState::default()
                }
            }
            Schedule::Recurring { starts, duration } => {
                let Some(first) = starts.next_after(minus(now, *duration)) else {
                    return WindowState::default();
                };
                if first > now {
                    return WindowState {
                        current: None,
                        next: Some(Window {
                            start: first,
                            end: plus(first, *duration),
                        }),
                    };
                }
                let mut end = plus(first, *duration);
                let mut last = first;
                let mut next = None;
                for _ in 0..MAX_MERGED {
                    match starts.next_after(last) {
                        Some(n) if n <= end => {
                            end = end.max(plus(n, *duration));
                            last = n;
                        }
                        Some(n) => {
                            next = Some(Window {
                                start: n,
                                end: plus(n, *duration),
                            });
                            break;
                        }
                        None => break,
                    }
                }
                WindowState {
                    current: Some(Window { start: first, end }),
                    next,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn fixed_window_before_inside_after() {
        let s = Schedule::fixed("spec.window", "2026-11-28T22:00:00+08:00", "2026-11-29T02:00:00+08:00").unwrap();
        let w = Window {
            start: t("2026-11-28T14:00:00Z"),
            end: t("2026-11-28T18:00:00Z"),
        };
        assert_eq!(
            s.at(t("2026-11-28T13:59:59Z")),
            WindowState {
                current: None,
                next: Some(w)
            }
        );
        assert_eq!(s.at(t("2026-11-28T14:00:00Z")).current, Some(w));
        assert_eq!(s.at(t("2026-11-28T17:59:59Z")).next_boundary(), Some(w.end));
        assert_eq!(s.at(t("2026-11-28T18:00:00Z")), WindowState::default());
        assert!(
            Schedule::fixed("spec.window", "2026-11-29T00:00:00Z", "2026-11-28T00:00:00Z")
                .unwrap_err()
                .contains("after")
        );
        assert!(
            Schedule::fixed("spec.window", "tomorrow", "2026-11-28T00:00:00Z")
                .unwrap_err()
                .starts_with("spec.window.start")
        );
    }

    #[test]
    fn recurring_window_spanning_midnight() {
        let s = Schedule::recurring("spec.recurring", "0 22 * * 6", "4h", "Asia/Shanghai").unwrap();
        // Saturday 2026-11-28 22:00 +08:00 = 14:00Z, until Sunday 02:00 +08:00 = 18:00Z.
        let st = s.at(t("2026-11-28T17:30:00Z"));
        assert_eq!(
            st.current,
            Some(Window {
                start: t("2026-11-28T14:00:00Z"),
                end: t("2026-11-28T18:00:00Z")
            })
        );
        assert_eq!(st.next.unwrap().start, t("2026-12-05T14:00:00Z"));
        let st = s.at(t("2026-11-28T18:00:00Z"));
        assert_eq!(st.current, None);
        assert_eq!(st.next.unwrap().start, t("2026-12-05T14:00:00Z"));
    }

    #[test]
    fn recurring_windows_follow_daylight_saving_time() {
        // Berlin: CEST ends 2026-10-25 (03:00 CEST -> 02:00 CET); 01:30 local is 23:30Z before, 00:30Z after.
        let s = Schedule::recurring("spec.recurring", "30 1 * * *", "1h", "Europe/Berlin").unwrap();
        assert_eq!(
            s.at(t("2026-10-24T12:00:00Z")).next.unwrap().start,
            t("2026-10-24T23:30:00Z")
        );
        assert_eq!(
            s.at(t("2026-10-25T12:00:00Z")).next.unwrap().start,
            t("2026-10-26T00:30:00Z")
        );
        // Spring forward 2027-03-28: 02:30 local does not exist that day.
        let s = Schedule::recurring("spec.recurring", "30 2 * * *", "1h", "Europe/Berlin").unwrap();
        let next = s.at(t("2027-03-27T12:00:00Z")).next.unwrap().start;
        assert!(
            next >= t("2027-03-28T01:00:00Z") && next <= t("2027-03-29T00:30:00Z"),
            "{next}"
        );
    }

    #[test]
    fn overlapping_recurring_windows_merge() {
        // Every hour, lasting 90 minutes: always open once started.
        let s = Schedule::recurring("spec.recurring", "0 * * * *", "90m", "UTC").unwrap();
        let st = s.at(t("2026-11-22T10:15:00Z"));
        let cur = st.current.unwrap();
        assert!(cur.start <= t("2026-11-22T10:15:00Z"));
        assert!(cur.end > t("2026-11-22T11:00:00Z"), "{cur:?}");
    }

    #[test]
    fn bad_cron_and_zone_name_the_field() {
        assert!(
            Schedule::recurring("spec.recurring", "61 * * * *", "1h", "UTC")
                .unwrap_err()
                .starts_with("spec.recurring.cron")
        );
        assert!(
            Schedule::recurring("spec.recurring", "0 1 * * *", "1h", "Mars/Olympus")
                .unwrap_err()
                .starts_with("spec.recurring.timeZone")
        );
        assert!(
            Schedule::recurring("spec.recurring", "0 1 * * *", "0h", "UTC")
                .unwrap_err()
                .starts_with("spec.recurring.duration")
        );
        assert!(Schedule::recurring("spec.recurring", "0 0 30 2 *", "1h", "UTC").is_err());
    }
}
