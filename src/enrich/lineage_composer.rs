//! Lineage cells by composition: each ancestor escaped and classified once
//! per chunk, shared by all its descendants.
//!
//! A process's chain is its first entry (its parent, as its own creation
//! reports it) followed by its parent's chain, exactly (see the chain
//! definition in `lineage`). Rendering every chain from scratch walks the
//! table, escapes and classifies the same ancestors once per descendant,
//! and that was most of what lineage cost per row. Here each ancestor's
//! chain is kept per chunk as one *link*: its first entry, escaped once
//! (for CSV cells and for `$…$` multivalue cells), plus a reference to the
//! parent's link and what the whole chain sums up (depth, stop, sources,
//! nearest malicious entry, rule classes, whether any value needs
//! quoting). A process's cells are then its own first entry followed by
//! copies of its ancestors' escaped values: no table walk, no escaping, no
//! classification beyond the first entry. Memory is one escaped entry per
//! ancestor, not one chain.
//!
//! Both ways end in the one cell writer (`lineage_writer::write_cells`), so
//! composed cells equal those of the chain `Engine` builds (the tests
//! compare both with a reference renderer written in the test, on
//! generated trees with cycles, missing parents, `max_depth`, quoting and
//! `$`). Where composition could differ, or cost
//! more than it saves, [`Composer::cells`] returns `None` and the caller
//! builds the chain the general way: an unknown acting process, a chain
//! that would reach `max_depth` or pass the process itself again, a walk
//! longer than [`MAX_WALK`], a rule set with more names than a
//! [`crate::lineage::NameClass`] holds, a chunk past [`MAX_ARENA`].

use super::lineage_writer::{
    chain_cells, escape, write_cells, ChainScratch, Escaped, Head, Item, Whole,
};
use crate::lineage::{
    Chain, Engine, GuidBuildHasher, GuidMap, Rules, SourceKind, SourceSet, Start, StopReason,
    TermBits,
};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::ops::Range;

/// Longest walk up to an already composed ancestor; deeper chains (far
/// beyond any real Windows tree) take the general path.
pub const MAX_WALK: usize = 64;

/// Most memory a chunk's links may hold (a chunk of the throughput
/// benchmark needs ~2 MiB); past it, chains are built the general way, as
/// without the composer.
pub const MAX_ARENA: usize = 4 << 20;

/// Marks a GUID whose chain is not composed (the general path builds it).
const NOT_COMPOSED: u32 = u32::MAX;

/// One composed chain: its first entry, the rest by reference, and what
/// the whole chain sums up.
#[derive(Clone, Debug)]
struct Memo {
    /// None for a chain without entries.
    entry: Option<Escaped>,
    /// The parent's link (the rest of the chain).
    next: Option<u32>,
    depth: usize,
    stop: StopReason,
    sources: SourceSet,
    /// The link whose entry is the nearest malicious one.
    malicious: Option<u32>,
    /// Union of the classes of all entries.
    ancestors: TermBits,
    /// Whether any name, image or command line needs quoting.
    names_quote: bool,
    images_quote: bool,
    command_lines_quote: bool,
}

impl Memo {
    fn empty(stop: StopReason) -> Memo {
        Memo {
            entry: None,
            next: None,
            depth: 0,
            stop,
            sources: SourceSet::default(),
            malicious: None,
            ancestors: TermBits::default(),
            names_quote: false,
            images_quote: false,
            command_lines_quote: false,
        }
    }
}

/// How a chain continues after the creation info (see [`Composer::plan`]).
#[derive(Clone, Copy)]
enum Plan {
    Empty(StopReason),
    Head {
        parent: ProcessGuid,
        tail: Option<u32>,
        malicious: bool,
        stop: StopReason,
    },
}

/// What a process's rows share: their lineage cells and why the chain
/// stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// `,lineage,…,lineage_malicious_ancestor,__mv_lineage_parents,…,
    /// __mv_lineage_flags` and the row's LF, in the caller's buffer (as
    /// `lineage_writer::write_cells` writes them).
    pub cells: Range<usize>,
    /// Why the chain stopped.
    pub stop: StopReason,
}

