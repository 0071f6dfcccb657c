//! The app's side of the shared tier (issue 19): the KV store collections,
//! the lookups over them, their permissions and the dashboard panels, read
//! from the files the package ships and checked against each other.
//!
//! Splunk only reports a mistake in these files at run time (a lookup that
//! names an undeclared field returns nothing; a collection without an ACL
//! stanza is private to its creator; a bad acceleration is ignored with a
//! line in splunkd.log), so the contract is checked here instead.

use std::collections::BTreeSet;
use std::path::PathBuf;
use sysmonenrich::config::conf::ConfFile;

const COLLECTIONS: [&str; 2] = ["sysmonenrich_reputation", "sysmonenrich_processes"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn conf(rel: &str) -> ConfFile {
    let path = repo().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    ConfFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `field.<name>` names of a collection stanza.
fn declared_fields(collections: &ConfFile, name: &str) -> BTreeSet<String> {
    collections
        .stanza(name)
        .unwrap_or_else(|| panic!("collections.conf has no [{name}]"))
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("field.").map(str::to_string))
        .collect()
}

#[test]
fn collections_declare_typed_fields_and_valid_accelerations() {
    let c = conf("default/collections.conf");
    for name in COLLECTIONS {
        let stanza = c.stanza(name).expect(name);
        // Not sent to indexers: the command runs on the search head only.
        assert_eq!(stanza.get("replicate"), Some("false"), "[{name}] replicate");
        let fields = declared_fields(&c, name);
        assert!(!fields.is_empty(), "[{name}] declares no field");
        for (key, value) in stanza.iter() {
            if key.starts_with("field.") {
                assert!(
                    ["string", "number", "bool", "time"].contains(&value),
                    "[{name}] {key} = {value}: not a KV store field type"
                );
            }
            if let Some(accel) = key.strip_prefix("accelerated_fields.") {
                let json: serde_json::Value = serde_json::from_str(value)
                    .unwrap_or_else(|e| panic!("[{name}] {key}: not JSON ({e}): {value}"));
                let obj = json.as_object().expect("an acceleration is a JSON object");
                assert!(!obj.is_empty(), "[{name}] {key} is empty");
                for (field, order) in obj {
                    assert!(
                        fields.contains(field),
                        "[{name}] acceleration {accel} names {field}, which has no field.{field}"
                    );
                    assert!(
                        order == 1 || order == -1,
                        "[{name}] {key}: sort order {order} (1 or -1)"
                    );
                }
            }
        }
    }
    // What the shared tier queries is accelerated.
    let accelerated = |name: &str| -> BTreeSet<String> {
        c.stanza(name)
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("accelerated_fields."))
            .flat_map(|(_, v)| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(v)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
            })
            .collect()
    };
    let rep = accelerated("sysmonenrich_reputation");
    for f in ["hash", "expires"] {
        assert!(rep.contains(f), "reputation: {f} not accelerated");
    }
    let proc = accelerated("sysmonenrich_processes");
    for f in ["seen_at", "writer_sid", "writer_user"] {
        assert!(proc.contains(f), "processes: {f} not accelerated");
    }
}

#[test]
fn lookups_read_declared_fields_of_declared_collections() {
    let c = conf("default/collections.conf");
    let t = conf("default/transforms.conf");
    let rep = t
        .stanza("sysmonenrich_reputation")
        .expect("transforms.conf [sysmonenrich_reputation]");
    assert_eq!(rep.get("external_type"), Some("kvstore"));
    for stanza in t.stanzas() {
        if stanza.get("external_type") != Some("kvstore") {
            continue;
        }
        let collection = stanza
            .get("collection")
            .unwrap_or_else(|| panic!("[{}] has no collection", stanza.name()));
        assert!(
            COLLECTIONS.contains(&collection),
            "[{}] collection = {collection}: not one of ours",
            stanza.name()
        );
        let fields = declared_fields(&c, collection);
        let list = stanza
            .get("fields_list")
            .unwrap_or_else(|| panic!("[{}] has no fields_list", stanza.name()));
        for f in list.split(',').map(str::trim) {
            assert!(
                f == "_key" || fields.contains(f),
                "[{}] fields_list names {f}, which {collection} does not declare",
                stanza.name()
            );
        }
    }
    // `| lookup sysmonenrich_reputation hash OUTPUT rep_verdict`
    let list: Vec<&str> = rep
        .get("fields_list")
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    for f in ["hash", "rep_verdict", "provider", "checked", "expires"] {
        assert!(list.contains(&f), "the reputation lookup lacks {f}");
    }
}

/// `access = read : [ * ], write : [ admin, power ]` → (read, write).
fn acl(value: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut read = BTreeSet::new();
    let mut write = BTreeSet::new();
    for part in value.split("],") {
        let (verb, roles) = part.split_once(':').expect("verb : [ roles ]");
        let roles = roles
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        match verb.trim() {
            "read" => read.extend(roles),
            "write" => write.extend(roles),
            other => panic!("unknown access verb {other:?} in {value:?}"),
        }
    }
    (read, write)
}

