//! `sysmonenrich tree GUID FILE…`: the process tree around one process,
//! for a person: its ancestors up to the root, the process, and everything
//! it started, with the lineage rules and the Sigma rules each process's
//! creation matches.
//!
//! ```text
//! explorer.exe (pid 3012) {…} "C:\Windows\Explorer.EXE"
//! └─ WINWORD.EXE (pid 1234) {…} "…WINWORD.EXE /n invoice.docm"
//!    └─ ▶ cmd.exe (pid 4242) {…} "cmd /c whoami"  [office_spawns_shell_or_lolbin]  sigma: Whoami Utility Execution (medium)
//!       ├─ whoami.exe (pid 4300) {…} "whoami"
//!       └─ powershell.exe (pid 4310) {…} "powershell -enc …"  [office_ancestor_of_shell]
//! ```
//!
//! The files are read like `enrich` reads them (CSV, JSON lines, `.evtx`,
//! gzip allowed), whole: every process creation is indexed before
//! anything is drawn, so order does not matter. Rule matches come from the
//! lineage engine itself, so the flags are the ones `lineage_flags` shows;
//! Sigma matches come from the rule set the command would load (`--sigma`,
//! else the app's `[sigma] rules`), evaluated on each creation event as
//! the command evaluates it, so they are the ones `sigma_titles` shows.

use super::input;
use crate::config::conf::ConfFile;
use crate::lineage::{
    entry_name, guid_text, Engine, LineageSettings, ProcessInfo, Rules, SourceKind, Start,
};
use crate::protocol::records::RowReader;
use crate::sigma::{Fields, RuleId, RuleSet, Scratch};
use crate::sysmon::{FieldMap, FieldNames, ProcessGuid};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `tree` was asked.
#[derive(clap::Args, Debug, Clone)]
pub struct TreeArgs {
    /// The ProcessGuid (braces optional, any case).
    pub guid: String,
    /// Input files: CSV, JSON lines or .evtx (gzip allowed), read whole.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Show whole command lines (default: cut at 120 characters).
    #[arg(long)]
    pub full: bool,
    /// Levels of descendants to show (default: all).
    #[arg(long)]
    pub depth: Option<usize>,
    /// A lineage_rules.conf to use instead of the app's or the built-in.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Sigma rule files or folders (repeatable) instead of the app's
    /// `[sigma] rules`: each process shows the rules its creation matched.
    #[arg(long, value_name = "PATH")]
    pub sigma: Vec<PathBuf>,
}

/// Longest command line shown without `--full`.
const CMD_WIDTH: usize = 120;
/// Longest ancestor chain followed (cycles are cut before).
const MAX_ANCESTORS: usize = 1024;
/// Most lines one tree draws (ancestors, the process, descendants): more
/// is no use at a terminal, and a line's indent grows with its depth, so
/// a deep chain drawn whole would be quadratic in bytes. A last line says
/// how many descendants were left out.
const MAX_LINES: usize = 5_000;

/// One process as the input tells it.
#[derive(Debug, Clone, Default)]
struct Node {
    parent: Option<ProcessGuid>,
    image: String,
    command_line: String,
    parent_image: String,
    parent_command_line: String,
    pid: String,
    host: String,
    time: f64,
    /// Its own creation event (EventCode 1) is in the input.
    created: bool,
    /// Rows naming it as the acting process.
    events: u64,
    /// Sigma rules its creation matched: `title (level)`.
    sigma: Vec<String>,
}

/// Every process of the input.
#[derive(Default)]
struct Processes {
    nodes: HashMap<ProcessGuid, Node>,
    rows: u64,
    /// The Sigma rules creations are matched against, when any load.
    sigma: Option<Sigma>,
}

/// A rule set and the engine's reused buffers.
struct Sigma {
    rules: Arc<RuleSet>,
    scratch: Scratch,
    matched: Vec<RuleId>,
}

impl Sigma {
    /// `title (level)` of every rule the event matches.
    fn titles(&mut self, ev: &impl Fields) -> Vec<String> {
        self.matched.clear();
        self.rules
            .matches_with(ev, &mut self.scratch, &mut self.matched);
        self.matched
            .iter()
            .map(|&id| {
                let r = self.rules.rule(id);
                format!("{} ({})", r.title, r.level.as_str())
            })
            .collect()
    }
}

