//! One safe walk of a rule folder, shared by the loader and `sigma install`.
//!
//! A rule folder is third-party content, so nothing in it may hang, exhaust
//! or leak: each real directory and file is visited once (by device and
//! inode, so links back into the tree neither loop nor multiply files),
//! only regular files are opened (a FIFO would block, a device never ends),
//! the type is checked again on the open handle (a file swapped between the
//! check and the open is refused), a read stops at the size limit plus one
//! byte whatever the metadata says, and the whole walk is bounded in
//! entries, files and bytes. Everything left out is a [`Refusal`] naming
//! the path and why.

use crate::platform::{file_id, open_checked, same_file, FileId};
use std::collections::HashSet;
use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Which symbolic links the walk follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Every link (the loader: an admin may link rule folders together);
    /// each real directory and file is still read once.
    Follow,
    /// Only links whose target stays inside the walked folder (`install`:
    /// a release must not copy `/etc/shadow` or a neighbour's folder).
    Inside,
}

/// How much one walk may read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file read, in bytes.
    pub max_file: u64,
    /// Most files read.
    pub max_files: usize,
    /// Most bytes read over all files.
    pub max_bytes: u64,
    /// Most directory entries looked at (a folder of a million stray files
    /// costs time even when none is a rule).
    pub max_entries: usize,
    /// Deepest directory nesting.
    pub max_depth: usize,
}

/// What kind of thing was left out: the loader files the first two as
/// skipped rule files, the others as problems; `install` gives up on
/// [`Kind::Limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A wanted file that is not read (special file, too big, a second
    /// name for a file already read, a link leaving the tree).
    File,
    /// A directory not entered (already read through another path, too
    /// deep, outside the tree).
    Dir,
    /// A path that could not be read at all.
    Unreadable,
    /// A bound of [`Limits`] was reached: the rest of the walk is not read.
    Limit,
}

/// A path the walk left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The path as found in the walked folder.
    pub path: PathBuf,
    /// Why, without the path (so refusals group by reason).
    pub reason: String,
    /// What kind.
    pub kind: Kind,
}

/// A file the walk read.
pub struct Found {
    /// Its path as found in the walked folder.
    pub path: PathBuf,
    /// Its path relative to the walked folder (empty-parent name when the
    /// root itself is a file).
    pub rel: PathBuf,
    /// Its contents (at most [`Limits::max_file`] bytes).
    pub bytes: Vec<u8>,
}

struct Walk<'a, W, F> {
    links: Links,
    limits: &'a Limits,
    wanted: W,
    found: F,
    /// Canonical root, for [`Links::Inside`].
    root: PathBuf,
    dirs: HashSet<FileId>,
    files: HashSet<FileId>,
    entries: usize,
    read_files: usize,
    read_bytes: u64,
    stopped: bool,
    refused: Vec<Refusal>,
}

/// Walks `root` (a directory, or a single file) in path order and calls
/// `found` for every wanted regular file (`wanted` sees the path relative
/// to `root`); returns what was left out.
pub fn walk(
    root: &Path,
    links: Links,
    limits: &Limits,
    wanted: impl Fn(&Path) -> bool,
    found: impl FnMut(Found),
) -> Vec<Refusal> {
    let mut w = Walk {
        links,
        limits,
        wanted,
        found,
        root: root.to_path_buf(),
        dirs: HashSet::new(),
        files: HashSet::new(),
        entries: 0,
        read_files: 0,
        read_bytes: 0,
        stopped: false,
        refused: Vec::new(),
    };
    match std::fs::metadata(root).and_then(|m| Ok((m, std::fs::canonicalize(root)?))) {
        Err(e) => w.refuse(root, Kind::Unreadable, format!("cannot read: {e}")),
        Ok((meta, canonical)) => {
            w.root = canonical;
            if meta.is_dir() {
                w.dirs.insert(file_id(root, &meta));
                w.dir(root, Path::new(""), 0);
            } else {
                // A file named on its own is wanted whatever its name.
                let rel = PathBuf::from(root.file_name().unwrap_or_default());
                w.file(root, &rel, &meta);
            }
        }
    }
    w.refused
}

/// A file type as a person names it.
fn kind_name(m: &Metadata) -> &'static str {
    crate::platform::special_kind(m)
}

