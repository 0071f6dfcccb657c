//! `sigma check` and `sigma install`: what a rule set gives the engine
//! before a search depends on it.
//!
//! The search command never fails on rules (it logs what it skipped and
//! runs with the rest), so an admin needs a place to see the whole report
//! at once: that is `check`. `install` refuses a release the engine cannot
//! use, copies nothing a release folder does not itself hold (links out of
//! it, loops and special files are refused by name), writes each release
//! to its own folder under `local/sigma/sets/` and then moves one pointer
//! (`sigma::sets`), so a search reads the old set or the new one, never a
//! mixture.

use crate::config::conf::ConfFile;
use crate::config::paths;
use crate::sigma::sets::{self, INSTALL_LOCK, NEW_PREFIX, OLD_PREFIX, POINTER, SETS};
use crate::sigma::{
    Filter, Links, LoadReport, Refusal, RefusalKind, RuleSet, WalkLimits, MAX_RULE_FILE,
};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Where installed rules live, relative to the app folder.
pub const LOCAL_SIGMA: &str = "local/sigma";

/// A release larger than this (uncompressed rule and licence files) is
/// refused: SigmaHQ's largest package is about 30 MB.
const MAX_INSTALL_BYTES: u64 = 512 << 20;

/// A release with more files than this is refused (SigmaHQ's whole
/// repository holds about 3,500 rule files).
const MAX_INSTALL_FILES: usize = 50_000;

/// What copying a release folder may read: the same bounds as a zip.
const INSTALL_LIMITS: WalkLimits = WalkLimits {
    max_file: MAX_RULE_FILE,
    max_files: MAX_INSTALL_FILES,
    max_bytes: MAX_INSTALL_BYTES,
    max_entries: 1_000_000,
    max_depth: 32,
};

/// The rule paths `check` uses without arguments: `[sigma] rules` of the
/// app's `sysmonenrich.conf` (comma-separated, relative to the app folder),
/// else the app's `local/sigma`.
fn default_rule_paths() -> anyhow::Result<Vec<PathBuf>> {
    let Some(app) = paths::app_dir() else {
        bail!(
            "no rule directory given and no app folder found \
             (give DIR, or set SYSMONENRICH_APP_DIR to the app folder)"
        );
    };
    let configured: Vec<PathBuf> = ConfFile::load(&app, "sysmonenrich")
        .ok()
        .and_then(|c| c.get("sigma", "rules").map(str::to_owned))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| app.join(p))
                .collect()
        })
        .unwrap_or_default();
    Ok(if configured.is_empty() {
        vec![app.join(LOCAL_SIGMA)]
    } else {
        configured
    })
}

