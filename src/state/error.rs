//! The one error type of the state store.
//!
//! Every failure names the database file, the operation that failed and the
//! cause, in one line, because the caller's reaction to *any* of them is the
//! same: log one WARN and carry on without persistent state (DESIGN §3). Two
//! causes are common enough on a busy search head to deserve a cheap test,
//! [`StateError::is_locked`] and [`StateError::is_corrupt`]; everything else
//! is rare and only needs to be readable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

/// A failure of the state store, with the file and the operation it concerns.
///
/// The `Display` form is a complete sentence fragment meant for a WARN line:
/// `state database /opt/splunk/var/lib/sysmonenrich/state.db: opening:
/// locked by another search (gave up after 5000 ms): database is locked`.
#[derive(Debug)]
pub struct StateError {
    path: PathBuf,
    operation: &'static str,
    kind: StateErrorKind,
}

/// What went wrong, by cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateErrorKind {
    /// Another connection (usually a concurrent search) held the lock for
    /// longer than the busy timeout.
    Locked {
        /// The busy timeout that elapsed, in milliseconds.
        waited_ms: u64,
        /// SQLite's own report.
        cause: rusqlite::Error,
    },
    /// The file is not a SQLite database, is damaged, or belongs to another
    /// application.
    Corrupt {
        /// What SQLite (or our own check) said.
        detail: String,
    },
    /// The file was written by a newer build with a schema this build does
    /// not know. We refuse to touch it rather than guess.
    TooNew {
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// The file system refused (creating the directory, reading the size).
    Io {
        /// The underlying error.
        cause: std::io::Error,
    },
    /// Any other SQLite failure (permissions, disk full, read-only file...).
    Sqlite {
        /// The underlying error.
        cause: rusqlite::Error,
    },
}

impl StateError {
    /// Classifies a SQLite error raised while doing `operation` on `path`.
    pub(crate) fn from_sqlite(
        path: &Path,
        operation: &'static str,
        busy_timeout: Duration,
        cause: rusqlite::Error,
    ) -> StateError {
        let kind = match cause.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StateErrorKind::Locked {
                waited_ms: u64::try_from(busy_timeout.as_millis()).unwrap_or(u64::MAX),
                cause,
            },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StateErrorKind::Corrupt {
                detail: cause.to_string(),
            },
            _ => StateErrorKind::Sqlite { cause },
        };
        StateError::new(path, operation, kind)
    }

    pub(crate) fn new(path: &Path, operation: &'static str, kind: StateErrorKind) -> StateError {
        StateError {
            path: path.to_path_buf(),
            operation,
            kind,
        }
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The operation that failed, e.g. `"opening"` or `"acquiring quota"`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The cause.
    pub fn kind(&self) -> &StateErrorKind {
        &self.kind
    }

    /// True when another connection held the database beyond the busy
    /// timeout. Transient: a later search will probably succeed.
    pub fn is_locked(&self) -> bool {
        matches!(self.kind, StateErrorKind::Locked { .. })
    }

    /// True when the file is damaged or is not our database. Persistent:
    /// every later open will fail the same way until an admin removes or
    /// purges the file.
    pub fn is_corrupt(&self) -> bool {
        matches!(self.kind, StateErrorKind::Corrupt { .. })
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state database {}: {}: {}",
            self.path.display(),
            self.operation,
            self.kind
        )
    }
}

impl fmt::Display for StateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateErrorKind::Locked { waited_ms, cause } => write!(
                f,
                "locked by another search (gave up after {waited_ms} ms): \
                 {cause}"
            ),
            StateErrorKind::Corrupt { detail } => {
                write!(f, "corrupt or not a sysmonenrich database: {detail}")
            }
            StateErrorKind::TooNew { found, supported } => write!(
                f,
                "schema version {found} was written by a newer sysmonenrich \
                 (this build understands up to {supported})"
            ),
            StateErrorKind::Io { cause } => write!(f, "{cause}"),
            StateErrorKind::Sqlite { cause } => write!(f, "{cause}"),
        }
    }
}

// The cause is already part of the message (a WARN line is usually printed
// with `{}` only), so `source()` stays `None` to avoid printing it twice in
// `anyhow`'s `{:#}` chains.
impl std::error::Error for StateError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("detail".into()))
    }

    #[test]
    fn classifies_busy_and_corrupt() {
        let p = Path::new("/x/state.db");
        let t = Duration::from_millis(250);
        let busy = StateError::from_sqlite(p, "opening", t, sqlite(rusqlite::ffi::SQLITE_BUSY));
        assert!(busy.is_locked() && !busy.is_corrupt());
        let text = busy.to_string();
        assert!(text.contains("/x/state.db"), "{text}");
        assert!(text.contains("250 ms"), "{text}");
        let notadb = StateError::from_sqlite(p, "opening", t, sqlite(rusqlite::ffi::SQLITE_NOTADB));
        assert!(notadb.is_corrupt() && !notadb.is_locked());
        let full = StateError::from_sqlite(p, "writing", t, sqlite(rusqlite::ffi::SQLITE_FULL));
        assert!(!full.is_corrupt() && !full.is_locked());
        assert!(full.to_string().contains("writing"));
    }
}
