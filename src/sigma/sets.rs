//! Installed rule sets: versioned folders and one pointer, so a search
//! sees one whole set whatever an install does meanwhile.
//!
//! ```text
//! local/sigma/current            the name of the set in use (replaced by rename)
//! local/sigma/sets/<name>/       one folder per install, never changed once named
//! local/sigma/sets/.new-<name>/  an install being written (nobody reads it)
//! local/sigma/.install.lock      one install at a time
//! ```
//!
//! A reader resolves the pointer once per load and holds the set's folder
//! while it reads (`platform::hold_folder`: a shared `flock` on Linux, a
//! handle that forbids moving it on Windows); an install removes an old
//! set only when nobody holds it, and moves it away first, so a reader
//! never reads a set that is being deleted (it re-reads the pointer
//! instead). The holds die with their process: a killed search or install
//! holds nothing. Why locks and not "keep the N newest": a slow search on a
//! loaded search head can outlive any N installs.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The pointer file's name.
pub const POINTER: &str = "current";
/// The folder holding the sets.
pub const SETS: &str = "sets";
/// The install lock's name.
pub const INSTALL_LOCK: &str = ".install.lock";
/// Prefix of a set being written.
pub const NEW_PREFIX: &str = ".new-";
/// Prefix of a set being removed.
pub const OLD_PREFIX: &str = ".old-";

/// How often a reader re-reads a pointer that changed under it before it
/// gives up (each retry means an install finished meanwhile).
const RETRIES: usize = 20;

/// A set being read: its folder, locked against removal until dropped.
pub struct Resolved {
    /// The set's folder.
    pub dir: PathBuf,
    _lock: File,
}

/// Whether `dir` holds installed sets (a pointer file and a `sets` folder)
/// rather than rule files.
pub fn is_managed(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(POINTER)).is_ok_and(|m| m.is_file())
        && dir.join(SETS).is_dir()
}

/// A set name as the pointer may hold it: one plain, visible path
/// component (a pointer is never a way out of `sets/`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The set name `dir`'s pointer holds now.
pub fn read_pointer(dir: &Path) -> Result<String, String> {
    let mut text = String::new();
    File::open(dir.join(POINTER))
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the rule set pointer {POINTER}: {e}"))?;
    let name = text.trim();
    if !valid_name(name) {
        return Err(format!(
            "the rule set pointer {POINTER} does not name a set (\"{}\")",
            name.escape_debug()
        ));
    }
    Ok(name.to_owned())
}

/// The set `dir`'s pointer names, locked for reading; `Ok(None)` when
/// `dir` is a plain rule folder.
pub fn resolve(dir: &Path) -> Result<Option<Resolved>, String> {
    if !is_managed(dir) {
        return Ok(None);
    }
    for _ in 0..RETRIES {
        let name = read_pointer(dir)?;
        let set = dir.join(SETS).join(&name);
        let lock = match crate::platform::hold_folder(&set) {
            Ok(f) => f,
            // Removed after a newer install moved the pointer on, unless
            // the pointer still names it: then it is broken.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if read_pointer(dir)? == name {
                    return Err(format!(
                        "the rule set pointer {POINTER} names set {name}, which does not exist"
                    ));
                }
                continue;
            }
            Err(e) => return Err(format!("cannot open rule set {name}: {e}")),
        };
        // An install may have renamed it away between the open and the
        // hold: then this handle is a folder on its way out.
        if crate::platform::still_named(&lock, &set) {
            return Ok(Some(Resolved {
                dir: set,
                _lock: lock,
            }));
        }
    }
    Err(format!(
        "the installed rule set changed {RETRIES} times while being opened"
    ))
}

/// Takes `file`'s exclusive `flock` if nobody holds it; `false` if
/// somebody does.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    crate::platform::try_lock_exclusive(file)
}

/// Removes `sets/<name>` if no reader holds it: locked exclusively, renamed
/// out of the readers' way, then deleted. `false` when a reader holds it
/// (a later install removes it).
pub fn remove_if_unused(dir: &Path, name: &str) -> std::io::Result<bool> {
    let set = dir.join(SETS).join(name);
    let away = dir.join(SETS).join(format!("{OLD_PREFIX}{name}"));
    if !crate::platform::move_unless_held(&set, &away)? {
        return Ok(false);
    }
    std::fs::remove_dir_all(&away)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(names: &[&str], current: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::create_dir_all(d.path().join(SETS).join(n)).unwrap();
        }
        std::fs::write(d.path().join(POINTER), format!("{current}\n")).unwrap();
        d
    }

    #[test]
    fn a_plain_folder_is_not_managed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(SETS)).unwrap();
        assert!(resolve(d.path()).unwrap().is_none());
    }

    #[test]
    fn the_pointer_names_a_set_inside_sets() {
        let d = managed(&["a"], "a");
        let r = resolve(d.path()).unwrap().unwrap();
        assert_eq!(r.dir, d.path().join("sets/a"));
        for bad in ["../etc", ".new-a", "a/b", ""] {
            std::fs::write(d.path().join(POINTER), bad).unwrap();
            let e = resolve(d.path()).err().unwrap();
            assert!(e.contains("does not name a set"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_set_being_read_is_not_removed() {
        let d = managed(&["a", "b"], "a");
        let held = resolve(d.path()).unwrap().unwrap();
        assert!(!remove_if_unused(d.path(), "a").unwrap());
        assert!(held.dir.join(".").is_dir());
        drop(held);
        assert!(remove_if_unused(d.path(), "a").unwrap());
        assert!(!d.path().join("sets/a").exists());
        assert!(!d.path().join("sets/.old-a").exists());
    }

    #[test]
    fn a_pointer_to_a_removed_set_is_an_error_not_a_hang() {
        let d = managed(&["b"], "a");
        let e = resolve(d.path()).err().unwrap();
        assert!(e.contains("names set a, which does not exist"), "{e}");
    }
}