/// One input row as the Sigma engine sees it.
struct RowView<'a> {
    columns: &'a HashMap<String, usize>,
    rec: &'a csv::ByteRecord,
}

impl Fields for RowView<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.rec.get(*self.columns.get(name)?)?).ok()
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .filter(|(n, _)| *n != "_raw" && !n.starts_with("__mv_"))
            .filter_map(|(_, &i)| std::str::from_utf8(self.rec.get(i)?).ok())
            .filter(|v| !v.is_empty())
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Processes {
    /// Reads one body.
    fn add_body(&mut self, body: &[u8], names: &FieldNames) -> anyhow::Result<()> {
        let Some(mut rows) = RowReader::new(body, usize::MAX)? else {
            return Ok(());
        };
        let header = rows.header().clone();
        let map = FieldMap::new(names, |n| header.position(n));
        let col = |names: &[&str]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|n| header.position(n.as_bytes()))
                .collect()
        };
        let pid_cols = col(&["ProcessId", "process_id"]);
        let source_pid_cols = col(&["SourceProcessId", "SourceProcessID"]);
        let parent_pid_cols = col(&["ParentProcessId", "parent_process_id"]);
        let raw_col = header.position(b"_raw");
        let columns: HashMap<String, usize> = header
            .names()
            .iter()
            .enumerate()
            .rev()
            .map(|(i, n)| (text(n), i))
            .collect();
        let mut rec = csv::ByteRecord::new();
        while rows.read(&mut rec)?.is_some() {
            self.rows += 1;
            let event = map.event(&rec);
            let Some(guid) = event.guid else { continue };
            let first = |cols: &[usize]| -> String {
                cols.iter()
                    .filter_map(|&i| rec.get(i))
                    .find(|v| !v.is_empty())
                    .map(text)
                    .unwrap_or_default()
            };
            let source = matches!(event.code, Some(8) | Some(10));
            let mut pid = first(if source { &source_pid_cols } else { &pid_cols });
            let mut parent_pid = first(&parent_pid_cols);
            if pid.is_empty() {
                // Only the XML: take the ids from it.
                if let Some(x) = raw_col
                    .and_then(|i| rec.get(i))
                    .filter(|r| !r.is_empty())
                    .and_then(crate::sysmon::xml::parse_event_xml)
                {
                    let id = if source {
                        "SourceProcessId"
                    } else {
                        "ProcessId"
                    };
                    pid = x.get(id).unwrap_or("").to_string();
                    parent_pid = x.get("ParentProcessId").unwrap_or("").to_string();
                }
            }
            let creation = event.is_process_creation();
            let node = self.nodes.entry(guid).or_default();
            node.events += 1;
            if creation && !node.created {
                let sigma = match self.sigma.as_mut() {
                    Some(s) => s.titles(&RowView {
                        columns: &columns,
                        rec: &rec,
                    }),
                    None => Vec::new(),
                };
                // First creation event wins, as in the engine's table.
                *node = Node {
                    parent: event.parent_guid,
                    image: text(&event.image),
                    command_line: text(&event.command_line),
                    parent_image: text(&event.parent_image),
                    parent_command_line: text(&event.parent_command_line),
                    pid,
                    host: text(&event.host),
                    time: event.time,
                    created: true,
                    events: node.events,
                    sigma,
                };
                if let Some(p) = event.parent_guid.filter(|p| !p.is_zero() && *p != guid) {
                    // What the child says about its parent, in case the
                    // parent's own creation is not in the input.
                    let parent = self.nodes.entry(p).or_default();
                    if !parent.created && parent.image.is_empty() {
                        parent.image = text(&event.parent_image);
                        parent.command_line = text(&event.parent_command_line);
                        parent.host = text(&event.host);
                    }
                    if !parent.created && parent.pid.is_empty() {
                        parent.pid = parent_pid;
                    }
                }
            } else if !node.created {
                if node.image.is_empty() {
                    node.image = text(&event.image);
                }
                if node.pid.is_empty() {
                    node.pid = pid;
                }
                if node.host.is_empty() {
                    node.host = text(&event.host);
                }
            }
        }
        Ok(())
    }

    /// Children of each process, oldest first.
    fn children(&self) -> HashMap<ProcessGuid, Vec<ProcessGuid>> {
        let mut children: HashMap<ProcessGuid, Vec<ProcessGuid>> = HashMap::new();
        for (&g, n) in &self.nodes {
            if let Some(p) = n.parent.filter(|p| n.created && !p.is_zero() && *p != g) {
                children.entry(p).or_default().push(g);
            }
        }
        for list in children.values_mut() {
            list.sort_by(|a, b| {
                self.nodes[a]
                    .time
                    .total_cmp(&self.nodes[b].time)
                    .then(a.cmp(b))
            });
        }
        children
    }
}

