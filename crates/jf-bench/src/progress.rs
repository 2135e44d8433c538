//! Progress lines on stderr, stamped with the time since the benchmark started, so that a
//! long run is never silent and the table on stdout stays clean.

use std::sync::OnceLock;
use std::time::Instant;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts the clock of the stamps.
pub fn start() {
    STARTED.get_or_init(Instant::now);
}

fn stamp() -> String {
    let seconds = STARTED.get_or_init(Instant::now).elapsed().as_secs();
    format!("[{:02}:{:02}]", seconds / 60, seconds % 60)
}

/// A new scenario or phase.
pub fn step(message: &str) {
    eprintln!("{} ==> {message}", stamp());
}

/// How far the current step has got.
pub fn info(message: &str) {
    eprintln!("{}     {message}", stamp());
}