/// Points a person's run at the rule files or folders given with
/// `--sigma` (relative to the working directory, as a person types them),
/// instead of the app's `[sigma] rules`. Nothing given: the app's stay.
pub fn use_rules(setup: &mut crate::enrich::session::Setup, given: &[PathBuf]) {
    if given.is_empty() {
        return;
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    setup.settings.sigma.rules = given.iter().map(|p| cwd.join(p)).collect();
}

/// The rule set of a person's run (`tree`): `--sigma` paths, else the
/// app's `[sigma] rules`; `None` when none are configured or none load.
/// What the search command would log as warnings goes to stderr.
pub fn rules_for_run(given: &[PathBuf]) -> Option<std::sync::Arc<RuleSet>> {
    let mut setup = crate::enrich::session::Setup::load(paths::Paths::for_person());
    use_rules(&mut setup, given);
    let options = setup.settings.options.clone();
    let mut warnings = Vec::new();
    let rules = crate::enrich::session::sigma_rules(&setup, &options, &mut warnings);
    for w in warnings {
        eprintln!("{w}");
    }
    rules
}

/// Every rule, whatever its level or status (a check shows them all), but
/// under the app's `[sigma] memory_mb`, so that `check` and `install` skip
/// exactly what a search would skip for memory.
fn app_filter() -> Filter {
    let setup = crate::enrich::session::Setup::load(paths::Paths::for_person());
    Filter {
        memory_mb: setup
            .settings
            .sigma
            .memory_mb
            .unwrap_or(crate::sigma::DEFAULT_SET_MEMORY_MB),
        ..Filter::default()
    }
}

/// `sigma check [DIR...]`: prints the load report; an error when no rule
/// loads (so scripts can test the exit code).
pub fn check(dirs: &[PathBuf]) -> anyhow::Result<()> {
    let dirs = if dirs.is_empty() {
        default_rule_paths()?
    } else {
        dirs.to_vec()
    };
    let report = RuleSet::load(&dirs, &app_filter());
    let mut out = super::output::stdout();
    write!(out, "{}", describe(&dirs, &report))?;
    out.flush()?;
    if report.rules.is_empty() {
        bail!("no rule loaded from {}", list(&dirs));
    }
    Ok(())
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as a person reads it: totals, skips by reason with up to
/// three example paths, problems, then counts per level and per category.
pub fn describe(dirs: &[PathBuf], report: &LoadReport) -> String {
    use std::fmt::Write as _;
    let rules = &report.rules;
    let mut s = String::new();
    let _ = writeln!(s, "rules from {}", list(dirs));
    for set in &report.sets {
        let _ = writeln!(s, "installed set read: {}", set.display());
    }
    let _ = writeln!(
        s,
        "{} rules load, {} skipped, {} problems ({} evaluated on every event of their category: no literal to index)",
        rules.len(),
        report.skipped.len(),
        report.problems.len(),
        rules.unindexed_count()
    );
    let groups = report.skipped_by_reason();
    if !groups.is_empty() {
        let _ = writeln!(s, "\nskipped, by reason:");
        for g in groups {
            let _ = writeln!(s, "  {:5}  {}", g.count, g.reason);
            for e in g.examples {
                let _ = writeln!(s, "         e.g. {}", e.display());
            }
        }
    }
    if !report.problems.is_empty() {
        let _ = writeln!(s, "\nproblems:");
        for p in &report.problems {
            let _ = writeln!(s, "  {}: {}", p.path.display(), p.message);
        }
    }
    if !rules.is_empty() {
        let mut levels: BTreeMap<std::cmp::Reverse<_>, usize> = BTreeMap::new();
        let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
        for r in rules.rules() {
            *levels.entry(std::cmp::Reverse(r.level)).or_default() += 1;
            *categories.entry(r.logsource.as_str()).or_default() += 1;
        }
        let _ = writeln!(s, "\nby level:");
        for (l, n) in levels {
            let _ = writeln!(s, "  {n:5}  {}", l.0);
        }
        let mut categories: Vec<_> = categories.into_iter().collect();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let _ = writeln!(s, "\nby category:");
        for (c, n) in categories {
            let _ = writeln!(s, "  {n:5}  {}", if c.is_empty() { "(none)" } else { c });
        }
    }
    s
}

/// Whether a file belongs in an installed rule set: a rule, or the
/// licence SigmaHQ ships with its rules (DRL 1.1 asks that it travels with
/// them).
fn wanted(rel: &Path) -> bool {
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let upper = name.to_ascii_uppercase();
    upper.ends_with(".YML")
        || upper.ends_with(".YAML")
        || upper.starts_with("LICENSE")
        || upper.starts_with("LICENCE")
        || upper.starts_with("DRL")
}

/// What one install copied.
#[derive(Default)]
struct Copied {
    files: usize,
    bytes: u64,
    licences: Vec<PathBuf>,
}

impl Copied {
    fn add(&mut self, rel: &Path, len: u64) -> anyhow::Result<()> {
        self.files += 1;
        self.bytes += len;
        if self.files > MAX_INSTALL_FILES {
            bail!("the release has more than {MAX_INSTALL_FILES} rule files: refused");
        }
        if self.bytes > MAX_INSTALL_BYTES {
            bail!(
                "the release is larger than {} MiB of rule files: refused",
                MAX_INSTALL_BYTES >> 20
            );
        }
        let upper = rel.to_string_lossy().to_ascii_uppercase();
        if !(upper.ends_with(".YML") || upper.ends_with(".YAML")) {
            self.licences.push(rel.to_owned());
        }
        Ok(())
    }
}

fn write_file(dst: &Path, rel: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let to = dst.join(rel);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&to, bytes).with_context(|| format!("cannot write {}", to.display()))
}

/// Copies a release folder's rule and licence files through the safe walk
/// (only regular files reached without leaving `src`); what it refused is
/// returned to be named, a bound reached refuses the release.
fn copy_dir(src: &Path, dst: &Path, c: &mut Copied) -> anyhow::Result<Vec<Refusal>> {
    let mut failed = None;
    let refused = crate::sigma::walk(src, Links::Inside, &INSTALL_LIMITS, wanted, |f| {
        if failed.is_none() {
            if let Err(e) =
                write_file(dst, &f.rel, &f.bytes).and_then(|()| c.add(&f.rel, f.bytes.len() as u64))
            {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(limit) = refused.iter().find(|r| r.kind == RefusalKind::Limit) {
        bail!(
            "{}: {}: the release is refused",
            limit.path.display(),
            limit.reason
        );
    }
    Ok(refused)
}

/// A zip entry's path, when it is a plain relative path (no `..`, no
/// root): anything else could write outside the install folder.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

fn unzip(zip_path: &Path, dst: &Path, c: &mut Copied) -> anyhow::Result<()> {
    let file = std::fs::File::open(zip_path)
        .with_context(|| format!("cannot open {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a readable zip archive", zip_path.display()))?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .with_context(|| format!("{}: entry {i} is unreadable", zip_path.display()))?;
        if entry.is_dir() {
            continue;
        }
        let Some(rel) = safe_relative(entry.name()) else {
            continue;
        };
        if !wanted(&rel) || entry.size() > MAX_RULE_FILE {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        // Bounded even when the header lies about the size.
        (&mut entry)
            .take(MAX_RULE_FILE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot unpack {}", zip_path.display(), rel.display()))?;
        if bytes.len() as u64 > MAX_RULE_FILE {
            continue;
        }
        write_file(dst, &rel, &bytes)?;
        c.add(&rel, bytes.len() as u64)?;
    }
    Ok(())
}

/// `sigma install DIR|ZIP` into the app folder (`app` overrides the one
/// found from the binary's place or `SYSMONENRICH_APP_DIR`).
pub fn install(source: &Path, app: Option<&Path>) -> anyhow::Result<()> {
    let app = match app.map(Path::to_path_buf).or_else(paths::app_dir) {
        Some(a) => a,
        None => bail!(
            "no app folder found: run the app's own binary, set SYSMONENRICH_APP_DIR, or give --app-dir"
        ),
    };
    if std::fs::symlink_metadata(source).is_err() {
        bail!("{} does not exist", source.display());
    }
    let root = app.join(LOCAL_SIGMA);
    std::fs::create_dir_all(root.join(SETS))
        .with_context(|| format!("cannot create {}", root.join(SETS).display()))?;
    let _lock = install_lock(&root)?;
    clean_stale(&root);
    let name = set_name();
    let mut staging = Staging::create(&root.join(SETS).join(format!("{NEW_PREFIX}{name}")))?;
    let mut copied = Copied::default();
    let refused = if source.is_dir() {
        copy_dir(source, &staging.0, &mut copied)?
    } else {
        unzip(source, &staging.0, &mut copied)?;
        Vec::new()
    };
    // Named but not pointed at yet: loaded from where it will live, and
    // still removed (by `staging`) if it is refused.
    let set = root.join(SETS).join(&name);
    std::fs::rename(&staging.0, &set)
        .with_context(|| format!("cannot move the new rules to {}", set.display()))?;
    staging.0 = set.clone();
    let report = RuleSet::load(std::slice::from_ref(&set), &app_filter());
    if report.rules.is_empty() {
        for r in &refused {
            eprintln!("not copied: {}: {}", r.path.display(), r.reason);
        }
        bail!(
            "{}: no rule loads ({} rule files, {} skipped); {} left unchanged",
            source.display(),
            copied.files - copied.licences.len(),
            report.skipped.len(),
            root.display()
        );
    }
    point(&root, &name)?;
    staging.keep();
    remove_legacy(&root);
    let kept = prune(&root, &name);
    let mut out = super::output::stdout();
    writeln!(
        out,
        "installed {} files ({} KiB) from {} into {}",
        copied.files,
        copied.bytes / 1024,
        source.display(),
        set.display()
    )?;
    for r in &refused {
        writeln!(out, "not copied: {}: {}", r.path.display(), r.reason)?;
    }
    for k in kept {
        writeln!(
            out,
            "previous set {k} kept: a search is reading it (a later install removes it)"
        )?;
    }
    if copied.licences.is_empty() {
        writeln!(
            out,
            "licence: none found in the release (SigmaHQ's rules are under DRL 1.1)"
        )?;
    } else {
        writeln!(out, "licence: {}", list(&copied.licences))?;
    }
    write!(out, "{}", describe(&[root], &report))?;
    Ok(out.flush()?)
}

/// One install at a time per app: the lock dies with its process, so a
/// killed install never blocks the next one.
fn install_lock(root: &Path) -> anyhow::Result<std::fs::File> {
    let path = root.join(INSTALL_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let locked = sets::try_lock_exclusive(&file)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    if !locked {
        bail!("another sigma install into {} is running", root.display());
    }
    Ok(file)
}

/// What killed installs left: half-written and half-removed sets, pointer
/// temporaries. Safe under the install lock (no other install is running,
/// and no reader ever opens these names).
fn clean_stale(root: &Path) {
    let stale = |dir: &Path, prefixes: &[&str]| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let path = e.path();
                let _ = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    };
    stale(&root.join(SETS), &[NEW_PREFIX, OLD_PREFIX]);
    stale(root, &[POINTER_TMP]);
}

/// Prefix of a pointer being written.
const POINTER_TMP: &str = "current.tmp-";

/// A new set's folder name: sorts by install time.
fn set_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:012}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

/// Moves the pointer to set `name`: written aside, synced, renamed over
/// (a reader reads the old name or the new one, whole).
fn point(root: &Path, name: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = root.join(format!("{POINTER_TMP}{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{name}\n").as_bytes())?;
        f.sync_all()
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, root.join(POINTER)).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot move the rule set pointer {}",
            root.join(POINTER).display()
        )
    })
}

/// Rule files of the layout before installed sets (rules directly in
/// `local/sigma`): no reader looks at them once the pointer exists.
fn remove_legacy(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == SETS || name == POINTER || name == INSTALL_LOCK || name.starts_with(POINTER_TMP)
        {
            continue;
        }
        let path = e.path();
        let _ = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Removes every set but `current` that no search is reading; returns
/// the ones kept because one is.
fn prune(root: &Path, current: &str) -> Vec<String> {
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join(SETS)) else {
        return kept;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| sets::valid_name(n) && n != current)
        .collect();
    names.sort();
    for n in names {
        match sets::remove_if_unused(root, &n) {
            Ok(true) => {}
            Ok(false) => kept.push(n),
            Err(e) => eprintln!(
                "sysmonenrich: warning: the previous rule set {n} is left in {}: {e}",
                root.join(SETS).display()
            ),
        }
    }
    kept
}

/// A folder a new set is written to; removed when dropped unless kept.
struct Staging(PathBuf);

impl Staging {
    fn create(dir: &Path) -> anyhow::Result<Staging> {
        std::fs::create_dir(dir)
            .with_context(|| format!("cannot create a temporary folder {}", dir.display()))?;
        Ok(Staging(dir.to_path_buf()))
    }

    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() && self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_zip_paths() {
        assert!(safe_relative("rules/windows/a.yml").is_some());
        assert!(safe_relative("../a.yml").is_none());
        assert!(safe_relative("/etc/a.yml").is_none());
        assert!(safe_relative("rules/../../a.yml").is_none());
    }

    #[test]
    fn rule_and_licence_files_only() {
        assert!(wanted(Path::new("rules/x.yml")));
        assert!(wanted(Path::new("rules/x.YAML")));
        assert!(wanted(Path::new("LICENSE.Detection.Rules.md")));
        assert!(wanted(Path::new("DRL-1.1.txt")));
        assert!(!wanted(Path::new("notes-on-DRL.txt")));
        assert!(!wanted(Path::new("tools/convert.py")));
        assert!(!wanted(Path::new("README.md")));
    }
}