/// Per-search composer; its memory is per chunk (see
/// [`Composer::start_chunk`]).
pub struct Composer {
    index: GuidMap<u32>,
    memos: Vec<Memo>,
    /// Escaped entries of the links.
    text: Vec<u8>,
    walk: Vec<ProcessGuid>,
    lower: Vec<u8>,
    flags: Vec<u32>,
    /// The escaped first entry of the process being rendered.
    scratch: Vec<u8>,
    /// [`MAX_ARENA`] (smaller in tests).
    arena_cap: usize,
    /// Buffers of [`Composer::render_chain`].
    chain_scratch: ChainScratch,
    /// `[lineage] cell_value_max_bytes` (0: none).
    cap: usize,
}

impl Default for Composer {
    fn default() -> Self {
        Composer {
            index: GuidMap::with_hasher(GuidBuildHasher::new()),
            memos: Vec::new(),
            text: Vec::new(),
            walk: Vec::new(),
            lower: Vec::new(),
            flags: Vec::new(),
            scratch: Vec::new(),
            arena_cap: MAX_ARENA,
            chain_scratch: ChainScratch::default(),
            cap: 0,
        }
    }
}

impl Composer {
    /// Memory the chunk's links hold.
    fn arena_bytes(&self) -> usize {
        self.text.len() + self.memos.len() * std::mem::size_of::<Memo>()
    }

    /// Forgets the previous chunk's chains (the table may have changed);
    /// ancestors' values in the cells are cut to `cap` bytes (0: whole).
    pub fn start_chunk(&mut self, cap: usize) {
        self.cap = cap;
        self.index.clear();
        self.memos.clear();
        self.text.clear();
    }

