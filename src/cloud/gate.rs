//! Whether this process may write to the cloud now.
//!
//! With leader election only the leader writes. A leader that loses its Lease, or can no
//! longer renew it (the apiserver is out of reach while a standby takes over), closes its
//! gate: every write after that, including the next batch of one action already under way,
//! is refused before it is sent. Reads go on.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct WriteGate {
    open: AtomicBool,
}

impl WriteGate {
    pub fn new(open: bool) -> Self {
        WriteGate {
            open: AtomicBool::new(open),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    pub fn close(&self) {
        self.open.store(false, Ordering::Release);
    }
}
