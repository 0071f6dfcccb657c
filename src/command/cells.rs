//! Lineage cells by composition: each ancestor's chain rendered once per
//! chunk, shared by all its descendants.
//!
//! A process's chain is its first entry (its parent, as its own creation
//! reports it) followed by its parent's chain, exactly (see the chain
//! definition in `lineage`). Rendering every chain from scratch walks,
//! escapes and classifies the same ancestors once per descendant, and that
//! was most of what lineage cost per row. Here the chain of each ancestor
//! is kept per chunk in *inner* forms (escaped for CSV, without the
//! surrounding quotes: names joined by ` > `, values joined by LF or by
//! `;` in `$…$` form, with whether the joined text needs quoting), so a
//! process's cells are its first entry, escaped once, followed by copies of
//! its parent's inner forms; rule classes are unioned the same way.
//!
//! The result is byte-identical to rendering the chain `Engine` builds
//! (the tests compare both on generated trees with cycles, missing parents,
//! `max_depth`, quoting and `$`). Where composition could differ, or cost
//! more than it saves, [`Composer::cells`] returns `None` and the caller
//! builds the chain the general way: an unknown acting process, a chain
//! that would reach `max_depth` or pass the process itself again, a walk
//! longer than [`MAX_WALK`], a rule set with more names than a
//! [`NameClass`] holds.

use super::output::{push_joined, push_mv};
use crate::lineage::{
    basename, guid_text, Engine, GuidBuildHasher, GuidMap, NameClass, Rules, SourceKind, SourceSet,
    Start, StopReason, TermBits,
};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::ops::Range;

/// Longest walk up to an already composed ancestor; deeper chains (far
/// beyond any real Windows tree) take the general path.
pub const MAX_WALK: usize = 64;

/// Most memory a chunk's composed chains may hold (a chunk of the
/// throughput benchmark needs ~5 MiB); past it, chains are built the
/// general way, as without the composer.
pub const MAX_ARENA: usize = 16 << 20;

/// Marks a GUID whose chain is not composed (the general path builds it).
const NOT_COMPOSED: u32 = u32::MAX;

/// Escaped text in the composer's arena, and whether its cell must be
/// quoted.
#[derive(Clone, Debug, Default)]
struct Span {
    range: Range<usize>,
    quote: bool,
}

/// One chain, in inner forms (see the module docs).
#[derive(Clone, Debug)]
struct Memo {
    depth: usize,
    stop: StopReason,
    sources: SourceSet,
    /// Image of the nearest malicious entry.
    malicious: Option<Span>,
    /// Class of entry 0 (the `parent` of rules).
    first: NameClass,
    /// Union of the classes of all entries.
    ancestors: TermBits,
    /// Entry GUIDs, nearest first (to see a cycle through a descendant).
    guids: Range<usize>,
    /// Basenames, root first, each followed by ` > `; quote: any name
    /// needs it.
    names: Span,
    /// Images joined by LF; quote: the first image needs it (only read for
    /// a single value: two or more are always quoted).
    parents: Span,
    /// `$image$;…`; quote: any value needs it.
    parents_mv: Span,
    /// GUID texts joined by LF (never need escaping; their `$GUID$;…`
    /// form is derived when written).
    guid_text: Range<usize>,
    /// As `parents`, for command lines.
    cmdlines: Span,
    /// As `parents_mv`, for command lines.
    cmdlines_mv: Span,
    /// The farthest entry's image.
    root: Span,
}

impl Memo {
    fn empty(stop: StopReason) -> Memo {
        Memo {
            depth: 0,
            stop,
            sources: SourceSet::default(),
            malicious: None,
            first: NameClass::default(),
            ancestors: TermBits::default(),
            guids: 0..0,
            names: Span::default(),
            parents: Span::default(),
            parents_mv: Span::default(),
            guid_text: 0..0,
            cmdlines: Span::default(),
            cmdlines_mv: Span::default(),
            root: Span::default(),
        }
    }
}

/// A chain's first entry (its GUID aside), as a creation reports it.
struct Head<'a> {
    image: &'a [u8],
    command_line: &'a [u8],
    source: SourceKind,
}

