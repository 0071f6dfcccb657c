//! The one writer of lineage cells. Both ways of getting a chain end
//! here: the composer (`lineage_composer`) hands it entries escaped once
//! per chunk and linked (most rows), the general path a [`Chain`] the
//! engine built (its entries escaped here, each time). So the cells
//! cannot drift apart between the two: there is one place that decides
//! quoting, order and separators.

use crate::lineage::{
    basename, entry_name, guid_text, Chain, NameClass, Rules, SourceKind, SourceSet, StopReason,
};
use crate::protocol::multivalue::{push_joined_cell, push_mv_cell, push_value, Escape};
use crate::protocol::records::push_escaped;
use crate::sysmon::ProcessGuid;
use std::ops::Range;

/// Escaped text in a buffer, and whether its cell must be quoted.
#[derive(Clone, Debug, Default)]
pub(super) struct Span {
    pub(super) range: Range<u32>,
    pub(super) quote: bool,
}

/// A chain's first entry (its GUID aside), as a creation reports it.
pub(super) struct Head<'a> {
    pub(super) image: &'a [u8],
    pub(super) command_line: &'a [u8],
    pub(super) source: SourceKind,
}

/// One entry escaped once (by [`escape`]): in the arena for a stored
/// link, in the scratch buffer for a process's own first entry.
#[derive(Clone, Debug)]
pub(super) struct Escaped {
    pub(super) guid: ProcessGuid,
    /// Basename (or `?`), escaped, followed by ` > `.
    pub(super) name: Span,
    pub(super) image: Span,
    /// `$image$`, escaped.
    pub(super) image_mv: Range<u32>,
    pub(super) command_line: Span,
    pub(super) command_line_mv: Range<u32>,
    /// `${GUID}$`.
    pub(super) guid_text: Range<u32>,
    pub(super) source: SourceKind,
    pub(super) class: NameClass,
    /// The entry's own record is malicious.
    pub(super) malicious: bool,
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
pub(super) fn scan(v: &[u8]) -> u8 {
    v.iter().fold(0, |class, &b| class | CLASS[b as usize])
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

/// The marker after a cut value: `…[+N bytes]`, N the bytes left out.
/// At most [`MARK_MAX`] bytes; none of them needs escaping.
#[derive(Default)]
pub(super) struct Mark {
    text: [u8; MARK_MAX],
    len: usize,
}

/// `…` (3 bytes), `[+`, 20 digits, ` bytes]`.
const MARK_MAX: usize = 3 + 2 + 20 + 7;

impl Mark {
    fn new(cut: usize) -> Mark {
        let mut m = Mark::default();
        let mut text = Vec::with_capacity(MARK_MAX);
        text.extend_from_slice("…[+".as_bytes());
        push_depth(&mut text, cut);
        text.extend_from_slice(b" bytes]");
        m.text[..text.len()].copy_from_slice(&text);
        m.len = text.len();
        m
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// `v` cut to at most `cap` bytes with its [`Mark`] included (0: no cap),
/// on a UTF-8 character boundary: what lineage writes about an ancestor
/// stays bounded however long the data's values are, and says how much
/// it left out. Values within the cap come back whole, without a mark.
pub(super) fn cut(v: &[u8], cap: usize) -> (&[u8], Option<Mark>) {
    if cap == 0 || v.len() <= cap {
        return (v, None);
    }
    // The mark's length for the longest count it could carry (the
    // count only shrinks as more is kept).
    let mut digits = 1;
    let mut n = v.len();
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    let mut keep = cap.saturating_sub(3 + 2 + digits + 7);
    // Never split a character: back up over continuation bytes.
    while keep > 0 && (v[keep] & 0xC0) == 0x80 {
        keep -= 1;
    }
    (&v[..keep], Some(Mark::new(v.len() - keep)))
}

/// Offsets into a buffer as `u32` (entries are short; a buffer past 4 GiB
/// is never composed: see [`MAX_ARENA`]).
pub(super) fn at32(r: Range<usize>) -> Range<u32> {
    r.start as u32..r.end as u32
}

/// Escapes an entry into `buf`: each value scanned once, the common value
/// (nothing to double) copied as is.
pub(super) fn escape(
    buf: &mut Vec<u8>,
    lower: &mut Vec<u8>,
    rules: &Rules,
    guid: ProcessGuid,
    head: &Head<'_>,
    malicious: bool,
    cap: usize,
) -> Escaped {
    Escaped {
        class: rules.classify(head.image, !guid.is_zero(), lower),
        malicious,
        ..escape_text(buf, guid, head, cap)
    }
}

/// [`escape`] without what only the composer needs (the rules' class of
/// the name, the entry's verdict).
fn escape_text(buf: &mut Vec<u8>, guid: ProcessGuid, head: &Head<'_>, cap: usize) -> Escaped {
    let name = entry_name(guid, head.image);
    // `suffix`: written after the value (a name is always followed by
    // ` > `); `mv`: also write the `$…$` form. Each value cut to `cap`
    // first (the mark needs no escaping).
    let mut span = |v: &[u8], mv: bool, suffix: &[u8]| {
        let (v, mark) = cut(v, cap);
        let mark = mark.as_ref().map_or(&b""[..], Mark::as_bytes);
        let class = scan(v);
        let start = buf.len();
        if class & DQUOTE == 0 {
            buf.extend_from_slice(v);
        } else {
            push_escaped(buf, v);
        }
        buf.extend_from_slice(mark);
        buf.extend_from_slice(suffix);
        let plain = Span {
            range: at32(start..buf.len()),
            quote: class & QUOTE_CELL != 0,
        };
        let start = buf.len();
        if mv {
            // `"` doubled too: the cells these go into are quoted whenever
            // a value holds one.
            let escape = if class & (DQUOTE | DOLLAR) == 0 {
                Escape::Nothing
            } else {
                Escape::DollarAndQuote
            };
            push_value(buf, v, mark, escape);
        }
        (plain, at32(start..buf.len()))
    };
    let (name_span, _) = span(name, false, b" > ");
    let (image, image_mv) = span(head.image, true, b"");
    let (command_line, command_line_mv) = span(head.command_line, true, b"");
    // `$GUID$`: the multivalue form; the plain one is its inside.
    let start = buf.len();
    push_value(buf, &guid_text(guid), b"", Escape::Nothing);
    let guid_range = at32(start..buf.len());
    Escaped {
        guid,
        name: name_span,
        image,
        image_mv,
        command_line,
        command_line_mv,
        guid_text: guid_range,
        source: head.source,
        class: NameClass::default(),
        malicious: false,
    }
}

/// One entry of a chain being rendered, its text resolved.
pub(super) struct Item<'a> {
    pub(super) name: &'a [u8],
    pub(super) image: &'a [u8],
    pub(super) image_quote: bool,
    pub(super) image_mv: &'a [u8],
    pub(super) command_line: &'a [u8],
    pub(super) command_line_quote: bool,
    pub(super) command_line_mv: &'a [u8],
    /// `${GUID}$`.
    pub(super) guid: &'a [u8],
}

/// One multivalue cell over the entries: values joined by `sep`, quoted
/// when `quote` (several values, or any that needs it).
fn values<'a>(
    out: &mut Vec<u8>,
    items: &[Item<'a>],
    sep: u8,
    quote: bool,
    value: impl Fn(&Item<'a>) -> &'a [u8],
) {
    if quote {
        out.push(b'"');
    }
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            out.push(sep);
        }
        out.extend_from_slice(value(item));
    }
    if quote {
        out.push(b'"');
    }
}

/// Appends a cell, quoted or not.
fn push_cell(out: &mut Vec<u8>, inner: &[u8], quote: bool) {
    if quote {
        out.push(b'"');
    }
    out.extend_from_slice(inner);
    if quote {
        out.push(b'"');
    }
}

impl Escaped {
    /// The entry's text, in `buf` (where it was escaped).
    pub(super) fn item<'a>(&self, buf: &'a [u8]) -> Item<'a> {
        let t = |r: &Range<u32>| &buf[r.start as usize..r.end as usize];
        Item {
            name: t(&self.name.range),
            image: t(&self.image.range),
            image_quote: self.image.quote,
            image_mv: t(&self.image_mv),
            command_line: t(&self.command_line.range),
            command_line_quote: self.command_line.quote,
            command_line_mv: t(&self.command_line_mv),
            guid: t(&self.guid_text),
        }
    }
}