#[test]
fn everyone_reads_the_shared_tier_and_only_command_roles_write_it() {
    let meta = conf("splunk_app/metadata/default.meta");
    let (_, command_write) = acl(meta.get("commands/sysmonenrich", "access").unwrap());
    let (command_read, _) = acl(meta.get("commands/sysmonenrich", "access").unwrap());
    assert!(!command_write.is_empty());
    for name in COLLECTIONS {
        let stanza = format!("collections/{name}");
        let access = meta
            .get(&stanza, "access")
            .unwrap_or_else(|| panic!("default.meta has no [{stanza}] access"));
        let (read, write) = acl(access);
        assert_eq!(read, BTreeSet::from(["*".to_string()]), "[{stanza}] read");
        assert!(!write.contains("*"), "[{stanza}]: everyone may write");
        assert!(write.contains("admin"), "[{stanza}]: admin may not write");
        // Writers are roles that may run the command at all.
        assert!(
            write.is_subset(&command_read),
            "[{stanza}] write {write:?} grants roles that cannot run the command ({command_read:?})"
        );
        assert_eq!(
            meta.get(&stanza, "export"),
            Some("system"),
            "[{stanza}] export"
        );
    }
    let (read, _) = acl(meta
        .get("transforms/sysmonenrich_reputation", "access")
        .expect("[transforms/sysmonenrich_reputation] access"));
    assert!(read.contains("*"));
    assert_eq!(
        meta.get("transforms/sysmonenrich_reputation", "export"),
        Some("system"),
        "the lookup must work from Search & Reporting"
    );
}

#[test]
fn dashboard_reads_the_shared_reputation_cache() {
    let path = repo().join("default/data/ui/views/sysmonenrich_overview.xml");
    let xml = std::fs::read_to_string(&path).unwrap();
    // Well-formed, and the queries as Splunk would read them (entities decoded).
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut queries = Vec::new();
    let mut in_query = false;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) => {
                in_query = e.name().as_ref() == b"query";
                if in_query {
                    queries.push(String::new());
                }
            }
            Ok(quick_xml::events::Event::Text(t)) if in_query => {
                queries.last_mut().unwrap().push_str(&t.decode().unwrap())
            }
            Ok(quick_xml::events::Event::GeneralRef(r)) if in_query => {
                queries.last_mut().unwrap().push_str(match r.as_ref() {
                    b"gt" => ">",
                    b"lt" => "<",
                    b"amp" => "&",
                    b"quot" => "\"",
                    b"apos" => "'",
                    other => panic!("entity {other:?}"),
                });
            }
            Ok(quick_xml::events::Event::End(_)) => in_query = false,
            Ok(quick_xml::events::Event::Eof) => break,
            Err(e) => panic!("{}: {e}", path.display()),
            _ => {}
        }
    }
    let shared: Vec<&String> = queries
        .iter()
        .filter(|q| q.contains("inputlookup sysmonenrich_reputation"))
        .collect();
    assert!(
        shared.len() >= 2,
        "want a verdict panel and a malicious-hash panel over the KV store lookup, found {}",
        shared.len()
    );
    assert!(shared.iter().any(|q| q.contains("BY rep_verdict")));
    assert!(shared
        .iter()
        .any(|q| q.contains("rep_verdict=\"malicious\"")));
    // Expired answers are not shown as current.
    assert!(shared.iter().all(|q| q.contains("expires > now()")));
    // Every field the panels read is one the lookup returns.
    let t = conf("default/transforms.conf");
    let list: BTreeSet<&str> = t
        .get("sysmonenrich_reputation", "fields_list")
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    for q in &shared {
        for f in [
            "hash",
            "provider",
            "rep_verdict",
            "rep_label",
            "rep_detections",
            "rep_engines",
            "checked",
            "expires",
        ] {
            if q.contains(f) {
                assert!(
                    list.contains(f),
                    "a panel reads {f}, which the lookup lacks"
                );
            }
        }
    }
}

/// The fields the shared tier writes, from the code that writes them.
fn written_fields(doc: serde_json::Value) -> BTreeSet<String> {
    doc.as_object()
        .expect("a document is an object")
        .keys()
        .filter(|k| *k != "_key")
        .cloned()
        .collect()
}

#[test]
fn collections_declare_exactly_the_fields_the_shared_tier_writes() {
    use sysmonenrich::enrich::shared::docs::{SharedAnswer, SharedProcess, PROCESSES, REPUTATION};
    use sysmonenrich::state::{StoredProcess, Writer};
    assert_eq!(COLLECTIONS, [REPUTATION, PROCESSES]);
    let c = conf("default/collections.conf");
    // An answer with every optional field the document can carry.
    let answer = SharedAnswer {
        provider: "virustotal".into(),
        key: format!("sha256:{}", "ab".repeat(32)),
        json: r#"{"status":"found","verdict":"malicious","detections":41,"engines":70,"label":"trojan.x"}"#
            .into(),
        checked: 1_700_000_000,
        expires: 1_700_086_400,
    };
    assert_eq!(
        written_fields(answer.to_doc()),
        declared_fields(&c, REPUTATION),
        "collections.conf [{REPUTATION}] vs SharedAnswer::to_doc"
    );
    let process = SharedProcess {
        process: StoredProcess {
            guid: 0x42,
            parent_guid: Some(0x41),
            image: "a".into(),
            command_line: "b".into(),
            parent_image: "c".into(),
            parent_command_line: "d".into(),
            host: "h".into(),
            time: 1.5,
            md5: Some("0".repeat(32)),
            sha1: Some("0".repeat(40)),
            sha256: Some("0".repeat(64)),
            imphash: Some("0".repeat(32)),
            seen_at: 1,
        },
        writer: Writer {
            sid: "s".into(),
            user: "u".into(),
        },
        sigma: vec![1],
    };
    assert_eq!(
        written_fields(process.to_doc()),
        declared_fields(&c, PROCESSES),
        "collections.conf [{PROCESSES}] vs SharedProcess::to_doc"
    );
}
