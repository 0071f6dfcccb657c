//! Everything that differs between the Linux and the Windows build, in one
//! place (a leaf: imports nothing of the crate). The rest of the code is
//! the same on both; where a behaviour differs, the function here says how
//! and why.
//!
//! What needs nothing here, and why:
//!
//! - **Binary stdout.** Rust's standard library writes the bytes it is
//!   given on both systems: there is no C runtime text mode in between, so
//!   the protocol's `\n` never becomes `\r\n`. (A console is the exception:
//!   there text is converted to UTF-16, but the protocol never runs on a
//!   console: `main` picks the CLI on a terminal.)
//! - **Paths under `SPLUNK_HOME`.** `C:\Program Files\Splunk` is joined
//!   with relative parts made of components, which `Path::join` separates
//!   with the system's separator; spaces need nothing, as no path is ever
//!   passed through a shell.
//! - **SQLite.** Its own locking (`LockFileEx` on Windows, POSIX locks on
//!   Linux) is what makes concurrent searches wait for each other; the
//!   busy timeout works the same on both.
//! - **Hidden input** (`keys`): `rpassword` switches the terminal's echo
//!   off on both (termios; the console mode on Windows).

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

/// What tells two directory entries apart as the same file, so a walk
/// visits each real folder and file once: device and inode on Linux; on
/// Windows, where stable Rust gives no file index, the canonical path
/// (links, junctions and `..` resolved).
#[cfg(unix)]
pub type FileId = (u64, u64);
/// See the Unix definition.
#[cfg(windows)]
pub type FileId = PathBuf;

/// `path`'s identity (see [`FileId`]), `meta` being its metadata.
#[cfg(unix)]
pub fn file_id(_path: &Path, meta: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// See the Unix definition. A path that cannot be resolved is its own
/// identity.
#[cfg(windows)]
pub fn file_id(path: &Path, _meta: &Metadata) -> FileId {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether a file opened after a check is the file that was checked (it
/// may have been replaced in between). Linux compares device and inode;
/// Windows has no special files to swap in (no FIFOs or devices in the
/// file system), so a regular file is the file.
pub fn same_file(opened: &Metadata, checked: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        opened.is_file() && (opened.dev(), opened.ino()) == (checked.dev(), checked.ino())
    }
    #[cfg(windows)]
    {
        let _ = checked;
        opened.is_file()
    }
}

/// A file type that is neither a regular file nor a folder, as a person
/// names it.
pub fn special_kind(meta: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_char_device() {
            return "a character device";
        } else if t.is_block_device() {
            return "a block device";
        }
    }
    let _ = meta;
    "not a regular file"
}

/// Opens a file checked as regular for reading. On Linux non-blocking and
/// without becoming a controlling terminal: a FIFO swapped in since the
/// check cannot block the open. Windows has nothing to swap in.
pub fn open_checked(path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
            .open(path)
    }
    #[cfg(windows)]
    {
        File::open(path)
    }
}

/// A reader's hold on a folder it reads (an installed Sigma rule set): as
/// long as the returned handle lives, [`remove_unless_held`] leaves the
/// folder alone.
///
/// Linux: a shared `flock` on the folder. Windows: the folder opened
/// without delete sharing, which makes any rename of it fail until the
/// handle closes (Windows cannot lock a folder, but it can refuse to move
/// one that is in use).
pub fn hold_folder(path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        let f = File::open(path)?;
        f.lock_shared()?;
        Ok(f)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        /// `FILE_SHARE_READ | FILE_SHARE_WRITE`: no `FILE_SHARE_DELETE`.
        const SHARE_NO_DELETE: u32 = 0x1 | 0x2;
        /// `FILE_FLAG_BACKUP_SEMANTICS`: needed to open a folder.
        const BACKUP_SEMANTICS: u32 = 0x0200_0000;
        std::fs::OpenOptions::new()
            .read(true)
            .share_mode(SHARE_NO_DELETE)
            .custom_flags(BACKUP_SEMANTICS)
            .open(path)
    }
}

/// Whether `path` still names the folder `held` holds: an install may
/// have moved it away between the open and the hold. Linux compares
/// device and inode; on Windows the held folder cannot have moved (see
/// [`hold_folder`]), so it is still there.
pub fn still_named(held: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let id = |m: Metadata| (m.dev(), m.ino());
        match (held.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => id(a) == id(b),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        let _ = held;
        path.is_dir()
    }
}

