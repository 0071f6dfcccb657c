//! Unit tests' access to `../shared` (datasets and SigmaHQ's rules beside
//! the checkout). Absent, a test skips with a printed reason; absent under
//! CI, it fails: CI's run has `../shared`, and a skip there would pass
//! unseen.

use std::path::{Path, PathBuf};

/// `../shared/<relative>` when it exists (see the module docs).
pub fn dir(relative: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(relative);
    if dir.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is absent and CI is set: the CI run must have it",
        dir.display()
    );
    eprintln!(
        "skipped: {} is absent (../shared is not checked out)",
        dir.display()
    );
    None
}
