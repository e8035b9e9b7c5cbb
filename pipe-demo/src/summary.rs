//! The last line of each side that moved data (DESIGN §4), which the tests and the
//! benchmark read: `[ROLE PID] summary: messages=N bytes=B elapsed_us=T ... ok`.

use std::time::Duration;

use crate::say;

pub struct Summary {
    pub role: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The workload's own figures: ` mib_per_s=X` or ` rtt_p50_us=X rtt_p99_us=Y`.
    pub extra: String,
}

impl Summary {
    /// Printed last: a parent reaps its child first, so `ok` means the run is over.
    pub fn print(&self) {
        say!(
            self.role,
            "summary: messages={} bytes={} elapsed_us={}{} ok",
            self.messages,
            self.bytes,
            self.elapsed.as_micros(),
            self.extra
        );
    }

    /// Adds ` mib_per_s=X`, the bytes over the same elapsed time as the line shows.
    pub fn with_throughput(mut self) -> Summary {
        let mib = self.bytes as f64 / (1024.0 * 1024.0);
        let rate = mib / self.elapsed.as_secs_f64().max(1e-9);
        self.extra = format!(" mib_per_s={rate:.1}");
        self
    }
}