/// What the cells say about a chain as a whole, besides its entries.
pub(super) struct Whole<'a> {
    /// The process's own image.
    pub(super) own: &'a [u8],
    pub(super) stop: StopReason,
    pub(super) sources: SourceSet,
    /// The nearest malicious entry (index into the entries).
    pub(super) malicious: Option<usize>,
    /// Whether any name, image or command line of the entries needs
    /// quoting.
    pub(super) names_quote: bool,
    pub(super) images_quote: bool,
    pub(super) command_lines_quote: bool,
    /// `[lineage] cell_value_max_bytes` (0: none): the own name in
    /// `lineage` is cut to it like the ancestors' values.
    pub(super) cap: usize,
}

impl Whole<'_> {
    /// Notes what entry `e` needs quoted.
    fn quote_as(&mut self, e: &Escaped) {
        self.names_quote |= e.name.quote;
        self.images_quote |= e.image.quote;
        self.command_lines_quote |= e.command_line.quote;
    }
}

/// Writes a chain's lineage cells (`,lineage,…,lineage_malicious_ancestor,
/// __mv_lineage_parents,…,__mv_lineage_flags`, each with its leading comma)
/// and the row's LF: what every row of the process ends with. `items`:
/// the entries, nearest first; `flags`: the matched rules' names, in
/// rule-file order. Returns where the cells are in `out`.
pub(super) fn write_cells<'f, F, I>(
    out: &mut Vec<u8>,
    items: &[Item<'_>],
    whole: &Whole<'_>,
    flags: F,
) -> Range<usize>
where
    F: Fn() -> I,
    I: ExactSizeIterator<Item = &'f [u8]>,
{
    let depth = items.len();
    let many = depth > 1;
    let name = match basename(whole.own) {
        b"" => &b"?"[..],
        n => n,
    };
    let (name, mark) = cut(name, whole.cap);
    let start = out.len();

    out.push(b',');
    let class = scan(name);
    let quote = whole.names_quote || class & QUOTE_CELL != 0;
    if quote {
        out.push(b'"');
    }
    for item in items.iter().rev() {
        out.extend_from_slice(item.name);
    }
    if class & DQUOTE == 0 {
        out.extend_from_slice(name);
    } else {
        push_escaped(out, name);
    }
    if let Some(m) = &mark {
        out.extend_from_slice(m.as_bytes());
    }
    if quote {
        out.push(b'"');
    }
    out.push(b',');
    push_depth(out, depth);
    // A single value is quoted only when it must be; several always
    // are (they are joined by LF).
    let single = |q: fn(&Item<'_>) -> bool| depth == 1 && q(&items[0]);
    out.push(b',');
    values(out, items, b'\n', many || single(|i| i.image_quote), |i| {
        i.image
    });
    out.push(b',');
    values(out, items, b'\n', many, |i| &i.guid[1..i.guid.len() - 1]);
    out.push(b',');
    let quote = many || single(|i| i.command_line_quote);
    values(out, items, b'\n', quote, |i| i.command_line);
    out.push(b',');
    if let Some(root) = items.last() {
        push_cell(out, root.image, root.image_quote);
    }
    out.push(b',');
    out.extend_from_slice(whole.stop.status().as_str().as_bytes());
    let mut names: [&[u8]; 3] = [b""; 3];
    let mut n_sources = 0;
    for k in whole.sources.iter().take(3) {
        names[n_sources] = k.as_str().as_bytes();
        n_sources += 1;
    }
    let sources = &names[..n_sources];
    out.push(b',');
    push_joined_cell(out, sources.iter().copied());
    out.push(b',');
    push_joined_cell(out, flags());
    out.push(b',');
    if let Some(i) = whole.malicious.map(|k| &items[k]) {
        push_cell(out, i.image, i.image_quote);
    }

    out.push(b',');
    if many {
        values(out, items, b';', whole.images_quote, |i| i.image_mv);
    }
    out.push(b',');
    if many {
        values(out, items, b';', false, |i| i.guid);
    }
    out.push(b',');
    if many {
        let quote = whole.command_lines_quote;
        values(out, items, b';', quote, |i| i.command_line_mv);
    }
    out.push(b',');
    push_mv_cell(out, sources.iter().copied());
    out.push(b',');
    push_mv_cell(out, flags());
    out.push(b'\n');
    start..out.len()
}

/// Reused buffers of the general path.
#[derive(Default)]
pub(super) struct ChainScratch {
    text: Vec<u8>,
    entries: Vec<Escaped>,
}

/// The cells of a chain the engine built (the general path): its entries
/// escaped into `scratch`, then written by [`write_cells`].
pub(super) fn chain_cells(
    chain: &Chain,
    scratch: &mut ChainScratch,
    cap: usize,
    out: &mut Vec<u8>,
) -> Range<usize> {
    scratch.text.clear();
    scratch.entries.clear();
    let mut whole = Whole {
        own: chain.image(),
        stop: chain.stop_reason(),
        sources: chain.sources(),
        malicious: None,
        names_quote: false,
        images_quote: false,
        command_lines_quote: false,
        cap,
    };
    for a in chain.ancestors() {
        let head = Head {
            image: a.image,
            command_line: a.command_line,
            source: SourceKind::Results,
        };
        let e = escape_text(&mut scratch.text, a.guid, &head, cap);
        whole.quote_as(&e);
        scratch.entries.push(e);
    }
    // The first entry with the malicious ancestor's image: its cell is
    // that image's, whichever entry it is.
    whole.malicious = chain
        .malicious_ancestor()
        .and_then(|m| chain.ancestors().position(|a| a.image == m.image));
    let text = &scratch.text;
    let items: Vec<Item<'_>> = scratch.entries.iter().map(|e| e.item(text)).collect();
    write_cells(out, &items, &whole, || {
        chain.flags().iter().map(|f| f.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_whole_and_long_ones_cut_with_a_mark() {
        assert_eq!(cut(b"cmd.exe", 64).0, b"cmd.exe");
        assert!(cut(b"cmd.exe", 64).1.is_none());
        let long = vec![b'A'; 10_000];
        assert!(cut(&long, 0).1.is_none(), "0: no cap");
        let (kept, mark) = cut(&long, 4096);
        let mark = mark.expect("a mark");
        let text = String::from_utf8(mark.as_bytes().to_vec()).unwrap();
        assert_eq!(text, format!("…[+{} bytes]", 10_000 - kept.len()));
        // The mark is sized for the longest count: a digit may be spare.
        let total = kept.len() + mark.as_bytes().len();
        assert!((4090..=4096).contains(&total), "{total}");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // 3-byte characters: whatever the cap, the kept text stays UTF-8.
        let text = "€".repeat(100);
        for cap in 64..=80 {
            let (kept, mark) = cut(text.as_bytes(), cap);
            let kept = std::str::from_utf8(kept).expect("whole characters");
            let n = mark.expect("cut").as_bytes().len();
            assert!(kept.len() + n <= cap, "{cap}");
            assert!(kept.len() + n > cap - 3, "{cap}: cut no more than needed");
        }
    }

    /// The cells of a two-ancestor chain, ancestors' values of `len` bytes
    /// full of what CSV and multivalue cells escape.
    fn cells_of(len: usize, cap: usize) -> (Vec<u8>, Vec<u8>) {
        let long = |c: &str| format!("C:\\x\\{}", c.repeat(len / c.len()));
        let mut chain = Chain::new(long("own.exe\"").as_bytes());
        let (img, cmd) = (long("a$\""), long("say \"$x\", "));
        chain.push(
            ProcessGuid::from_u128(2),
            img.as_bytes(),
            cmd.as_bytes(),
            SourceKind::Results,
        );
        chain.push(
            ProcessGuid::from_u128(1),
            img.as_bytes(),
            cmd.as_bytes(),
            SourceKind::State,
        );
        chain.set_stop(StopReason::ParentNotFound);
        let mut out = Vec::new();
        let cells = chain_cells(&chain, &mut ChainScratch::default(), cap, &mut out);
        (out[cells].to_vec(), cmd.into_bytes())
    }

    #[test]
    fn the_writer_bounds_every_value_it_writes() {
        let cap = 4096;
        let (cells, cmd) = cells_of(1 << 20, cap);
        // 5 * depth + 3 values of at most `cap` bytes, each at most
        // doubled by escaping, and a little more per entry (docs/lineage.md).
        let depth = 2;
        assert!(
            cells.len() <= 2 * cap * (5 * depth + 3) + 100 * depth + 200,
            "{} bytes",
            cells.len()
        );
        assert!(cells.len() > cap * 4, "values kept up to the cap");
        let text = String::from_utf8_lossy(&cells);
        assert!(text.contains(" bytes]"), "marked");
        assert!(!text.contains(&String::from_utf8_lossy(&cmd[..cap * 2]).into_owned()));
        // Uncapped, the same chain writes its values whole.
        let (whole, _) = cells_of(1 << 20, 0);
        assert!(whole.len() > 8 << 20, "{}", whole.len());
    }

    /// The `$…$` values skip the second search only when the scan found
    /// nothing to double: a `$` alone (no `"`, the cell unquoted) is still
    /// doubled, a clean value copied as is.
    #[test]
    fn multivalue_cells_double_a_lone_dollar_and_copy_clean_values() {
        let mut chain = Chain::new(b"C:\\own.exe");
        chain.push(
            ProcessGuid::from_u128(2),
            b"C:\\a$b.exe",
            b"run $x",
            SourceKind::Results,
        );
        chain.push(
            ProcessGuid::from_u128(1),
            b"C:\\clean.exe",
            b"clean args",
            SourceKind::State,
        );
        chain.set_stop(StopReason::ParentNotFound);
        let mut out = Vec::new();
        let cells = chain_cells(&chain, &mut ChainScratch::default(), 0, &mut out);
        let text = String::from_utf8(out[cells].to_vec()).expect("UTF-8");
        for want in [
            "$C:\\a$$b.exe$",
            "$run $$x$",
            "$C:\\clean.exe$",
            "$clean args$",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        assert!(!text.contains("$run $x$"), "{text}");
    }

    #[test]
    fn short_values_write_the_same_cells_whatever_the_cap() {
        assert_eq!(cells_of(100, 4096).0, cells_of(100, 0).0);
    }
}