/// A first entry escaped once (in [`Composer::head`]), for composing a
/// stored chain or rendering cells.
struct Escaped {
    guid: ProcessGuid,
    /// Basename (or `?`), escaped.
    name: Span,
    image: Span,
    image_mv: Range<usize>,
    command_line: Span,
    command_line_mv: Range<usize>,
    source: SourceKind,
    class: NameClass,
    /// The entry's own record is malicious.
    malicious: bool,
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

/// A chain as its first link determines it: nothing, the first entry
/// alone, or the first entry followed by a composed chain.
enum Link {
    Empty(StopReason),
    Head(Escaped, Option<u32>, StopReason),
    /// A chain composed already.
    Memo(u32),
}

/// The three cells-and-status a process's rows share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// `,lineage,…,lineage_malicious_ancestor` in the caller's buffer.
    pub plain: Range<usize>,
    /// `,__mv_lineage_parents,…,__mv_lineage_flags`.
    pub mv: Range<usize>,
    /// Why the chain stopped.
    pub stop: StopReason,
}

/// Per-search composer; its memory is per chunk (see
/// [`Composer::start_chunk`]).
pub struct Composer {
    index: GuidMap<u32>,
    memos: Vec<Memo>,
    text: Vec<u8>,
    guids: Vec<ProcessGuid>,
    walk: Vec<ProcessGuid>,
    lower: Vec<u8>,
    flags: Vec<u32>,
    /// Escaped first entries (see [`Escaped`]).
    scratch: Vec<u8>,
}

