//! `sigma check` and `sigma install`: what a rule set gives the engine
//! before a search depends on it.
//!
//! The search command never fails on rules (it logs what it skipped and
//! runs with the rest), so an admin needs a place to see the whole report
//! at once: that is `check`. `install` refuses a release the engine cannot
//! use and swaps the app's `local/sigma` only once the new set has been
//! written out and loaded from where it will live, so a search never sees
//! half a rule set.

use crate::config::conf::ConfFile;
use crate::config::paths;
use crate::sigma::{Filter, LoadReport, RuleSet, MAX_RULE_FILE};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Where installed rules live, relative to the app folder.
pub const LOCAL_SIGMA: &str = "local/sigma";

/// A release larger than this (uncompressed rule and licence files) is
/// refused: SigmaHQ's largest package is about 30 MB.
const MAX_INSTALL_BYTES: u64 = 512 << 20;

/// Directory depth limit when copying (guards against symlink loops).
const MAX_DEPTH: usize = 32;

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

/// `sigma check [DIR...]`: prints the load report; an error when no rule
/// loads (so scripts can test the exit code).
pub fn check(dirs: &[PathBuf]) -> anyhow::Result<()> {
    let dirs = if dirs.is_empty() {
        default_rule_paths()?
    } else {
        dirs.to_vec()
    };
    let report = RuleSet::load(&dirs, &Filter::default());
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
        || upper.contains("DRL")
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

fn copy_dir(
    src: &Path,
    rel: &Path,
    dst: &Path,
    depth: usize,
    c: &mut Copied,
) -> anyhow::Result<()> {
    let dir = src.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        let path = src.join(&rel);
        if path.is_dir() {
            if depth < MAX_DEPTH {
                copy_dir(src, &rel, dst, depth + 1, c)?;
            }
        } else if wanted(&rel) {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len > MAX_RULE_FILE {
                continue; // the engine would skip it anyway
            }
            let to = dst.join(&rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::copy(&path, &to)
                .with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
            c.add(&rel, len)?;
        }
    }
    Ok(())
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
        let to = dst.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&to, &bytes).with_context(|| format!("cannot write {}", to.display()))?;
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
    if !source.exists() {
        bail!("{} does not exist", source.display());
    }
    let target = app.join(LOCAL_SIGMA);
    let parent = target.parent().unwrap_or(&app).to_path_buf();
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // Beside the target, so the final rename stays on one file system.
    let staging = Staging::create(&parent)?;
    let mut copied = Copied::default();
    if source.is_dir() {
        copy_dir(source, Path::new(""), &staging.0, 0, &mut copied)?;
    } else {
        unzip(source, &staging.0, &mut copied)?;
    }
    let report = RuleSet::load(std::slice::from_ref(&staging.0), &Filter::default());
    if report.rules.is_empty() {
        bail!(
            "{}: no rule loads ({} rule files, {} skipped); {} left unchanged",
            source.display(),
            copied.files - copied.licences.len(),
            report.skipped.len(),
            target.display()
        );
    }
    swap_in(&staging.0, &target)?;
    let mut out = super::output::stdout();
    writeln!(
        out,
        "installed {} files ({} KiB) from {} into {}",
        copied.files,
        copied.bytes / 1024,
        source.display(),
        target.display()
    )?;
    if copied.licences.is_empty() {
        writeln!(
            out,
            "licence: none found in the release (SigmaHQ's rules are under DRL 1.1)"
        )?;
    } else {
        writeln!(out, "licence: {}", list(&copied.licences))?;
    }
    write!(out, "{}", describe(&[target], &report))?;
    Ok(out.flush()?)
}

/// The folder a new set is written to; removed when dropped unless it
/// was renamed into place.
struct Staging(PathBuf);

impl Staging {
    fn create(parent: &Path) -> anyhow::Result<Staging> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = parent.join(format!(".sigma-new-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create a temporary folder {}", dir.display()))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Replaces `target` with `staged`: the old set is renamed aside, the new
/// one renamed in, then the old one removed. A failure in between puts the
/// old set back.
fn swap_in(staged: &Path, target: &Path) -> anyhow::Result<()> {
    let old = target.with_file_name(format!(".sigma-old-{}", std::process::id()));
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old)
            .with_context(|| format!("cannot move the previous {} aside", target.display()))?;
    }
    if let Err(e) = std::fs::rename(staged, target) {
        if had_old {
            let _ = std::fs::rename(&old, target);
        }
        let _ = std::fs::remove_dir_all(staged);
        return Err(e)
            .with_context(|| format!("cannot move the new rules to {}", target.display()));
    }
    if had_old {
        if let Err(e) = std::fs::remove_dir_all(&old) {
            eprintln!(
                "sysmonenrich: warning: the previous rules are left in {}: {e}",
                old.display()
            );
        }
    }
    Ok(())
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
        assert!(!wanted(Path::new("tools/convert.py")));
        assert!(!wanted(Path::new("README.md")));
    }
}
