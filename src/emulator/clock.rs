//! The emulator's clock: real time plus an offset that tests move forward.
//!
//! It drives OTA start times and STS token expiry. Request timestamps are checked against
//! the machine's real clock, as a client signs with real time.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Default)]
pub struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().expect("clock lock");
        Utc::now()
            .checked_add_signed(offset)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Moves the clock forward (or back); refused when the result is not a representable
    /// time. Nothing changes then.
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>, String> {
        let mut offset = self.offset.lock().expect("clock lock");
        let moved = offset
            .checked_add(&by)
            .and_then(|o| Some((o, Utc::now().checked_add_signed(o)?)))
            .ok_or("advanceSeconds: the clock would leave the range of representable times")?;
        *offset = moved.0;
        Ok(moved.1)
    }

    pub fn set(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        *self.offset.lock().expect("clock lock") = now - Utc::now();
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_and_set_move_the_clock() {
        let c = Clock::default();
        let before = c.now();
        let after = c.advance(Duration::hours(2)).unwrap();
        assert!(after - before >= Duration::hours(2));
        let target = Utc::now() + Duration::days(3);
        c.set(target);
        assert!((c.now() - target).num_seconds().abs() <= 1);
    }

    #[test]
    fn an_advance_out_of_range_is_refused_and_changes_nothing() {
        let c = Clock::default();
        let before = c.now();
        assert!(c.advance(Duration::days(200_000_000)).is_err());
        assert!((c.now() - before).num_seconds().abs() <= 1);
    }
}