impl Default for Composer {
    fn default() -> Self {
        Composer {
            index: GuidMap::with_hasher(GuidBuildHasher::new()),
            memos: Vec::new(),
            text: Vec::new(),
            guids: Vec::new(),
            walk: Vec::new(),
            lower: Vec::new(),
            flags: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// What a value holds that its cells must escape ([`scan`]): any of
/// `,` `"` LF CR (the cell must be quoted) …
const QUOTE_CELL: u8 = 1;
/// … `"` (doubled inside a quoted cell) …
const DQUOTE: u8 = 2;
/// … `$` (doubled inside a `$…$` value).
const DOLLAR: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = QUOTE_CELL;
    t[b'\n' as usize] = QUOTE_CELL;
    t[b'\r' as usize] = QUOTE_CELL;
    t[b'"' as usize] = QUOTE_CELL | DQUOTE;
    t[b'$' as usize] = DOLLAR;
    t
};

/// The escaping classes of a value, in one pass (values are short: a pass
/// per question through `memchr` cost more in calls than in bytes).
fn scan(v: &[u8]) -> u8 {
    v.iter().fold(0, |class, &b| class | CLASS[b as usize])
}

/// Appends `v` with `"` doubled.
fn push_csv_escaped(out: &mut Vec<u8>, v: &[u8]) {
    let mut rest = v;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// Appends `$v$` with `$` doubled (the multivalue encoding), then `"`
/// doubled (CSV).
fn push_mv_escaped(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'$');
    let mut rest = v;
    while let Some(i) = memchr::memchr2(b'$', b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'$');
}

/// Appends `head`, then `sep` and the arena's `tail`; returns the span.
fn join(text: &mut Vec<u8>, head: &[u8], sep: &[u8], tail: Option<Range<usize>>) -> Range<usize> {
    let start = text.len();
    text.extend_from_slice(head);
    if let Some(t) = tail {
        text.extend_from_slice(sep);
        text.extend_from_within(t);
    }
    start..text.len()
}

/// Length of a GUID's text (`{…}`).
const GUID_TEXT: usize = 38;

/// `$GUID$`: a GUID text needs no `$` or CSV escaping.
fn guid_mv_text(g: &[u8; 38]) -> [u8; 40] {
    let mut v = [b'$'; 40];
    v[1..39].copy_from_slice(g);
    v
}

/// Appends an inner form as one cell.
fn push_cell(out: &mut Vec<u8>, inner: &[u8], quote: bool) {
    if quote {
        out.push(b'"');
        out.extend_from_slice(inner);
        out.push(b'"');
    } else {
        out.extend_from_slice(inner);
    }
}

fn push_depth(out: &mut Vec<u8>, depth: usize) {
    let mut digits = [0u8; 20];
    let mut n = depth;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl Composer {
    /// Memory the chunk's composed chains hold.
    fn arena_bytes(&self) -> usize {
        self.text.len()
            + self.memos.len() * std::mem::size_of::<Memo>()
            + self.guids.len() * std::mem::size_of::<ProcessGuid>()
    }

    /// Forgets the previous chunk's chains: the table may have changed.
    pub fn start_chunk(&mut self) {
        self.index.clear();
        self.memos.clear();
        self.text.clear();
        self.guids.clear();
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
        self.scratch.clear();
        match *start {
            Start::Process { guid, image } => {
                let parent = engine.record(guid)?.parent();
                // A process composed already (it is an ancestor of an
                // earlier row) renders from its chain; otherwise from its
                // first entry and its parent's chain, without storing its
                // own (most processes are nobody's parent).
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
                    Some(m) => Some(self.render(rules, own, &Link::Memo(m), out)),
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
        let link = self.link(rules, plan, &head);
        Some(self.render(rules, own_image, &link, out))
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
            if self.guids[t.guids.clone()].contains(&own)
                || t.stop == StopReason::MaxDepth
                || t.depth + 2 > engine.max_depth()
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

    /// A plan with its first entry escaped.
    fn link(&mut self, rules: &Rules, plan: Plan, head: &Head<'_>) -> Link {
        match plan {
            Plan::Empty(stop) => Link::Empty(stop),
            Plan::Head {
                parent,
                tail,
                malicious,
                stop,
            } => Link::Head(self.escape(rules, parent, head, malicious), tail, stop),
        }
    }

    /// Escapes a first entry into the scratch buffer.
    fn escape(
        &mut self,
        rules: &Rules,
        guid: ProcessGuid,
        head: &Head<'_>,
        malicious: bool,
    ) -> Escaped {
        let buf = &mut self.scratch;
        let name = match basename(head.image) {
            b"" => &b"?"[..],
            n => n,
        };
        // Each value is scanned once; the common value (nothing to double)
        // is copied as is.
        let mut span = |v: &[u8], mv: bool| {
            let class = scan(v);
            let start = buf.len();
            if class & DQUOTE == 0 {
                buf.extend_from_slice(v);
            } else {
                push_csv_escaped(buf, v);
            }
            let plain = Span {
                range: start..buf.len(),
                quote: class & QUOTE_CELL != 0,
            };
            let start = buf.len();
            if mv {
                if class & (DQUOTE | DOLLAR) == 0 {
                    buf.push(b'$');
                    buf.extend_from_slice(v);
                    buf.push(b'$');
                } else {
                    push_mv_escaped(buf, v);
                }
            }
            (plain, start..buf.len())
        };
        let (name_span, _) = span(name, false);
        let (image, image_mv) = span(head.image, true);
        let (command_line, command_line_mv) = span(head.command_line, true);
        Escaped {
            guid,
            name: name_span,
            image,
            image_mv,
            command_line,
            command_line_mv,
            source: head.source,
            class: rules.classify(head.image, !guid.is_zero(), &mut self.lower),
            malicious,
        }
    }

    /// The composed chain of `guid` (in the table), composing it and the
    /// ancestors it needs first; `None` when it is not composed.
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
        if self.arena_bytes() > MAX_ARENA {
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
            self.scratch.clear();
            let link = engine.peek(g).and_then(|r| {
                let head = Head {
                    image: r.parent_image(),
                    command_line: r.parent_command_line(),
                    source: r.source(),
                };
                let plan = self.plan(engine, is_malicious, g, r.parent())?;
                Some(self.link(rules, plan, &head))
            });
            let m = match link {
                Some(link) => {
                    let memo = self.compose(&link);
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

    /// A link's chain in inner forms, stored in the arena.
    fn compose(&mut self, link: &Link) -> Memo {
        let (h, tail, stop) = match link {
            Link::Empty(stop) => return Memo::empty(*stop),
            Link::Memo(m) => return self.memos[*m as usize].clone(),
            Link::Head(h, tail, stop) => (h, tail.map(|m| self.memos[m as usize].clone()), *stop),
        };
        let text = &mut self.text;
        let mine = |r: &Range<usize>| &self.scratch[r.clone()];
        let deeper = tail.as_ref().filter(|t| t.depth > 0);
        let image_at = join(text, mine(&h.image.range), b"", None);
        let image = Span {
            range: image_at,
            quote: h.image.quote,
        };
        let names = {
            let start = text.len();
            if let Some(t) = &tail {
                text.extend_from_within(t.names.range.clone());
            }
            text.extend_from_slice(mine(&h.name.range));
            text.extend_from_slice(b" > ");
            Span {
                range: start..text.len(),
                quote: tail.as_ref().is_some_and(|t| t.names.quote) || h.name.quote,
            }
        };
        let parents = Span {
            range: join(
                text,
                mine(&h.image.range),
                b"\n",
                deeper.map(|t| t.parents.range.clone()),
            ),
            quote: h.image.quote,
        };
        let parents_mv = Span {
            range: join(
                text,
                mine(&h.image_mv),
                b";",
                deeper.map(|t| t.parents_mv.range.clone()),
            ),
            quote: h.image.quote || deeper.is_some_and(|t| t.parents_mv.quote),
        };
        let g = guid_text(h.guid);
        let guid_range = join(text, &g, b"\n", deeper.map(|t| t.guid_text.clone()));
        let cmdlines = Span {
            range: join(
                text,
                mine(&h.command_line.range),
                b"\n",
                deeper.map(|t| t.cmdlines.range.clone()),
            ),
            quote: h.command_line.quote,
        };
        let cmdlines_mv = Span {
            range: join(
                text,
                mine(&h.command_line_mv),
                b";",
                deeper.map(|t| t.cmdlines_mv.range.clone()),
            ),
            quote: h.command_line.quote || deeper.is_some_and(|t| t.cmdlines_mv.quote),
        };
        let root = match deeper {
            Some(t) => t.root.clone(),
            None => image.clone(),
        };
        let malicious = if h.malicious {
            Some(image)
        } else {
            tail.as_ref().and_then(|t| t.malicious.clone())
        };
        let start = self.guids.len();
        self.guids.push(h.guid);
        let mut sources = SourceSet::default();
        sources.add(h.source);
        let mut ancestors = h.class.bits();
        if let Some(t) = &tail {
            self.guids.extend_from_within(t.guids.clone());
            t.sources.iter().for_each(|k| sources.add(k));
            for (a, b) in ancestors.iter_mut().zip(t.ancestors) {
                *a |= b;
            }
        }
        Memo {
            depth: 1 + tail.as_ref().map_or(0, |t| t.depth),
            stop,
            sources,
            malicious,
            first: h.class,
            ancestors,
            guids: start..self.guids.len(),
            names,
            parents,
            parents_mv,
            guid_text: guid_range,
            cmdlines,
            cmdlines_mv,
            root,
        }
    }

    /// The cells of a process with image `own` whose chain is `link`.
    fn render(&mut self, rules: &Rules, own: &[u8], link: &Link, out: &mut Vec<u8>) -> Composed {
        let empty = Memo::empty(StopReason::NoParent);
        let (head, tail, stop) = match link {
            Link::Empty(stop) => (None, None, *stop),
            Link::Memo(m) => {
                let t = &self.memos[*m as usize];
                (None, Some(t), t.stop)
            }
            Link::Head(h, tail, stop) => (Some(h), tail.map(|m| &self.memos[m as usize]), *stop),
        };
        let text = &self.text;
        let scratch = &self.scratch;
        let t = tail.unwrap_or(&empty);
        let at = |r: &Range<usize>| &text[r.clone()];
        let mine = |r: &Range<usize>| &scratch[r.clone()];
        let name = match basename(own) {
            b"" => &b"?"[..],
            n => n,
        };
        let depth = usize::from(head.is_some()) + t.depth;
        let many = depth > 1;
        // One cell: the head's part, then (after `sep`, when the tail has
        // entries) the tail's.
        let cell = |out: &mut Vec<u8>, h: Option<&[u8]>, sep: u8, tail: &[u8], quote: bool| {
            if quote {
                out.push(b'"');
            }
            if let Some(h) = h {
                out.extend_from_slice(h);
                if t.depth > 0 {
                    out.push(sep);
                }
            }
            out.extend_from_slice(tail);
            if quote {
                out.push(b'"');
            }
        };
        let start = out.len();

        out.push(b',');
        let class = scan(name);
        let quote = t.names.quote || head.is_some_and(|h| h.name.quote) || class & QUOTE_CELL != 0;
        if quote {
            out.push(b'"');
        }
        out.extend_from_slice(at(&t.names.range));
        if let Some(h) = head {
            out.extend_from_slice(mine(&h.name.range));
            out.extend_from_slice(b" > ");
        }
        if class & DQUOTE == 0 {
            out.extend_from_slice(name);
        } else {
            push_csv_escaped(out, name);
        }
        if quote {
            out.push(b'"');
        }
        out.push(b',');
        push_depth(out, depth);
        out.push(b',');
        let first_image = head.map_or(t.parents.quote, |h| h.image.quote);
        cell(
            out,
            head.map(|h| mine(&h.image.range)),
            b'\n',
            at(&t.parents.range),
            many || first_image,
        );
        out.push(b',');
        let g = head.map(|h| guid_text(h.guid));
        cell(
            out,
            g.as_ref().map(|g| &g[..]),
            b'\n',
            at(&t.guid_text),
            many,
        );
        out.push(b',');
        let first_cmd = head.map_or(t.cmdlines.quote, |h| h.command_line.quote);
        cell(
            out,
            head.map(|h| mine(&h.command_line.range)),
            b'\n',
            at(&t.cmdlines.range),
            many || first_cmd,
        );
        out.push(b',');
        match head {
            Some(h) if t.depth == 0 => push_cell(out, mine(&h.image.range), h.image.quote),
            _ => push_cell(out, at(&t.root.range), t.root.quote),
        }
        out.push(b',');
        out.extend_from_slice(stop.status().as_str().as_bytes());
        let mut sources = SourceSet::default();
        if let Some(h) = head {
            sources.add(h.source);
        }
        t.sources.iter().for_each(|k| sources.add(k));
        let mut names: [&[u8]; 3] = [b""; 3];
        let mut n_sources = 0;
        for k in sources.iter().take(3) {
            names[n_sources] = k.as_str().as_bytes();
            n_sources += 1;
        }
        let sources = &names[..n_sources];
        out.push(b',');
        push_joined(out, sources.iter().copied());
        let child = rules.classify(own, true, &mut self.lower);
        let (first, mut ancestors) = match head {
            Some(h) => (&h.class, h.class.bits()),
            None => (&t.first, TermBits::default()),
        };
        for (a, b) in ancestors.iter_mut().zip(t.ancestors) {
            *a |= b;
        }
        self.flags.clear();
        rules.evaluate_classes(
            &child,
            (depth > 0).then_some(first),
            &ancestors,
            &mut self.flags,
        );
        let all = rules.rules();
        let flags = || {
            self.flags
                .iter()
                .map(|&i| all[i as usize].name().as_bytes())
        };
        out.push(b',');
        push_joined(out, flags());
        out.push(b',');
        match head {
            Some(h) if h.malicious => push_cell(out, mine(&h.image.range), h.image.quote),
            _ => {
                if let Some(s) = &t.malicious {
                    push_cell(out, at(&s.range), s.quote);
                }
            }
        }
        let plain = start..out.len();

        out.push(b',');
        if many {
            let quote = head.is_some_and(|h| h.image.quote) || t.parents_mv.quote;
            cell(
                out,
                head.map(|h| mine(&h.image_mv)),
                b';',
                at(&t.parents_mv.range),
                quote,
            );
        }
        out.push(b',');
        if many {
            if let Some(g) = &g {
                out.extend_from_slice(&guid_mv_text(g));
                if t.depth > 0 {
                    out.push(b';');
                }
            }
            for (k, g) in at(&t.guid_text).chunks(GUID_TEXT + 1).enumerate() {
                if k > 0 {
                    out.push(b';');
                }
                out.push(b'$');
                out.extend_from_slice(&g[..GUID_TEXT.min(g.len())]);
                out.push(b'$');
            }
        }
        out.push(b',');
        if many {
            let quote = head.is_some_and(|h| h.command_line.quote) || t.cmdlines_mv.quote;
            cell(
                out,
                head.map(|h| mine(&h.command_line_mv)),
                b';',
                at(&t.cmdlines_mv.range),
                quote,
            );
        }
        out.push(b',');
        push_mv(out, sources.iter().copied());
        out.push(b',');
        push_mv(out, flags());
        Composed {
            mv: plain.end..out.len(),
            plain,
            stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::output::render_chain;
    use crate::config::conf::ConfFile;
    use crate::lineage::{Chain, LineageSettings, ProcessInfo};
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
        render_chain(&chain, &mut buf, &mut scratch);
        (buf, chain.stop_reason())
    }

    #[test]
    fn composed_cells_equal_the_general_path() {
        let custom = Rules::from_conf(&ConfFile::parse(RULES).unwrap()).unwrap();
        let builtin = Rules::builtin().unwrap();
        let is_malicious =
            |h: &FileHashes| h.md5.as_ref().is_some_and(|d| d.as_bytes().ends_with(b"1"));
        let mut composed_count = 0;
        let mut stops = std::collections::HashSet::new();
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let max_depth = [3, 8, 64][seed as usize % 3];
            let (mut engine, infos) = table(&mut rng, 60, max_depth);
            let rules = if seed % 2 == 0 { &custom } else { &builtin };
            let mut composer = Composer::default();
            for chunk in 0..2 {
                composer.start_chunk();
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
                        if let Some(c) = got {
                            composed_count += 1;
                            assert_eq!(c.plain.end, c.mv.start);
                            assert_eq!(
                                String::from_utf8_lossy(&out[c.plain.start..c.mv.end]),
                                String::from_utf8_lossy(&want),
                                "seed {seed}, start {start:?}"
                            );
                            assert_eq!(c.stop, stop, "seed {seed}, start {start:?}");
                        }
                    }
                }
            }
        }
        // Most starts compose; every way a chain can end was exercised.
        assert!(composed_count > 3000, "{composed_count}");
        assert_eq!(stops.len(), 6, "{stops:?}");
    }
}