    /// Renders the lineage cells of `start` into `out`, or `None` when the
    /// caller must build the chain the general way (see the module docs).
    /// Entries used count as use in the table, as a chain walk does.
    pub fn cells(
        &mut self,
        engine: &mut Engine,
        rules: &Rules,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        start: &Start<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Composed> {
        if !rules.classes_fit() {
            return None;
        }
        match *start {
            Start::Process { guid, image } => {
                let parent = engine.record(guid)?.parent();
                // A process composed already (it is an ancestor of an
                // earlier row) renders from its link; otherwise from its
                // first entry and its parent's link, without storing one
                // (most processes are nobody's parent).
                let memo = self.index.get(&guid).copied();
                if memo.is_none() {
                    self.prepare_parent(engine, rules, is_malicious, guid, parent)?;
                }
                let rec = engine.peek(guid)?;
                let own = if rec.image().is_empty() {
                    image
                } else {
                    rec.image()
                };
                match memo {
                    Some(NOT_COMPOSED) => None,
                    Some(m) => Some(self.render(rules, own, m, false, out)),
                    None => {
                        let head = Head {
                            image: rec.parent_image(),
                            command_line: rec.parent_command_line(),
                            source: rec.source(),
                        };
                        self.cells_from_head(
                            engine,
                            rules,
                            is_malicious,
                            guid,
                            parent,
                            head,
                            own,
                            out,
                        )
                    }
                }
            }
            Start::Creation {
                guid,
                image,
                parent_guid,
                parent_image,
                parent_command_line,
            } => {
                self.prepare_parent(engine, rules, is_malicious, guid, parent_guid)?;
                let head = Head {
                    image: parent_image,
                    command_line: parent_command_line,
                    source: SourceKind::Results,
                };
                self.cells_from_head(
                    engine,
                    rules,
                    is_malicious,
                    guid,
                    parent_guid,
                    head,
                    image,
                    out,
                )
            }
        }
    }

    /// The cells of process `own` (image `own_image`) from its creation
    /// info.
    #[allow(clippy::too_many_arguments)]
    fn cells_from_head(
        &mut self,
        engine: &Engine,
        rules: &Rules,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        own: ProcessGuid,
        parent: Option<ProcessGuid>,
        head: Head<'_>,
        own_image: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Composed> {
        let plan = self.plan(engine, is_malicious, own, parent)?;
        self.scratch.clear();
        let memo = self.memo(rules, plan, &head, true);
        let m = self.memos.len() as u32;
        self.memos.push(memo);
        let cells = self.render(rules, own_image, m, true, out);
        self.memos.pop();
        Some(cells)
    }

    /// The link a plan describes, its first entry (`head`) escaped into the
    /// scratch buffer (`scratch`: a process's own, rendered and dropped) or
    /// into the arena (a stored link).
    fn memo(&mut self, rules: &Rules, plan: Plan, head: &Head<'_>, scratch: bool) -> Memo {
        match plan {
            Plan::Empty(stop) => Memo::empty(stop),
            Plan::Head {
                parent,
                tail,
                malicious,
                stop,
            } => {
                let buf = if scratch {
                    &mut self.scratch
                } else {
                    &mut self.text
                };
                let h = escape(
                    buf,
                    &mut self.lower,
                    rules,
                    parent,
                    head,
                    malicious,
                    self.cap,
                );
                self.link(h, tail, stop)
            }
        }
    }

    /// Composes the chain of `own`'s parent if it needs one (it is in the
    /// table); `None` when it cannot be composed.
    fn prepare_parent(
        &mut self,
        engine: &mut Engine,
        rules: &Rules,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        own: ProcessGuid,
        parent: Option<ProcessGuid>,
    ) -> Option<()> {
        match parent {
            Some(p) if p != own && !p.is_zero() && engine.record(p).is_some() => {
                self.memo_of(engine, rules, is_malicious, p).map(|_| ())
            }
            _ => Some(()),
        }
    }

    /// How the chain of a process continues after its creation info:
    /// `own` its GUID, `parent` its parent's. Mirrors the first link of
    /// `Engine::build`; the parent's chain must already be composed (or
    /// known not to be). `None`: not composable.
    fn plan(
        &self,
        engine: &Engine,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        own: ProcessGuid,
        parent: Option<ProcessGuid>,
    ) -> Option<Plan> {
        let p = match parent {
            None => return Some(Plan::Empty(StopReason::ParentGuidMissing)),
            Some(p) if p == own => return Some(Plan::Empty(StopReason::Cycle)),
            Some(p) => p,
        };
        let (tail, malicious, stop) = if p.is_zero() {
            (None, false, StopReason::NoParent)
        } else if let Some(rec) = engine.peek(p) {
            let malicious = rec.hashes().is_some_and(is_malicious);
            let m = self.index.get(&p).copied().filter(|&m| m != NOT_COMPOSED)?;
            let t = &self.memos[m as usize];
            // `own` again further up: the general walk stops there (cycle).
            // Near `max_depth`: it truncates differently one level down.
            if t.stop == StopReason::MaxDepth
                || t.depth + 2 > engine.max_depth()
                || self.links(Some(m)).any(|e| e.guid == own)
            {
                return None;
            }
            (Some(m), malicious, t.stop)
        } else if engine.max_depth() <= 1 {
            (None, false, StopReason::MaxDepth)
        } else {
            (None, false, StopReason::ParentNotFound)
        };
        Some(Plan::Head {
            parent: p,
            tail,
            malicious,
            stop,
        })
    }

    /// The entries of the chain starting at link `m`, nearest first.
    fn links(&self, m: Option<u32>) -> impl Iterator<Item = &Escaped> + '_ {
        let mut next = m;
        std::iter::from_fn(move || {
            let memo = &self.memos[next? as usize];
            next = memo.next;
            memo.entry.as_ref()
        })
    }

    /// The link of entry `h` followed by link `tail`; the caller stores it
    /// at the next index of `memos`.
    fn link(&self, h: Escaped, tail: Option<u32>, stop: StopReason) -> Memo {
        let me = self.memos.len() as u32;
        let t = tail.map(|m| &self.memos[m as usize]);
        let mut sources = SourceSet::default();
        sources.add(h.source);
        let mut ancestors = h.class.bits();
        let mut memo = Memo {
            entry: None,
            next: tail,
            depth: 1,
            stop,
            sources,
            malicious: h.malicious.then_some(me),
            ancestors,
            names_quote: h.name.quote,
            images_quote: h.image.quote,
            command_lines_quote: h.command_line.quote,
        };
        if let Some(t) = t {
            memo.depth += t.depth;
            t.sources.iter().for_each(|k| memo.sources.add(k));
            if memo.malicious.is_none() {
                memo.malicious = t.malicious;
            }
            for (a, b) in ancestors.iter_mut().zip(t.ancestors) {
                *a |= b;
            }
            memo.ancestors = ancestors;
            memo.names_quote |= t.names_quote;
            memo.images_quote |= t.images_quote;
            memo.command_lines_quote |= t.command_lines_quote;
        }
        memo.entry = Some(h);
        memo
    }

    /// The link of `guid` (in the table), composing it and the ancestors
    /// it needs first; `None` when it is not composed.
    fn memo_of(
        &mut self,
        engine: &mut Engine,
        rules: &Rules,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        guid: ProcessGuid,
    ) -> Option<u32> {
        if let Some(&m) = self.index.get(&guid) {
            return (m != NOT_COMPOSED).then_some(m);
        }
        if self.arena_bytes() > self.arena_cap {
            // Bounded memory per chunk; the rest take the general path.
            return None;
        }
        // Up to the first ancestor already composed (or whose chain ends
        // within one link), then down again composing each.
        self.walk.clear();
        let mut cur = guid;
        loop {
            self.walk.push(cur);
            let next = match engine.record(cur).and_then(|r| r.parent()) {
                Some(p) if p != cur && !p.is_zero() => p,
                _ => break,
            };
            if self.index.contains_key(&next) || engine.peek(next).is_none() {
                break;
            }
            if self.walk.len() >= MAX_WALK {
                // Very deep, or a cycle: the general path handles both.
                for g in &self.walk {
                    self.index.insert(*g, NOT_COMPOSED);
                }
                return None;
            }
            cur = next;
        }
        let mut walk = std::mem::take(&mut self.walk);
        let engine = &*engine;
        for &g in walk.iter().rev() {
            // Checked per link too: a few huge command lines must not push
            // the arena's `u32` offsets past 4 GiB.
            let room = self.arena_bytes() <= self.arena_cap;
            let memo = engine.peek(g).filter(|_| room).and_then(|r| {
                let plan = self.plan(engine, is_malicious, g, r.parent())?;
                let head = Head {
                    image: r.parent_image(),
                    command_line: r.parent_command_line(),
                    source: r.source(),
                };
                Some(self.memo(rules, plan, &head, false))
            });
            let m = match memo {
                Some(memo) => {
                    self.memos.push(memo);
                    (self.memos.len() - 1) as u32
                }
                None => NOT_COMPOSED,
            };
            self.index.insert(g, m);
        }
        walk.clear();
        self.walk = walk;
        self.index
            .get(&guid)
            .copied()
            .filter(|&m| m != NOT_COMPOSED)
    }

    /// The cells of a process with image `own` whose chain is link `top`;
    /// `own_first`: its first entry is the process's own, escaped in the
    /// scratch buffer (its link pushed last, popped after).
    fn render(
        &mut self,
        rules: &Rules,
        own: &[u8],
        top: u32,
        own_first: bool,
        out: &mut Vec<u8>,
    ) -> Composed {
        self.evaluate_flags(rules, own, top);
        let (items, malicious) = self.items(top, own_first);
        let memo = &self.memos[top as usize];
        let whole = Whole {
            own,
            stop: memo.stop,
            sources: memo.sources,
            malicious,
            names_quote: memo.names_quote,
            images_quote: memo.images_quote,
            command_lines_quote: memo.command_lines_quote,
            cap: self.cap,
        };
        let all = rules.rules();
        let flags = || {
            self.flags
                .iter()
                .map(|&i| all[i as usize].name().as_bytes())
        };
        Composed {
            cells: write_cells(out, &items, &whole, flags),
            stop: memo.stop,
        }
    }

    /// The rules matched by process `own` whose chain is link `top`, into
    /// `self.flags`: from the classes its links sum up, no walk.
    fn evaluate_flags(&mut self, rules: &Rules, own: &[u8], top: u32) {
        let memo = &self.memos[top as usize];
        let child = rules.classify(own, true, &mut self.lower);
        self.flags.clear();
        let parent_class = memo.entry.as_ref().map(|e| &e.class);
        rules.evaluate_classes(&child, parent_class, &memo.ancestors, &mut self.flags);
    }

    /// The entries of link `top`'s chain, nearest first, resolved to their
    /// text once, and which is the nearest malicious one.
    fn items(&self, top: u32, own_first: bool) -> (Vec<Item<'_>>, Option<usize>) {
        let memo = &self.memos[top as usize];
        let mut items: Vec<Item<'_>> = Vec::with_capacity(memo.depth);
        let mut malicious = None;
        let mut next = Some(top);
        while let Some(m) = next {
            let l = &self.memos[m as usize];
            if let Some(e) = &l.entry {
                let buf = if items.is_empty() && own_first {
                    &self.scratch
                } else {
                    &self.text
                };
                if memo.malicious == Some(m) {
                    malicious = Some(items.len());
                }
                items.push(e.item(buf));
            }
            next = l.next;
        }
        (items, malicious)
    }

    /// The cells of a chain built the general way (when [`Composer::cells`]
    /// returned `None`), by the same writer.
    pub fn render_chain(&mut self, chain: &Chain, out: &mut Vec<u8>) -> Composed {
        Composed {
            cells: chain_cells(chain, &mut self.chain_scratch, self.cap, out),
            stop: chain.stop_reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::conf::ConfFile;
    use crate::lineage::{Chain, LineageSettings, ProcessInfo};
    use crate::protocol::multivalue::{push_joined_cell, push_mv_cell};
    use crate::protocol::records::push_field;
    use crate::synth::Rng;

    const IMAGES: &[&str] = &[
        "C:\\Windows\\System32\\cmd.exe",
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
        "C:\\Windows\\System32\\lsass.exe",
        "C:\\Windows\\System32\\wininit.exe",
        "C:\\inetpub\\w3wp.exe",
        "C:\\x\\a,b \"quoted\" $cash$.exe",
        "C:\\x\\line\nbreak.exe",
        "C:\\dir\\",
        "",
        "System",
    ];
    const CMDLINES: &[&str] = &[
        "",
        "cmd.exe /c \"dir C:\\ & whoami\"",
        "powershell -enc $x,$y",
        "plain args",
        "a\r\nb",
    ];

    /// Rules using every kind of condition, wildcards included.
    const RULES: &str = "
[office_shell]
parent = winword.exe
child = cmd.exe, powershell.exe
[office_above]
ancestor = winword.exe, *prvse.exe
child = cmd.exe
[lsass_parent]
child = lsass.exe
parent_not = wininit.exe
[from_web]
parent = w3wp.exe
[odd, name]
ancestor = *quoted*
";

    fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
        from[rng.below(from.len())]
    }

    /// A random table: forests with shared ancestors, missing parents,
    /// zero and absent parent GUIDs, self-parents, cycles and long chains.
    fn table(rng: &mut Rng, n: u128, max_depth: usize) -> (Engine, Vec<ProcessInfo>) {
        let mut engine = Engine::new(LineageSettings {
            capacity: 100_000,
            memory_bytes: usize::MAX,
            max_depth,
        });
        let g = ProcessGuid::from_u128;
        let mut infos = Vec::new();
        for i in 1..=n {
            let mut p = ProcessInfo::new(g(i));
            p.parent_guid = match rng.below(20) {
                0 => None,
                1 => Some(g(0)),
                2 => Some(g(i)),
                // Missing from the table.
                3 => Some(g(n + 1 + rng.below(5) as u128)),
                // A later process: cycles become possible.
                4 => Some(g(1 + rng.below(n as usize) as u128)),
                // A long line.
                5..=9 if i > 1 => Some(g(i - 1)),
                _ => Some(g(1 + rng.below(i as usize) as u128)),
            };
            p.image = pick(rng, IMAGES).as_bytes().into();
            // Mostly as real data: every child reports its parent alike.
            let k = p.parent_guid.map_or(0, |g| g.as_u128() as usize);
            let (image, cmd) = if rng.chance(0.7) {
                (IMAGES[k % IMAGES.len()], CMDLINES[k % CMDLINES.len()])
            } else {
                (pick(rng, IMAGES), pick(rng, CMDLINES))
            };
            p.parent_image = image.as_bytes().into();
            p.parent_command_line = cmd.as_bytes().into();
            if rng.chance(0.3) {
                p.hashes = crate::sysmon::FileHashes::parse_sysmon(
                    format!("MD5={:032X}", rng.below(4)).as_bytes(),
                );
            }
            let source = [SourceKind::Results, SourceKind::State, SourceKind::Splunk][rng.below(3)];
            engine.insert(&p, source);
            infos.push(p);
        }
        (engine, infos)
    }

    /// The reference: a chain's cells rendered straight from the [`Chain`]'s
    /// accessors, the way the cells are specified, without the writer
    /// both production paths share. Renders a chain's cells into `buf`: the plain lineage cells, the
    /// `__mv_` ones and the row's LF (each cell with its leading comma), what
    /// every row of the process ends with. Returns where they are.
    fn reference(c: &Chain, buf: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Range<usize> {
        let start = buf.len();
        let out = buf;
        out.push(b',');
        let mark = out.len();
        c.write_lineage(out);
        if memchr::memchr3(b',', b'"', b'\n', &out[mark..]).is_some()
            || memchr::memchr(b'\r', &out[mark..]).is_some()
        {
            // Rare (an image name with a comma): redo it quoted.
            let text = out.split_off(mark);
            push_field(out, &text);
        }
        out.push(b',');
        c.write_depth(out);
        out.push(b',');
        push_joined_cell(out, c.parents());
        scratch.clear();
        for g in c.guids() {
            scratch.extend_from_slice(&g);
        }
        let guids = || scratch.chunks_exact(38);
        out.push(b',');
        push_joined_cell(out, guids());
        out.push(b',');
        push_joined_cell(out, c.cmdlines());
        out.push(b',');
        push_field(out, c.root().unwrap_or(b""));
        out.push(b',');
        out.extend_from_slice(c.status().as_str().as_bytes());
        let mut sources: [&[u8]; 3] = [b""; 3];
        let mut n_sources = 0;
        for k in c.sources().iter().take(3) {
            sources[n_sources] = k.as_str().as_bytes();
            n_sources += 1;
        }
        let sources = &sources[..n_sources];
        out.push(b',');
        push_joined_cell(out, sources.iter().copied());
        out.push(b',');
        push_joined_cell(out, c.flags().iter().map(|f| f.as_bytes()));
        out.push(b',');
        if let Some(a) = c.malicious_ancestor() {
            push_field(out, a.image);
        }
        out.push(b',');
        push_mv_cell(out, c.parents());
        out.push(b',');
        push_mv_cell(out, guids());
        out.push(b',');
        push_mv_cell(out, c.cmdlines());
        out.push(b',');
        push_mv_cell(out, sources.iter().copied());
        out.push(b',');
        push_mv_cell(out, c.flags().iter().map(|f| f.as_bytes()));
        out.push(b'\n');
        start..out.len()
    }

    fn general(
        engine: &mut Engine,
        rules: &Rules,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        start: &Start<'_>,
    ) -> (Vec<u8>, StopReason) {
        let mut chain = Chain::default();
        engine
            .resolver(rules, is_malicious)
            .build_into(start, &mut chain);
        let (mut buf, mut scratch) = (Vec::new(), Vec::new());
        reference(&chain, &mut buf, &mut scratch);
        // The general path of production writes the same.
        let mut general = Vec::new();
        let composed = Composer::default().render_chain(&chain, &mut general);
        assert_eq!(
            String::from_utf8_lossy(&general),
            String::from_utf8_lossy(&buf),
            "general path vs reference"
        );
        assert_eq!(composed.stop, chain.stop_reason());
        (buf, chain.stop_reason())
    }

    #[test]
    fn composed_cells_equal_the_general_path() {
        let custom = Rules::from_conf(&ConfFile::parse(RULES).unwrap()).unwrap();
        let builtin = Rules::builtin().unwrap();
        let is_malicious =
            |h: &FileHashes| h.md5.as_ref().is_some_and(|d| d.as_bytes().ends_with(b"1"));
        let mut composed_count = 0;
        let mut capped = 0;
        let mut stops = std::collections::HashSet::new();
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let max_depth = [3, 8, 64][seed as usize % 3];
            let (mut engine, infos) = table(&mut rng, 60, max_depth);
            let rules = if seed % 2 == 0 { &custom } else { &builtin };
            let mut composer = Composer::default();
            if seed % 4 == 3 {
                // Past the cap, the general path takes over.
                composer.arena_cap = 4096;
            }
            for chunk in 0..2 {
                composer.start_chunk(0);
                // One buffer per chunk, as the command's.
                let mut out = b"prefix".to_vec();
                for i in 0..infos.len() + 8 {
                    let guid = ProcessGuid::from_u128(i as u128 + chunk);
                    let info = infos.get(i).cloned().unwrap_or_else(|| {
                        let mut p = ProcessInfo::new(guid);
                        p.parent_guid = Some(ProcessGuid::from_u128(rng.below(70) as u128));
                        p
                    });
                    // A creation as its row reports it, sometimes not what
                    // the table holds.
                    let mut row = info.clone();
                    if rng.chance(0.2) {
                        row.parent_guid = Some(ProcessGuid::from_u128(rng.below(70) as u128));
                        row.parent_image = pick(&mut rng, IMAGES).as_bytes().into();
                    }
                    let own = pick(&mut rng, IMAGES);
                    let starts = [
                        Start::creation(&row.as_ref()),
                        Start::Process {
                            guid,
                            image: own.as_bytes(),
                        },
                    ];
                    for start in &starts {
                        let (want, stop) = general(&mut engine, rules, &is_malicious, start);
                        stops.insert(stop);
                        let got =
                            composer.cells(&mut engine, rules, &is_malicious, start, &mut out);
                        // At most one link past the cap.
                        assert!(composer.arena_bytes() <= composer.arena_cap + 1024);
                        capped += usize::from(
                            composer.arena_cap == 4096 && composer.arena_bytes() > 4096,
                        );
                        if let Some(c) = got {
                            composed_count += 1;
                            assert_eq!(
                                String::from_utf8_lossy(&out[c.cells.clone()]),
                                String::from_utf8_lossy(&want),
                                "seed {seed}, start {start:?}"
                            );
                            assert_eq!(c.stop, stop, "seed {seed}, start {start:?}");
                        }
                    }
                }
            }
        }
        // The cap was reached (and held) in the capped runs.
        assert!(capped > 100, "{capped}");
        // Most starts compose; every way a chain can end was exercised.
        assert!(composed_count > 3000, "{composed_count}");
        assert_eq!(stops.len(), 6, "{stops:?}");
    }
}
