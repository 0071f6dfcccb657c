//! Which Sysmon events a rule's `logsource` can describe.
//!
//! Sigma rules name a generic category (`process_creation`, `file_event`);
//! Sysmon writes one event per EventID. This is the usual mapping, the one
//! in SigmaHQ's own Sysmon pipeline (pySigma-pipeline-sysmon) completed with
//! the categories added to the Sigma taxonomy since (`file_executable_detected`,
//! `file_block_*`). Keeping a rule to its EventCodes is what stops a
//! `process_creation` rule on `Image` from firing on an image load, whose
//! `Image` is the loading process.
//!
//! The registry categories share EventID 12 (create and delete key); as in
//! the Sigma taxonomy the event's `EventType` tells them apart, so a
//! `registry_add` rule only sees `CreateKey` and a `registry_delete` rule
//! only `DeleteKey`/`DeleteValue`.

/// Where a rule applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// EventCodes the rule may match; `None` for any Sysmon event
    /// (`service: sysmon` rules, which test `EventID` themselves).
    pub codes: Option<&'static [u32]>,
    /// Accepted `EventType` values, when the category needs them.
    pub event_types: Option<&'static [&'static str]>,
}

/// A category, its EventCodes and its EventType filter.
type Entry = (
    &'static str,
    &'static [u32],
    Option<&'static [&'static str]>,
);

/// Category → EventCodes (and EventType filter).
const TABLE: &[Entry] = &[
    ("process_creation", &[1], None),
    ("file_change", &[2], None),
    ("network_connection", &[3], None),
    ("sysmon_status", &[4, 16], None),
    ("process_termination", &[5], None),
    ("driver_load", &[6], None),
    ("image_load", &[7], None),
    ("create_remote_thread", &[8], None),
    ("raw_access_thread", &[9], None),
    ("raw_access_read", &[9], None),
    ("process_access", &[10], None),
    ("file_event", &[11], None),
    ("registry_add", &[12], Some(&["CreateKey"])),
    (
        "registry_delete",
        &[12],
        Some(&["DeleteKey", "DeleteValue"]),
    ),
    ("registry_set", &[13], None),
    ("registry_rename", &[14], None),
    ("registry_event", &[12, 13, 14], None),
    ("create_stream_hash", &[15], None),
    ("pipe_created", &[17, 18], None),
    ("wmi_event", &[19, 20, 21], None),
    ("dns_query", &[22], None),
    ("file_delete", &[23, 26], None),
    ("file_delete_detected", &[26], None),
    ("clipboard_capture", &[24], None),
    ("clipboard_change", &[24], None),
    ("process_tampering", &[25], None),
    ("file_block_executable", &[27], None),
    ("file_block_shredding", &[28], None),
    ("file_executable_detected", &[29], None),
    ("sysmon_error", &[255], None),
];

/// Every EventCode some category maps to (the index keeps one candidate
/// table per code).
pub fn all_codes() -> Vec<u32> {
    let mut v: Vec<u32> = TABLE
        .iter()
        .flat_map(|(_, c, _)| c.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The scope of a rule's logsource, or why Sysmon cannot produce it.
pub fn scope(
    product: Option<&str>,
    category: Option<&str>,
    service: Option<&str>,
) -> Result<Scope, String> {
    if let Some(p) = product {
        if !p.eq_ignore_ascii_case("windows") {
            return Err(format!(
                "logsource product `{p}` is not produced by Sysmon for Windows"
            ));
        }
    }
    match (category, service) {
        (Some(c), None) | (Some(c), Some("sysmon")) => TABLE
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(c))
            .map(|(_, codes, types)| Scope {
                codes: Some(codes),
                event_types: *types,
            })
            .ok_or_else(|| format!("logsource category `{c}` is not produced by Sysmon")),
        (None, Some(s)) if s.eq_ignore_ascii_case("sysmon") => Ok(Scope {
            codes: None,
            event_types: None,
        }),
        (_, Some(s)) => Err(format!("logsource service `{s}` is not Sysmon")),
        (None, None) => Err("logsource names neither a category nor service: sysmon".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_map_to_their_event_codes() {
        let s = scope(Some("windows"), Some("process_creation"), None).unwrap();
        assert_eq!(s.codes, Some(&[1u32][..]));
        let s = scope(Some("windows"), Some("registry_event"), None).unwrap();
        assert_eq!(s.codes, Some(&[12u32, 13, 14][..]));
        let s = scope(Some("windows"), Some("registry_delete"), None).unwrap();
        assert_eq!(s.event_types, Some(&["DeleteKey", "DeleteValue"][..]));
        let s = scope(Some("windows"), None, Some("sysmon")).unwrap();
        assert_eq!(s.codes, None);
    }

    #[test]
    fn other_sources_are_refused_with_a_reason() {
        assert!(scope(Some("linux"), Some("process_creation"), None)
            .unwrap_err()
            .contains("linux"));
        assert!(scope(Some("windows"), None, Some("security"))
            .unwrap_err()
            .contains("security"));
        assert!(scope(Some("windows"), Some("ps_script"), None)
            .unwrap_err()
            .contains("ps_script"));
        assert!(scope(Some("windows"), None, None).is_err());
    }
}
