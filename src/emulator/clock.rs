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
        Utc::now() + *self.offset.lock().expect("clock lock")
    }

    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut offset = self.offset.lock().expect("clock lock");
        *offset += by;
        Utc::now() + *offset
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
        let after = c.advance(Duration::hours(2));
        assert!(after - before >= Duration::hours(2));
        let target = Utc::now() + Duration::days(3);
        c.set(target);
        assert!((c.now() - target).num_seconds().abs() <= 1);
    }
}
