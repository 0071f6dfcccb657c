//! One lock per test binary so that tests running the binary take turns.
//!
//! Why: several tests measure wall time or memory, and a debug build on a
//! two-core machine sharing its cores with another search (or a 100 MB body)
//! would fail them for reasons that are not the product's. A test that
//! panicked while holding the lock must not fail every test after it, so a
//! poisoned lock is taken as it is.

use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold the returned guard for as long as the test must run alone.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