/// Moves the folder `path` to `away` unless a reader holds it (see
/// [`hold_folder`]); `Ok(false)` when one does. The caller deletes `away`.
pub fn move_unless_held(path: &Path, away: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        let lock = File::open(path)?;
        if !try_lock_exclusive(&lock)? {
            return Ok(false);
        }
        std::fs::rename(path, away)?;
        Ok(true)
    }
    #[cfg(windows)]
    {
        /// `ERROR_SHARING_VIOLATION`.
        const SHARING_VIOLATION: i32 = 32;
        match std::fs::rename(path, away) {
            Ok(()) => Ok(true),
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(SHARING_VIOLATION) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Takes `file`'s exclusive lock if nobody holds it; `false` if somebody
/// does. The lock dies with the process (`flock` on Linux, `LockFileEx`
/// on Windows), so a killed install holds nothing.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Where protocol replies go: stdout as a plain file. On Linux a duplicate
/// of descriptor 1, so `writev` goes straight to the pipe (`Stdout` is
/// line-buffered and scans what it writes for newlines). On Windows plain
/// stdout: its writes go to the pipe as they are (no text mode; see the
/// module docs), one `WriteFile` per buffer.
pub fn reply_output() -> Box<dyn std::io::Write> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(File::from(fd)),
            Err(_) => Box::new(std::io::stdout()),
        }
    }
    #[cfg(windows)]
    {
        Box::new(std::io::stdout())
    }
}

/// This process's peak resident memory in KiB, for the end-of-search log
/// line: `VmHWM` on Linux; not read on Windows (it would need the process
/// API through `unsafe` code, which the crate forbids), so the log line
/// says it is unknown there.
pub fn peak_rss_kb() -> Option<u64> {
    #[cfg(unix)]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
    #[cfg(windows)]
    {
        None
    }
}

/// A person's home folder: `HOME`, else (Windows) `USERPROFILE`.
pub fn user_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .map(PathBuf::from)
}

/// The state database under a person's home: the XDG state folder on
/// Linux, the local application data folder on Windows (`AppData\Local`,
/// which is not roamed between machines: a cache should not be).
pub fn user_state_db(home: &Path) -> PathBuf {
    #[cfg(unix)]
    let base = home.join(".local").join("state");
    #[cfg(windows)]
    let base = std::env::var_os("LOCALAPPDATA")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("AppData").join("Local"));
    base.join("sysmonenrich").join("state.db")
}

/// A warning when others may read a file that holds a secret (as ssh does
/// for private keys, but only a warning: CI runners often have odd modes).
/// Linux reads the mode bits; Windows keeps access in ACLs, which a user
/// profile's files inherit private by default, so nothing is said there.
pub fn secret_file_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} holds a password or token and is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            )
        })
    }
    #[cfg(windows)]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_folder_is_not_moved_and_a_free_one_is() {
        let d = tempfile::tempdir().unwrap();
        let set = d.path().join("a");
        std::fs::create_dir(&set).unwrap();
        let away = d.path().join("old-a");
        let held = hold_folder(&set).unwrap();
        assert!(still_named(&held, &set));
        assert!(!move_unless_held(&set, &away).unwrap());
        assert!(set.is_dir() && !away.exists());
        drop(held);
        assert!(move_unless_held(&set, &away).unwrap());
        assert!(!set.exists() && away.is_dir());
    }

    #[test]
    fn an_exclusive_lock_is_taken_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let a = File::create(&p).unwrap();
        let b = File::open(&p).unwrap();
        assert!(try_lock_exclusive(&a).unwrap());
        assert!(!try_lock_exclusive(&b).unwrap());
        drop(a);
        assert!(try_lock_exclusive(&b).unwrap());
    }

    #[test]
    fn the_same_file_has_one_id_through_two_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("x")).unwrap();
        let direct = d.path().join("x");
        let around = d.path().join("x").join("..").join("x");
        let id = |p: &Path| file_id(p, &std::fs::metadata(p).unwrap());
        assert_eq!(id(&direct), id(&around));
        assert_ne!(id(&direct), id(d.path()));
    }
}