/// The rules: `--rules FILE`, else the app's `lineage_rules.conf`
/// (`default/` + `local/`) when the binary runs from the app, else the
/// built-in copy of the shipped file.
fn load_rules(path: Option<&Path>) -> anyhow::Result<Rules> {
    if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        let conf = ConfFile::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        return Rules::from_conf(&conf).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    }
    if let Some(dir) = crate::config::paths::app_dir() {
        match crate::enrich::session::app_rules(Some(&dir)) {
            Ok(r) => return Ok(r),
            Err(e) => eprintln!("sysmonenrich: warning: {e}; using the built-in rules"),
        }
    }
    Ok(Rules::builtin()?)
}

/// Runs `tree`.
pub fn run(args: &TreeArgs) -> anyhow::Result<()> {
    let target = ProcessGuid::parse(args.guid.as_bytes()).ok_or_else(|| {
        anyhow::anyhow!(
            "{:?} is not a process GUID (expected {{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}})",
            args.guid
        )
    })?;
    let rules = load_rules(args.rules.as_deref())?;
    let names = FieldNames::default();
    let mut procs = Processes {
        sigma: crate::cli::sigma::rules_for_run(&args.sigma).map(|rules| Sigma {
            rules,
            scratch: Scratch::default(),
            matched: Vec::new(),
        }),
        ..Processes::default()
    };
    for file in &args.files {
        let mut add = |body: &input::Body| {
            procs
                .add_body(body, &names)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
        };
        match input::Format::from_path(file) {
            input::Format::Csv => input::csv_batches(input::open(file)?, 50_000, &mut add)?,
            input::Format::JsonLines => input::jsonl_batches(input::open(file)?, 50_000, &mut add)?,
            input::Format::Evtx => input::evtx_batches(file, 50_000, &mut add)?,
        }
    }
    let mut out = super::output::stdout();
    draw(&procs, target, &rules, args, &mut out)?;
    out.flush()?;
    Ok(())
}