impl<W: Fn(&Path) -> bool, F: FnMut(Found)> Walk<'_, W, F> {
    fn refuse(&mut self, path: &Path, kind: Kind, reason: impl Into<String>) {
        self.refused.push(Refusal {
            path: path.to_path_buf(),
            reason: reason.into(),
            kind,
        });
    }

    fn stop(&mut self, path: &Path, reason: String) {
        if !self.stopped {
            self.stopped = true;
            self.refuse(path, Kind::Limit, reason);
        }
    }

    fn dir(&mut self, path: &Path, rel: &Path, depth: usize) {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                return self.refuse(
                    path,
                    Kind::Unreadable,
                    format!("cannot read directory: {e}"),
                )
            }
        };
        let mut names = Vec::new();
        for e in entries {
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return self.stop(
                    path,
                    format!(
                        "more than {} directory entries: the rest is not read",
                        self.limits.max_entries
                    ),
                );
            }
            match e {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.refuse(
                    path,
                    Kind::Unreadable,
                    format!("cannot list directory: {e}"),
                ),
            }
        }
        names.sort();
        for name in names {
            if self.stopped {
                return;
            }
            // Hidden folders are not rule folders (`.git`, `.github`, an
            // install's `.new-*` staging): never entered, never reported.
            if name.as_encoded_bytes().first() == Some(&b'.')
                && std::fs::metadata(path.join(&name)).is_ok_and(|m| m.is_dir())
            {
                continue;
            }
            let child = path.join(&name);
            let child_rel = rel.join(&name);
            self.entry(&child, &child_rel, depth);
        }
    }

    fn entry(&mut self, path: &Path, rel: &Path, depth: usize) {
        let lmeta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            // Gone since the listing: nothing to refuse.
            Err(_) => return,
        };
        let meta = if lmeta.file_type().is_symlink() {
            match self.follow(path, rel) {
                Some(m) => m,
                None => return,
            }
        } else {
            lmeta
        };
        if meta.is_dir() {
            if !self.dirs.insert(file_id(path, &meta)) {
                self.refuse(
                    path,
                    Kind::Dir,
                    "directory already read through another path (a link back into the tree)",
                );
            } else if depth + 1 > self.limits.max_depth {
                self.refuse(
                    path,
                    Kind::Dir,
                    format!("directories nested deeper than {}", self.limits.max_depth),
                );
            } else {
                self.dir(path, rel, depth + 1);
            }
        } else if (self.wanted)(rel) {
            self.file(path, rel, &meta);
        }
    }

    /// The metadata of a link's target when the walk may follow it; a
    /// link it may not follow is refused here.
    fn follow(&mut self, path: &Path, rel: &Path) -> Option<Metadata> {
        let target = match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) => {
                let kind = if (self.wanted)(rel) {
                    Kind::File
                } else {
                    Kind::Unreadable
                };
                self.refuse(
                    path,
                    kind,
                    format!(
                        "symbolic link that cannot be followed (a loop or a missing target): {e}"
                    ),
                );
                return None;
            }
        };
        if self.links == Links::Inside && !target.starts_with(&self.root) {
            let what = if target.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            };
            self.refuse(
                path,
                what,
                "symbolic link leading outside the source folder: not followed",
            );
            return None;
        }
        match std::fs::metadata(&target) {
            Ok(m) => Some(m),
            Err(e) => {
                self.refuse(path, Kind::Unreadable, format!("cannot read: {e}"));
                None
            }
        }
    }

    fn file(&mut self, path: &Path, rel: &Path, meta: &Metadata) {
        if !meta.is_file() {
            return self.refuse(
                path,
                Kind::File,
                format!("{}, not a regular file: not read", kind_name(meta)),
            );
        }
        if meta.len() > self.limits.max_file {
            return self.refuse(
                path,
                Kind::File,
                format!("file larger than {} KiB", self.limits.max_file / 1024),
            );
        }
        if !self.files.insert(file_id(path, meta)) {
            return self.refuse(
                path,
                Kind::File,
                "same file already read through another path (a second link to it)",
            );
        }
        if self.read_files >= self.limits.max_files {
            return self.stop(
                path,
                format!(
                    "more than {} files: the rest is not read",
                    self.limits.max_files
                ),
            );
        }
        match read_regular(path, meta, self.limits.max_file) {
            Err(reason) => self.refuse(path, Kind::File, reason),
            Ok(bytes) => {
                self.read_files += 1;
                self.read_bytes += bytes.len() as u64;
                if self.read_bytes > self.limits.max_bytes {
                    return self.stop(
                        path,
                        format!(
                            "more than {} MiB of files: the rest is not read",
                            self.limits.max_bytes >> 20
                        ),
                    );
                }
                (self.found)(Found {
                    path: path.to_path_buf(),
                    rel: rel.to_path_buf(),
                    bytes,
                });
            }
        }
    }
}

