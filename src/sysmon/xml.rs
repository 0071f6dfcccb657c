//! The Sysmon event XML in `_raw`, for data without search-time fields.
//!
//! With the Splunk Add-on for Sysmon installed every value we need arrives
//! as a field; without it (or for a sourcetype the add-on does not cover)
//! the same values are only inside `_raw`, the single-line XML that
//! `EvtRender` produced. We read it with a real XML parser, so entities
//! (`&amp;`, `&lt;unknown process&gt;`, `&#13;`) are decoded here, unlike
//! the add-on's regex fields. A `_raw` cut short by Splunk's `TRUNCATE`
//! still yields the values that came before the cut.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What `_raw` says about one event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct XmlEvent {
    /// `<System><EventID>`.
    pub event_id: Option<u32>,
    /// `<System><Computer>`.
    pub computer: Option<String>,
    /// `<System><Channel>` (`Microsoft-Windows-Sysmon/Operational` for Sysmon).
    pub channel: Option<String>,
    /// `<EventData><Data Name='…'>…</Data>` in document order.
    pub data: Vec<(String, String)>,
}

impl XmlEvent {
    /// The first `<Data>` value with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// True when `raw` looks like Windows event XML worth parsing.
pub fn looks_like_event_xml(raw: &[u8]) -> bool {
    let mut t = raw.trim_ascii_start();
    // `.evtx` renderers put an XML declaration first; Splunk's `_raw` does not.
    if t.starts_with(b"<?xml") {
        if let Some(end) = memchr::memmem::find(t, b"?>") {
            t = t[end + 2..].trim_ascii_start();
        }
    }
    t.starts_with(b"<Event")
}

/// What the parser is collecting text for.
enum Capture {
    None,
    EventId,
    Computer,
    Channel,
    Data(String),
}

/// Parses `_raw`. Returns `None` when it is not event XML at all; a parse
/// error part-way returns what was read before it.
pub fn parse_event_xml(raw: &[u8]) -> Option<XmlEvent> {
    if !looks_like_event_xml(raw) {
        return None;
    }
    let mut reader = Reader::from_reader(raw);
    reader.config_mut().trim_text(false);
    let mut out = XmlEvent::default();
    let mut capture = Capture::None;
    let mut text = String::new();
    let capturing = |c: &Capture| !matches!(c, Capture::None);
    // A read error ends the parse; what was read so far is kept.
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) => {
                text.clear();
                capture = match e.local_name().as_ref() {
                    b"EventID" => Capture::EventId,
                    b"Computer" => Capture::Computer,
                    b"Channel" => Capture::Channel,
                    b"Data" => Capture::Data(data_name(&e)),
                    _ => Capture::None,
                };
            }
            Event::Empty(e) if e.local_name().as_ref() == b"Data" => {
                out.data.push((data_name(&e), String::new()));
            }
            Event::Text(t) if capturing(&capture) => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::CData(t) if capturing(&capture) => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::GeneralRef(r) if capturing(&capture) => {
                push_entity(&mut text, &r);
            }
            Event::End(_) => {
                match std::mem::replace(&mut capture, Capture::None) {
                    Capture::EventId => out.event_id = text.trim().parse().ok(),
                    Capture::Computer => out.computer = Some(text.trim().to_string()),
                    Capture::Channel => out.channel = Some(text.trim().to_string()),
                    Capture::Data(name) => out.data.push((name, std::mem::take(&mut text))),
                    Capture::None => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some(out)
}

fn data_name(e: &quick_xml::events::BytesStart<'_>) -> String {
    e.try_get_attribute("Name")
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
        .unwrap_or_default()
}

/// Decodes `&name;` / `&#N;`; an unknown entity is kept as written.
fn push_entity(text: &mut String, r: &quick_xml::events::BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        text.push(c);
        return;
    }
    match &**r {
        b"amp" => text.push('&'),
        b"lt" => text.push('<'),
        b"gt" => text.push('>'),
        b"quot" => text.push('"'),
        b"apos" => text.push('\''),
        other => {
            text.push('&');
            text.push_str(&String::from_utf8_lossy(other));
            text.push(';');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Sysmon' Guid='{5770385F-C22A-43E0-BF4C-06F5698FFBD9}'/><EventID>1</EventID><Version>5</Version><Correlation/><Execution ProcessID='2796' ThreadID='3592'/><Computer>MSEDGEWIN10</Computer><Security UserID='S-1-5-18'/></System><EventData><Data Name='RuleName'></Data><Data Name='ProcessGuid'>{747F3D96-D6ED-5D31-0000-0010C88A2500}</Data><Data Name='Image'>C:\\Windows\\System32\\cmd.exe</Data><Data Name='CommandLine'>cmd /c \"a &amp; b\" &gt; out&#13;\nnext</Data><Data Name='Hashes'>SHA1=8C54,MD5=975B</Data><Data Name='ParentImage'>&lt;unknown process&gt;</Data></EventData></Event>";

    #[test]
    fn reads_sysmon_xml() {
        let e = parse_event_xml(RAW.as_bytes()).unwrap();
        assert_eq!(e.event_id, Some(1));
        assert_eq!(e.computer.as_deref(), Some("MSEDGEWIN10"));
        assert_eq!(e.get("RuleName"), Some(""));
        assert_eq!(
            e.get("ProcessGuid"),
            Some("{747F3D96-D6ED-5D31-0000-0010C88A2500}")
        );
        assert_eq!(e.get("CommandLine"), Some("cmd /c \"a & b\" > out\r\nnext"));
        assert_eq!(e.get("ParentImage"), Some("<unknown process>"));
    }

    #[test]
    fn truncated_keeps_the_start() {
        let cut = &RAW[..RAW.find("Hashes").unwrap()];
        let e = parse_event_xml(cut.as_bytes()).unwrap();
        assert_eq!(e.event_id, Some(1));
        assert_eq!(e.get("Image"), Some("C:\\Windows\\System32\\cmd.exe"));
        assert_eq!(e.get("Hashes"), None);
    }

    #[test]
    fn not_xml() {
        assert!(parse_event_xml(b"03/02/2024 10:00:00 EventCode=1").is_none());
        assert!(parse_event_xml(b"").is_none());
    }
}