fn draw(
    procs: &Processes,
    target: ProcessGuid,
    rules: &Rules,
    args: &TreeArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let guid = String::from_utf8_lossy(&guid_text(target)).into_owned();
    let Some(own) = procs.nodes.get(&target) else {
        anyhow::bail!(
            "{guid} does not appear in the input ({} rows read): no event names it as a process or a parent",
            procs.rows
        );
    };
    let children = procs.children();

    // Ancestors, nearest first.
    let mut ancestors = Vec::new();
    let mut seen = HashSet::from([target]);
    let mut cur = own.parent.filter(|_| own.created);
    let mut ancestors_cut = false;
    while let Some(p) = cur.filter(|p| !p.is_zero()) {
        if !seen.insert(p) {
            break;
        }
        if ancestors.len() >= MAX_ANCESTORS {
            ancestors_cut = true;
            break;
        }
        ancestors.push(p);
        cur = procs
            .nodes
            .get(&p)
            .filter(|n| n.created)
            .and_then(|n| n.parent);
    }
    ancestors.reverse();

    // Descendants in drawing order, with their depth below the target.
    let mut below = Vec::new();
    let mut stack: Vec<(ProcessGuid, usize)> = children
        .get(&target)
        .map(|c| c.iter().rev().map(|&g| (g, 1)).collect())
        .unwrap_or_default();
    while let Some((g, d)) = stack.pop() {
        if !seen.insert(g) {
            continue;
        }
        below.push((g, d));
        if args.depth.is_none_or(|max| d < max) {
            if let Some(c) = children.get(&g) {
                stack.extend(c.iter().rev().map(|&k| (k, d + 1)));
            }
        }
    }
    // What fits under the cap (the ancestors and the process come first).
    let room = MAX_LINES.saturating_sub(ancestors.len() + 1);
    let drawn = below.len().min(room);

    let flags = rule_flags(
        procs,
        rules,
        ancestors
            .iter()
            .chain([&target])
            .chain(below[..drawn].iter().map(|(g, _)| g)),
    );

    let host = if own.host.is_empty() {
        String::new()
    } else {
        format!(" on {}", own.host)
    };
    writeln!(
        out,
        "Process tree of {guid}{host}: {} ancestor{}, {} descendant{}\n",
        ancestors.len(),
        if ancestors.len() == 1 { "" } else { "s" },
        below.len(),
        if below.len() == 1 { "" } else { "s" },
    )?;
    if ancestors_cut {
        writeln!(
            out,
            "(older ancestors not shown: the chain goes on above the {MAX_ANCESTORS} nearest)"
        )?;
    }
    let label = |g: ProcessGuid| label(procs, g, flags.get(&g), args.full);
    let mut indent = String::new();
    for (i, &a) in ancestors.iter().enumerate() {
        if i == 0 {
            writeln!(out, "{}", label(a))?;
        } else {
            writeln!(out, "{indent}└─ {}", label(a))?;
            indent.push_str("   ");
        }
    }
    if ancestors.is_empty() {
        writeln!(out, "▶ {}", label(target))?;
    } else {
        writeln!(out, "{indent}└─ ▶ {}", label(target))?;
        indent.push_str("   ");
    }

    // Tree lines for the descendants: `│` continues down a level while that
    // level's entry has a later sibling. Whether it has one is known once,
    // before drawing (a per-line look-ahead made deep trees cubic), and the
    // prefix of each line grows from its parent's, so the work is the size
    // of what is drawn.
    let last = last_siblings(&below);
    // `indent` plus one piece per level: the prefix of a line at depth `d`
    // is `prefix[..ends[d - 1]]`.
    let mut prefix = indent;
    let mut ends = vec![prefix.len()];
    for (i, &(g, d)) in below[..drawn].iter().enumerate() {
        ends.truncate(d);
        prefix.truncate(ends[d - 1]);
        let mut line = format!(
            "{prefix}{}{}",
            if last[i] { "└─ " } else { "├─ " },
            label(g)
        );
        prefix.push_str(if last[i] { "   " } else { "│  " });
        ends.push(prefix.len());
        let hidden = children.get(&g).map_or(0, Vec::len);
        if hidden > 0 && args.depth.is_some_and(|max| d >= max) {
            line.push_str(&format!(" (+{hidden} children below --depth)"));
        }
        writeln!(out, "{line}")?;
    }
    if drawn < below.len() {
        writeln!(
            out,
            "… {} more descendant{} not drawn (a tree stops at {MAX_LINES} lines; \
             --depth N or a process further down shows the rest)",
            below.len() - drawn,
            if below.len() - drawn == 1 { "" } else { "s" },
        )?;
    }
    Ok(())
}

/// For each entry of a pre-order walk (`(process, depth)`), whether it is
/// the last child of its parent: no later entry at its depth before one
/// shallower. One pass from the end, remembering per depth whether an
/// entry was seen since the last shallower one.
fn last_siblings(below: &[(ProcessGuid, usize)]) -> Vec<bool> {
    let mut last = vec![false; below.len()];
    let mut later: Vec<bool> = Vec::new();
    for (i, &(_, d)) in below.iter().enumerate().rev() {
        later.resize(d + 1, false);
        last[i] = !later[d];
        later[d] = true;
    }
    last
}