/// Reads a file checked as regular: opened non-blocking (a FIFO swapped in
/// since the check cannot block), checked again on the handle, read to at
/// most `max + 1` bytes (a file growing while read is still bounded).
fn read_regular(path: &Path, checked: &Metadata, max: u64) -> Result<Vec<u8>, String> {
    let file = open_checked(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !same_file(&meta, checked) {
        return Err("file replaced while being read: not read".into());
    }
    let mut bytes = Vec::with_capacity(meta.len().min(max) as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "file larger than {} KiB (it grew while being read)",
            max / 1024
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const LIMITS: Limits = Limits {
        max_file: 1024,
        max_files: 100,
        max_bytes: 1 << 20,
        max_entries: 1000,
        max_depth: 8,
    };

    fn yml(rel: &Path) -> bool {
        rel.extension().is_some_and(|e| e == "yml")
    }

    fn run(root: &Path, links: Links, limits: &Limits) -> (Vec<PathBuf>, Vec<Refusal>) {
        let mut found = Vec::new();
        let refused = walk(root, links, limits, yml, |f| found.push(f.rel));
        (found, refused)
    }

    fn reason_for<'a>(refused: &'a [Refusal], name: &str) -> &'a str {
        refused
            .iter()
            .find(|r| r.path.file_name().is_some_and(|n| n == name))
            .map(|r| r.reason.as_str())
            .unwrap_or_else(|| panic!("{name} not refused: {refused:?}"))
    }

    #[test]
    fn links_back_to_the_root_are_read_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yml"), "a").unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/c.yml"), "c").unwrap();
        symlink(".", d.path().join("l1")).unwrap();
        symlink(".", d.path().join("l2")).unwrap();
        symlink("a.yml", d.path().join("b.yml")).unwrap();
        let (found, refused) = run(d.path(), Links::Follow, &LIMITS);
        assert_eq!(found, [PathBuf::from("a.yml")]);
        assert!(reason_for(&refused, "l1").contains("already read"));
        assert!(reason_for(&refused, "l2").contains("already read"));
        assert!(reason_for(&refused, "b.yml").contains("second link"));
    }

    #[test]
    fn special_files_are_not_opened_and_reads_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("x.yml");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        symlink("/dev/zero", d.path().join("zero.yml")).unwrap();
        std::fs::write(d.path().join("big.yml"), vec![b'#'; 1025]).unwrap();
        std::fs::write(d.path().join("fits.yml"), vec![b'#'; 1024]).unwrap();
        let (found, refused) = run(d.path(), Links::Follow, &LIMITS);
        assert_eq!(found, [PathBuf::from("fits.yml")]);
        assert!(reason_for(&refused, "zero.yml").contains("character device"));
        assert!(reason_for(&refused, "big.yml").contains("larger than 1 KiB"));
        if ok {
            assert!(reason_for(&refused, "x.yml").contains("FIFO"));
        }
    }

    #[test]
    fn inside_refuses_links_that_leave_the_tree_and_loops() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yml"), "s").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a.yml"), "a").unwrap();
        symlink(outside.path().join("secret.yml"), d.path().join("x.yml")).unwrap();
        symlink(outside.path(), d.path().join("other")).unwrap();
        symlink("loop2", d.path().join("loop1")).unwrap();
        symlink("loop1", d.path().join("loop2")).unwrap();
        symlink("sub", d.path().join("same")).unwrap();
        let (found, refused) = run(d.path(), Links::Inside, &LIMITS);
        assert_eq!(found, [PathBuf::from("same/a.yml")], "{refused:?}");
        assert!(reason_for(&refused, "x.yml").contains("outside"));
        assert!(reason_for(&refused, "other").contains("outside"));
        assert!(reason_for(&refused, "loop1").contains("cannot be followed"));
        assert!(reason_for(&refused, "sub").contains("already read"));
        // The loader follows them.
        let (found, _) = run(d.path(), Links::Follow, &LIMITS);
        assert!(
            found.contains(&PathBuf::from("other/secret.yml")),
            "{found:?}"
        );
    }

    #[test]
    fn the_walk_is_bounded_in_files_and_entries() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(d.path().join(format!("r{i:02}.yml")), "r").unwrap();
        }
        let few = Limits {
            max_files: 5,
            ..LIMITS
        };
        let (found, refused) = run(d.path(), Links::Follow, &few);
        assert_eq!(found.len(), 5);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].kind, Kind::Limit);
        let narrow = Limits {
            max_entries: 10,
            ..LIMITS
        };
        let (found, refused) = run(d.path(), Links::Follow, &narrow);
        assert!(found.is_empty());
        assert!(refused[0].reason.contains("more than 10 directory entries"));
    }
}
