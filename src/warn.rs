//! Warnings that may repeat (a schedule that fails at every fire time, a worker pass that
//! fails every second) are logged at most once a minute per key and per process, so the log
//! keeps room for everything else.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(60);

thread_local! {
    static LAST: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// Logs `message` as a WARNING unless `key` was logged less than a minute ago.
pub fn at_most_once_a_minute(key: &str, message: &str) {
    if due(key, Instant::now()) {
        pgrx::warning!("{message}");
    }
}

fn due(key: &str, now: Instant) -> bool {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.get(key).is_some_and(|at| now.duration_since(*at) < EVERY) {
            return false;
        }
        last.insert(key.to_string(), now);
        true
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_is_due_once_a_minute() {
        let t0 = std::time::Instant::now();
        assert!(super::due("k", t0));
        assert!(!super::due("k", t0 + std::time::Duration::from_secs(59)));
        assert!(super::due("other", t0));
        assert!(super::due("k", t0 + std::time::Duration::from_secs(61)));
    }
}