/// Rule names each shown process matches, from the lineage engine over
/// every creation of the input.
fn rule_flags<'a>(
    procs: &Processes,
    rules: &Rules,
    shown: impl Iterator<Item = &'a ProcessGuid>,
) -> HashMap<ProcessGuid, Vec<String>> {
    let created = procs.nodes.values().filter(|n| n.created).count();
    let mut engine = Engine::new(LineageSettings {
        capacity: created.max(1000) + 16,
        // Every process is in `procs` already: a copy needs no budget.
        memory_bytes: usize::MAX,
        // As deep as a search looks by default, so the flags are the ones
        // `lineage_flags` shows; deeper would make each walk (and its
        // cycle check) cost more on a deep chain, for flags no search shows.
        max_depth: crate::config::options::Options::default().max_depth,
    });
    for (&g, n) in procs.nodes.iter().filter(|(_, n)| n.created) {
        let mut info = ProcessInfo::new(g);
        info.parent_guid = n.parent;
        info.image = n.image.as_bytes().into();
        info.command_line = n.command_line.as_bytes().into();
        info.parent_image = n.parent_image.as_bytes().into();
        info.parent_command_line = n.parent_command_line.as_bytes().into();
        info.host = n.host.as_bytes().into();
        info.time = n.time;
        engine.insert(&info, SourceKind::Results);
    }
    let mut resolver = engine.resolver(rules, |_| false);
    let mut flags = HashMap::new();
    for &g in shown {
        let Some(n) = procs.nodes.get(&g).filter(|n| n.created) else {
            continue;
        };
        let chain = resolver.resolve(&Start::Creation {
            guid: g,
            image: n.image.as_bytes(),
            parent_guid: n.parent,
            parent_image: n.parent_image.as_bytes(),
            parent_command_line: n.parent_command_line.as_bytes(),
        });
        if !chain.flags().is_empty() {
            flags.insert(g, chain.flags().iter().map(|f| f.to_string()).collect());
        }
    }
    flags
}

