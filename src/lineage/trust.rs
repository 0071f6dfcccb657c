//! Whether a process-creation row agrees with its own `_raw`.
//!
//! Search-time fields can be anything a search says they are (`eval`,
//! `rename`, a CSV from `inputlookup`), while `_raw` is the event as it was
//! indexed. When a row carries both and they disagree on what defines the
//! process (GUIDs, images, command lines), the row is not the event it
//! claims to be: the search may still use it, but the shared process table
//! must not learn it (issue 12).

use super::process::ProcessRef;
use crate::sysmon::guid::ProcessGuid;
use crate::sysmon::xml::looks_like_event_xml;
use memchr::memmem;
use std::borrow::Cow;

/// True when every value `_raw` states agrees with the row's; `_raw` that
/// is not event XML (another rendering), or a value it does not state
/// (cut by `TRUNCATE`), cannot disagree.
///
/// Why not the XML parser of `sysmon::xml`: this runs for every creation
/// row that carries `_raw`, and a full parse (every `<Data>` element,
/// owned) cost a fifth of a search's CPU; six substring searches in the
/// event's own text cost little. `EvtRender` writes each value as
/// `<Data Name='…'>text</Data>`, so that is all there is to find.
pub fn agrees_with_raw(p: &ProcessRef<'_>, raw: &[u8]) -> bool {
    if !looks_like_event_xml(raw) {
        return true;
    }
    if event_id(raw).is_some_and(|id| id != b"1") {
        return false;
    }
    let guid = |name: &str, row: Option<ProcessGuid>| match data(raw, name) {
        None => true,
        Some(v) => ProcessGuid::parse(v.trim_ascii()) == row,
    };
    let text = |name: &str, row: &[u8]| match data(raw, name) {
        None => true,
        Some(v) => row.is_empty() || same_text(row, v),
    };
    guid("ProcessGuid", Some(p.guid))
        && guid("ParentProcessGuid", p.parent_guid)
        && text("Image", p.image)
        && text("CommandLine", p.command_line)
        && text("ParentImage", p.parent_image)
        && text("ParentCommandLine", p.parent_command_line)
}

/// The text of `<EventID …>text</EventID>`.
fn event_id(raw: &[u8]) -> Option<&[u8]> {
    let at = memmem::find(raw, b"<EventID")?;
    let rest = &raw[at..];
    let open = memchr::memchr(b'>', rest)? + 1;
    let len = memchr::memchr(b'<', &rest[open..])?;
    Some(rest[open..open + len].trim_ascii())
}

/// The still-escaped text of `<Data Name='name'>text</Data>` (either
/// quote); `None` when absent or cut off before its end tag.
fn data<'r>(raw: &'r [u8], name: &str) -> Option<&'r [u8]> {
    for quote in ['\'', '"'] {
        let tag = format!("Name={quote}{name}{quote}>");
        if let Some(at) = memmem::find(raw, tag.as_bytes()) {
            let start = at + tag.len();
            let len = memmem::find(&raw[start..], b"</Data>")?;
            return Some(&raw[start..start + len]);
        }
    }
    None
}

/// A row's field and `_raw`'s (escaped) text say the same: byte for byte
/// (the Sysmon add-on extracts fields from `_raw` by regular expression,
/// entities and all), or once both are decoded (fields from a parsed
/// source, `&amp;` as `&`).
fn same_text(field: &[u8], xml: &[u8]) -> bool {
    field == xml || (memchr::memchr(b'&', xml).is_some() && decode(field) == decode(xml))
}

/// The five predefined entities and character references decoded; an
/// unknown entity is kept as written.
fn decode(v: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'&', v).is_none() {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut rest = v;
    while let Some(amp) = memchr::memchr(b'&', rest) {
        out.extend_from_slice(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = memchr::memchr(b';', &rest[..rest.len().min(12)]) else {
            out.push(b'&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let ch: Option<char> = match name {
            b"amp" => Some('&'),
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"quot" => Some('"'),
            b"apos" => Some('\''),
            [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32),
            [b'#', dec @ ..] => std::str::from_utf8(dec)
                .ok()
                .and_then(|d| d.parse().ok())
                .and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[semi + 1..];
            }
            None => {
                out.push(b'&');
                rest = &rest[1..];
            }
        }
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><EventID>1</EventID><Computer>PC1</Computer></System><EventData><Data Name='ProcessGuid'>{747F3D96-D6ED-5D31-0000-0010C88A2500}</Data><Data Name='Image'>C:\\Windows\\System32\\dllhost.exe</Data><Data Name='CommandLine'>dllhost.exe /Processid:{a&amp;b}</Data><Data Name='ParentProcessGuid'>{747F3D96-D6EC-5D31-0000-0010A1892500}</Data><Data Name='ParentImage'>C:\\Windows\\System32\\svchost.exe</Data></EventData></Event>";

    fn row<'a>(image: &'a [u8], parent_image: &'a [u8], cmd: &'a [u8]) -> ProcessRef<'a> {
        ProcessRef {
            guid: ProcessGuid::parse(b"{747F3D96-D6ED-5D31-0000-0010C88A2500}").unwrap(),
            parent_guid: ProcessGuid::parse(b"{747F3D96-D6EC-5D31-0000-0010A1892500}"),
            image,
            command_line: cmd,
            parent_image,
            parent_command_line: b"",
            host: b"PC1",
            time: 0.0,
            hashes: Default::default(),
        }
    }

    #[test]
    fn fields_must_agree_with_raw() {
        let image = br"C:\Windows\System32\dllhost.exe";
        let svchost = br"C:\Windows\System32\svchost.exe";
        let raw = RAW.as_bytes();
        assert!(agrees_with_raw(
            &row(image, svchost, b"dllhost.exe /Processid:{a&b}"),
            raw
        ));
        // The add-on's regex fields keep entities.
        assert!(agrees_with_raw(
            &row(image, svchost, b"dllhost.exe /Processid:{a&amp;b}"),
            raw
        ));
        // Missing in the row: nothing claimed.
        assert!(agrees_with_raw(&row(image, b"", b""), raw));
        // A forged parent image.
        let forged = row(image, br"C:\Windows\System32\userinit.exe", b"");
        assert!(!agrees_with_raw(&forged, raw));
        // A forged parent GUID.
        let mut p = row(image, svchost, b"");
        p.parent_guid = Some(p.guid);
        assert!(!agrees_with_raw(&p, raw));
        // Another event's _raw.
        let other = RAW.replace("<EventID>1<", "<EventID>10<");
        assert!(!agrees_with_raw(
            &row(image, svchost, b""),
            other.as_bytes()
        ));
        // Not XML, or cut before the values: nothing to disagree with.
        assert!(agrees_with_raw(&forged, b"ProcessGuid: {x}"));
        let cut = &RAW[..RAW.find("<Data Name='ParentImage'>").unwrap() + 30];
        assert!(agrees_with_raw(&forged, cut.as_bytes()));
        // Double quotes, and character references.
        let dq = RAW.replace('\'', "\"").replace("{a&amp;b}", "{a&#38;b}");
        assert!(agrees_with_raw(
            &row(image, svchost, b"dllhost.exe /Processid:{a&b}"),
            dq.as_bytes()
        ));
        assert!(!agrees_with_raw(&forged, dq.as_bytes()));
    }

    #[test]
    fn decoding() {
        assert_eq!(
            &*decode(b"a&amp;b&lt;&#13;&#x41;&bogus;&"),
            b"a&b<\rA&bogus;&"
        );
        assert_eq!(&*decode(b"plain"), b"plain");
    }
}