/// `cmd.exe (pid 4242) {GUID} "cmd /c …"  [rule, rule]`.
fn label(procs: &Processes, g: ProcessGuid, flags: Option<&Vec<String>>, full: bool) -> String {
    let n = procs.nodes.get(&g).cloned().unwrap_or_default();
    // Named as `lineage` names it (`(unknown parent)` where Sysmon wrote `-`).
    let name = String::from_utf8_lossy(entry_name(g, n.image.as_bytes())).into_owned();
    let pid = if n.pid.is_empty() { "?" } else { &n.pid };
    let mut s = format!(
        "{name} (pid {pid}) {}",
        String::from_utf8_lossy(&guid_text(g))
    );
    let cmd = n.command_line.replace(['\r', '\n'], " ");
    let cmd = cmd.trim();
    if !cmd.is_empty() {
        let shown = if !full && cmd.chars().count() > CMD_WIDTH {
            cmd.chars().take(CMD_WIDTH - 1).collect::<String>() + "…"
        } else {
            cmd.to_string()
        };
        s.push_str(&format!(" \"{shown}\""));
    }
    if let Some(f) = flags {
        s.push_str(&format!("  [{}]", f.join(", ")));
    }
    if !n.sigma.is_empty() {
        s.push_str(&format!("  sigma: {}", n.sigma.join("; ")));
    }
    if !n.created {
        s.push_str("  (creation not in the input)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: [&str; 6] = [
        "{00000000-0000-0000-0000-000000000001}",
        "{00000000-0000-0000-0000-000000000002}",
        "{00000000-0000-0000-0000-000000000003}",
        "{00000000-0000-0000-0000-000000000004}",
        "{00000000-0000-0000-0000-000000000005}",
        "{00000000-0000-0000-0000-000000000006}",
    ];

    fn body() -> Vec<u8> {
        let mut s = String::from(
            "EventCode,ProcessGuid,ParentProcessGuid,Image,ParentImage,CommandLine,ProcessId,_time\n",
        );
        // explorer(1) > winword(2) > cmd(3) > {whoami(4), powershell(5) > conhost(6)}
        let rows = [
            (
                G[1],
                G[0],
                "C:\\Office\\WINWORD.EXE",
                "C:\\Windows\\explorer.exe",
                "winword doc.docm",
                2,
                10,
            ),
            (
                G[2],
                G[1],
                "C:\\Windows\\System32\\cmd.exe",
                "C:\\Office\\WINWORD.EXE",
                "cmd /c whoami",
                3,
                11,
            ),
            (
                G[3],
                G[2],
                "C:\\Windows\\System32\\whoami.exe",
                "C:\\Windows\\System32\\cmd.exe",
                "whoami",
                4,
                12,
            ),
            (
                G[4],
                G[2],
                "C:\\Windows\\System32\\powershell.exe",
                "C:\\Windows\\System32\\cmd.exe",
                "powershell -nop",
                5,
                13,
            ),
            (
                G[5],
                G[4],
                "C:\\Windows\\System32\\conhost.exe",
                "C:\\Windows\\System32\\powershell.exe",
                "conhost 0x4",
                6,
                14,
            ),
        ];
        for (g, p, img, pimg, cmd, pid, t) in rows {
            s.push_str(&format!("1,{g},{p},{img},{pimg},{cmd},{pid},{t}\n"));
        }
        s.push_str(&format!(
            "3,{},,C:\\Windows\\System32\\cmd.exe,,,3,20\n",
            G[2]
        ));
        s.into_bytes()
    }

    fn draw_text(guid: &str, depth: Option<usize>) -> String {
        let mut p = Processes::default();
        p.add_body(&body(), &FieldNames::default()).unwrap();
        let args = TreeArgs {
            guid: guid.into(),
            files: vec![],
            full: false,
            depth,
            rules: None,
            sigma: vec![],
        };
        let g = ProcessGuid::parse(guid.as_bytes()).unwrap();
        let mut out = Vec::new();
        draw(&p, g, &Rules::builtin().unwrap(), &args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ancestors_process_descendants() {
        let t = draw_text(G[2], None);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("2 ancestors, 3 descendants"), "{t}");
        assert!(
            lines[2].starts_with("explorer.exe (pid ?) {00000000-0000-0000-0000-000000000001}"),
            "{t}"
        );
        assert!(lines[2].ends_with("(creation not in the input)"), "{t}");
        assert!(lines[3].starts_with("└─ WINWORD.EXE (pid 2)"), "{t}");
        assert!(lines[4].starts_with("   └─ ▶ cmd.exe (pid 3)"), "{t}");
        assert!(lines[4].contains("\"cmd /c whoami\""), "{t}");
        assert!(lines[4].contains("office_spawns_shell_or_lolbin"), "{t}");
        assert!(lines[5].starts_with("      ├─ whoami.exe (pid 4)"), "{t}");
        assert!(
            lines[6].starts_with("      └─ powershell.exe (pid 5)"),
            "{t}"
        );
        assert!(lines[6].contains("office_ancestor_of_shell"), "{t}");
        assert!(
            lines[7].starts_with("         └─ conhost.exe (pid 6)"),
            "{t}"
        );
        assert_eq!(lines.len(), 8, "{t}");
    }

    #[test]
    fn a_bar_runs_down_to_a_later_sibling() {
        // From winword: cmd (3) has whoami and powershell > conhost; a
        // second child of winword after cmd keeps `│` beside cmd's subtree.
        let mut p = Processes::default();
        let mut b = body();
        b.extend_from_slice(
            format!(
                "1,{},{},C:\\Windows\\notepad.exe,C:\\Office\\WINWORD.EXE,notepad,7,30\n",
                "{00000000-0000-0000-0000-000000000007}", G[1]
            )
            .as_bytes(),
        );
        p.add_body(&b, &FieldNames::default()).unwrap();
        let args = TreeArgs {
            guid: G[1].into(),
            files: vec![],
            full: false,
            depth: None,
            rules: None,
            sigma: vec![],
        };
        let mut out = Vec::new();
        let g = ProcessGuid::parse(G[1].as_bytes()).unwrap();
        draw(&p, g, &Rules::builtin().unwrap(), &args, &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        let shape: Vec<String> = t
            .lines()
            .skip(4)
            .map(|l| l.split(" (pid").next().unwrap().to_string())
            .collect();
        assert_eq!(
            shape,
            [
                "   ├─ cmd.exe",
                "   │  ├─ whoami.exe",
                "   │  └─ powershell.exe",
                "   │     └─ conhost.exe",
                "   └─ notepad.exe",
            ],
            "{t}"
        );
    }

    #[test]
    fn depth_limit_and_unknown() {
        let t = draw_text(G[2], Some(1));
        assert!(t.contains("powershell.exe (pid 5)"), "{t}");
        assert!(t.contains("(+1 children below --depth)"), "{t}");
        assert!(!t.contains("conhost"), "{t}");
        let mut p = Processes::default();
        p.add_body(&body(), &FieldNames::default()).unwrap();
        let args = TreeArgs {
            guid: String::new(),
            files: vec![],
            full: false,
            depth: None,
            rules: None,
            sigma: vec![],
        };
        let missing = ProcessGuid::parse(b"{00000000-0000-0000-0000-0000000000ff}").unwrap();
        let e = draw(&p, missing, &Rules::empty(), &args, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("does not appear"), "{e}");
    }
}
