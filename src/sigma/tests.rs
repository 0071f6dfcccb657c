//! One test per modifier, value form and condition form, on rules written
//! the way SigmaHQ writes them and events shaped as Splunk hands them
//! (every value text, XML entities kept, absent = empty).

use super::load::Builder;
use super::{Filter, RuleSet};
use std::collections::HashMap;
use std::path::PathBuf;

fn rule_text(category: &str, detection: &str) -> String {
    format!(
        "title: Test rule\nid: 00000000-0000-0000-0000-000000000001\nstatus: test\nlevel: high\n\
         author: Tester\ntags:\n    - attack.execution\n    - attack.t1059\n    - cve.2021-1\n\
         logsource:\n    product: windows\n    category: {category}\ndetection:\n{detection}"
    )
}

fn compile(category: &str, detection: &str) -> RuleSet {
    let mut b = Builder::default();
    b.add(
        PathBuf::from("test.yml"),
        &rule_text(category, detection),
        &Filter::default(),
    );
    assert!(b.skipped.is_empty(), "skipped: {:?}", b.skipped);
    b.finish()
}

fn skip_reason(detection: &str) -> String {
    let mut b = Builder::default();
    b.add(
        PathBuf::from("test.yml"),
        &rule_text("process_creation", detection),
        &Filter::default(),
    );
    assert_eq!(b.skipped.len(), 1, "expected a skip for {detection}");
    b.skipped[0].reason.clone()
}

fn event(code: &str, fields: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.insert("EventCode".into(), code.into());
    m
}

fn hits(rules: &RuleSet, fields: &[(&str, &str)]) -> bool {
    let mut out = Vec::new();
    rules.matches(&event("1", fields), &mut out);
    !out.is_empty()
}

/// A process-creation rule with one selection, and its verdict on events.
fn check(selection: &str, cases: &[(&[(&str, &str)], bool)]) {
    let rules = compile(
        "process_creation",
        &format!("    selection:\n{selection}\n    condition: selection\n"),
    );
    for (fields, want) in cases {
        assert_eq!(hits(&rules, fields), *want, "{selection} on {fields:?}");
    }
}

#[test]
fn plain_value_is_whole_value_case_insensitive() {
    check(
        "        Image: 'C:\\Windows\\System32\\cmd.exe'",
        &[
            (&[("Image", "c:\\windows\\system32\\CMD.EXE")], true),
            (&[("Image", "C:\\Windows\\System32\\cmd.exe.bak")], false),
            (&[], false),
        ],
    );
}

#[test]
fn contains_startswith_endswith() {
    check(
        "        CommandLine|contains: 'DownloadString'",
        &[
            (&[("CommandLine", "iex (x).downloadstring('u')")], true),
            (&[("CommandLine", "download string")], false),
        ],
    );
    check(
        "        Image|startswith: 'C:\\Users\\'",
        &[
            (&[("Image", "c:\\users\\a\\x.exe")], true),
            (&[("Image", "D:\\c:\\users\\")], false),
        ],
    );
    check(
        "        Image|endswith: '\\rundll32.exe'",
        &[
            (&[("Image", "C:\\Windows\\RUNDLL32.EXE")], true),
            (&[("Image", "C:\\Windows\\rundll32.exe ")], false),
        ],
    );
}

#[test]
fn value_list_is_or_and_all_makes_it_and() {
    let any = "        CommandLine|contains:\n            - ' -enc '\n            - ' -e '";
    check(
        any,
        &[
            (&[("CommandLine", "p -e x")], true),
            (&[("CommandLine", "p -x")], false),
        ],
    );
    let all = "        CommandLine|contains|all:\n            - 'net'\n            - 'user'\n            - '/add'";
    check(
        all,
        &[
            (&[("CommandLine", "NET USER bob /ADD")], true),
            (&[("CommandLine", "net user bob")], false),
        ],
    );
}

#[test]
fn map_is_and_list_of_maps_is_or() {
    let and = "        Image|endswith: '\\cmd.exe'\n        CommandLine|contains: '/c'";
    check(
        and,
        &[
            (
                &[("Image", "x\\cmd.exe"), ("CommandLine", "cmd /c dir")],
                true,
            ),
            (&[("Image", "x\\cmd.exe"), ("CommandLine", "cmd")], false),
        ],
    );
    let or = "        - Image|endswith: '\\cmd.exe'\n        - OriginalFileName: 'Cmd.Exe'";
    check(
        or,
        &[
            (&[("Image", "x\\cmd.exe")], true),
            (&[("OriginalFileName", "cmd.exe")], true),
            (&[("Image", "x\\pwsh.exe")], false),
        ],
    );
}

#[test]
fn keywords_search_every_value() {
    check(
        "        - 'mimikatz'\n        - 'sekurlsa'",
        &[
            (&[("CommandLine", "run Mimikatz.exe")], true),
            (&[("ParentCommandLine", "sekurlsa::logonpasswords")], true),
            (&[("CommandLine", "notepad")], false),
        ],
    );
}

#[test]
fn null_matches_empty_and_absent() {
    let rules = compile(
        "process_creation",
        "    selection:\n        Image|endswith: '\\x.exe'\n        ParentUser: null\n    condition: selection\n",
    );
    assert!(hits(&rules, &[("Image", "c:\\x.exe")]));
    assert!(hits(&rules, &[("Image", "c:\\x.exe"), ("ParentUser", "")]));
    assert!(!hits(
        &rules,
        &[
            ("Image", "c:\\x.exe"),
            ("ParentUser", "NT AUTHORITY\\SYSTEM")
        ]
    ));
    // Not null, written as a negated selection.
    let not_null = compile(
        "process_creation",
        "    selection:\n        Image|endswith: '\\x.exe'\n    filter:\n        ParentUser: null\n    \
         condition: selection and not filter\n",
    );
    assert!(!hits(&not_null, &[("Image", "c:\\x.exe")]));
    assert!(hits(
        &not_null,
        &[("Image", "c:\\x.exe"), ("ParentUser", "bob")]
    ));
}

#[test]
fn empty_string_matches_empty_and_absent() {
    check(
        "        CommandLine: ''",
        &[
            (&[], true),
            (&[("CommandLine", "")], true),
            (&[("CommandLine", "x")], false),
        ],
    );
}

#[test]
fn filter_on_a_field_the_event_lacks_cannot_match() {
    // The shape of create_remote_thread_win_powershell_generic.yml: Sysmon's
    // EventCode 8 has no SourceParentImage, so the filter never matches.
    let rules = compile(
        "create_remote_thread",
        "    selection:\n        SourceImage|endswith: '\\powershell.exe'\n    filter:\n        \
         SourceParentImage|endswith: ':\\Windows\\System32\\CompatTelRunner.exe'\n    \
         condition: selection and not filter\n",
    );
    let mut out = Vec::new();
    rules.matches(
        &event("8", &[("SourceImage", "C:\\x\\powershell.exe")]),
        &mut out,
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn numbers_match_splunk_text() {
    check(
        "        TerminalSessionId: 0",
        &[
            (&[("TerminalSessionId", "0")], true),
            (&[("TerminalSessionId", "00")], false),
        ],
    );
    let rules = compile(
        "network_connection",
        "    selection:\n        DestinationPort:\n            - 445\n            - 3389\n    condition: selection\n",
    );
    let mut out = Vec::new();
    rules.matches(&event("3", &[("DestinationPort", "3389")]), &mut out);
    assert_eq!(out.len(), 1);
    let eventid = compile(
        "process_creation",
        "    selection:\n        EventID: 4688\n    condition: selection\n",
    );
    assert!(hits(&eventid, &[("EventID", "4688")]));
}

#[test]
fn wildcards_and_escaping() {
    check(
        "        CommandLine: '* -w hidden *'",
        &[(&[("CommandLine", "ps -W Hidden -c x")], true)],
    );
    check(
        "        Image: 'C:\\Windows\\\\?ystem32\\\\*.exe'",
        &[
            (&[("Image", "C:\\Windows\\System32\\a.exe")], true),
            (&[("Image", "C:\\Windows\\ystem32\\a.exe")], false),
        ],
    );
    // `\*` and `\?` are the characters themselves.
    check(
        "        CommandLine|contains: 'SELECT \\* FROM'",
        &[
            (&[("CommandLine", "select * from x")], true),
            (&[("CommandLine", "select a from x")], false),
        ],
    );
    check(
        "        CommandLine|endswith: 'really\\?'",
        &[
            (&[("CommandLine", "is it really?")], true),
            (&[("CommandLine", "is it really!")], false),
        ],
    );
    // `\\` before a wildcard is one backslash, and the wildcard stays one.
    check(
        "        Image: 'C:\\\\*'",
        &[
            (&[("Image", "C:\\anything")], true),
            (&[("Image", "C:anything")], false),
        ],
    );
    // A backslash before anything else is literal.
    check(
        "        Image: 'C:\\Temp\\a.exe'",
        &[(&[("Image", "C:\\Temp\\a.exe")], true)],
    );
}

#[test]
fn xml_entities_are_matched_as_the_plain_text() {
    check(
        "        CommandLine|contains: ' && '",
        &[(&[("CommandLine", "cmd /c a &amp;&amp; b")], true)],
    );
    check(
        "        ParentImage: '<unknown process>'",
        &[(&[("ParentImage", "&lt;unknown process&gt;")], true)],
    );
    check(
        "        CommandLine|contains: 'echo \"x\"'",
        &[(&[("CommandLine", "echo &quot;x&quot;")], true)],
    );
}

#[test]
fn re_is_unanchored_case_sensitive_with_flags() {
    check(
        "        CommandLine|re: '\\s-[eE][nN][cC]\\s'",
        &[
            (&[("CommandLine", "powershell -EnC aGk=")], true),
            (&[("CommandLine", "powershell -EnCx")], false),
        ],
    );
    check(
        "        CommandLine|re: 'invoke-'",
        &[
            (&[("CommandLine", "x Invoke-Expression")], false),
            (&[("CommandLine", "x invoke-expression")], true),
        ],
    );
    check(
        "        CommandLine|re|i: 'invoke-'",
        &[(&[("CommandLine", "x Invoke-Expression")], true)],
    );
    check(
        "        CommandLine|re|m: '^second$'",
        &[(&[("CommandLine", "first\nsecond\nthird")], true)],
    );
    check(
        "        CommandLine|re: '^second$'",
        &[(&[("CommandLine", "first\nsecond\nthird")], false)],
    );
    check(
        "        CommandLine|re|s: 'a.b'",
        &[(&[("CommandLine", "a\nb")], true)],
    );
    check(
        "        CommandLine|re: 'a.b'",
        &[(&[("CommandLine", "a\nb")], false)],
    );
}

#[test]
fn base64_and_base64offset() {
    // "sekurlsa" in base64 is c2VrdXJsc2E=.
    check(
        "        CommandLine|base64|contains: 'sekurlsa'",
        &[
            (&[("CommandLine", "x c2VrdXJsc2E= y")], true),
            (&[("CommandLine", "x sekurlsa y")], false),
        ],
    );
    let sel = "        CommandLine|base64offset|contains: 'http://'";
    for plain in ["http://x", "ahttp://x", "abhttp://x"] {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::STANDARD.encode(plain);
        check(sel, &[(&[("CommandLine", enc.as_str())], true)]);
    }
    check(sel, &[(&[("CommandLine", "aHR0cHM6Ly94")], false)]);
}

#[test]
fn utf16_encodings_before_base64() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let le: Vec<u8> = "IEX ".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = "IEX ".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut bom = vec![0xFF, 0xFE];
    bom.extend_from_slice(&le);
    check(
        "        CommandLine|wide|base64offset|contains: 'IEX '",
        &[(&[("CommandLine", b64(&le).as_str())], true)],
    );
    check(
        "        CommandLine|utf16le|base64|contains: 'IEX '",
        &[(&[("CommandLine", b64(&le).as_str())], true)],
    );
    check(
        "        CommandLine|utf16be|base64|contains: 'IEX '",
        &[
            (&[("CommandLine", b64(&be).as_str())], true),
            (&[("CommandLine", b64(&le).as_str())], false),
        ],
    );
    check(
        "        CommandLine|utf16|base64|contains: 'IEX '",
        &[(&[("CommandLine", b64(&bom).as_str())], true)],
    );
}

#[test]
fn windash_accepts_every_dash_form() {
    let sel = "        CommandLine|contains|windash: ' -exec bypass'";
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        let cl = format!("powershell {dash}exec bypass");
        check(sel, &[(&[("CommandLine", cl.as_str())], true)]);
    }
    check(
        sel,
        &[(&[("CommandLine", "powershell +exec bypass")], false)],
    );
}

#[test]
fn cidr_v4_and_v6() {
    let rules = compile(
        "network_connection",
        "    selection:\n        DestinationIp|cidr:\n            - '10.0.0.0/8'\n            - 'fe80::/10'\n    \
         condition: selection\n",
    );
    let hit = |ip: &str| {
        let mut out = Vec::new();
        rules.matches(&event("3", &[("DestinationIp", ip)]), &mut out);
        !out.is_empty()
    };
    assert!(hit("10.1.2.3"));
    assert!(hit("::ffff:10.1.2.3"));
    assert!(!hit("11.1.2.3"));
    assert!(hit("fe80::1"));
    assert!(!hit("2001:db8::1"));
    assert!(!hit(""));
}

#[test]
fn exists() {
    check(
        "        ParentUser|exists: true",
        &[
            (&[("ParentUser", "x")], true),
            (&[("ParentUser", "")], false),
            (&[], false),
        ],
    );
    check(
        "        ParentUser|exists: false",
        &[(&[("ParentUser", "x")], false), (&[], true)],
    );
}

#[test]
fn cased_is_case_sensitive() {
    check(
        "        CommandLine|contains|cased: 'EncodedCommand'",
        &[
            (&[("CommandLine", "-EncodedCommand x")], true),
            (&[("CommandLine", "-encodedcommand x")], false),
        ],
    );
}

#[test]
fn fieldref_compares_two_fields() {
    check(
        "        Image|fieldref: ParentImage",
        &[
            (
                &[("Image", "C:\\a.exe"), ("ParentImage", "c:\\A.exe")],
                true,
            ),
            (
                &[("Image", "C:\\a.exe"), ("ParentImage", "C:\\b.exe")],
                false,
            ),
            (&[], false),
        ],
    );
}

#[test]
fn numeric_comparisons() {
    check(
        "        TerminalSessionId|gt: 1",
        &[
            (&[("TerminalSessionId", "2")], true),
            (&[("TerminalSessionId", "1")], false),
        ],
    );
    check(
        "        TerminalSessionId|gte: 1",
        &[
            (&[("TerminalSessionId", "1")], true),
            (&[("TerminalSessionId", "0")], false),
        ],
    );
    check(
        "        TerminalSessionId|lt: 1",
        &[
            (&[("TerminalSessionId", "0")], true),
            (&[("TerminalSessionId", "x")], false),
        ],
    );
    check(
        "        TerminalSessionId|lte: 1",
        &[
            (&[("TerminalSessionId", "1")], true),
            (&[("TerminalSessionId", "2")], false),
        ],
    );
}

fn condition(cond: &str, cases: &[(&str, bool)]) {
    let det = format!(
        "    selection:\n        Image|endswith: '\\a.exe'\n    sel_x:\n        CommandLine|contains: 'x'\n    \
         sel_y:\n        CommandLine|contains: 'y'\n    filter_main:\n        User: 'SYSTEM'\n    \
         filter_optional:\n        CommandLine|contains: 'z'\n    condition: {cond}\n"
    );
    let rules = compile("process_creation", &det);
    for (cl, want) in cases {
        let user = if cl.contains('S') { "SYSTEM" } else { "bob" };
        let cl = cl.replace('S', "");
        assert_eq!(
            hits(
                &rules,
                &[("Image", "c:\\a.exe"), ("CommandLine", &cl), ("User", user)]
            ),
            *want,
            "{cond} on {cl:?} {user}"
        );
    }
}

#[test]
fn condition_forms() {
    condition("selection and not filter_main", &[("", true), ("S", false)]);
    condition("selection and 1 of sel_*", &[("x", true), ("", false)]);
    condition("all of sel_*", &[("xy", true), ("x", false)]);
    condition("1 of them", &[("", true)]);
    condition("all of them", &[("xyzS", true), ("xyz", false)]);
    condition(
        "selection and not 1 of filter_*",
        &[("x", true), ("z", false), ("S", false)],
    );
    condition(
        "selection and (sel_x or sel_y) and not filter_optional",
        &[("y", true), ("yz", false), ("", false)],
    );
    condition("not selection or sel_x", &[("", false), ("x", true)]);
}

#[test]
fn a_rule_never_matches_another_category() {
    let rules = compile(
        "process_creation",
        "    selection:\n        Image|endswith: '\\a.exe'\n    condition: selection\n",
    );
    for code in ["7", "10", "", "x"] {
        let mut out = Vec::new();
        rules.matches(&event(code, &[("Image", "c:\\a.exe")]), &mut out);
        assert!(out.is_empty(), "EventCode {code:?}");
    }
    // Only negations: no literal to select by, still scoped.
    let negated = compile(
        "image_load",
        "    filter:\n        Image|endswith: '\\a.exe'\n    condition: not filter\n",
    );
    let mut out = Vec::new();
    negated.matches(&event("1", &[("Image", "c:\\b.exe")]), &mut out);
    assert!(out.is_empty());
    negated.matches(&event("7", &[("Image", "c:\\b.exe")]), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn registry_add_and_delete_see_their_event_type_only() {
    let det =
        "    selection:\n        TargetObject|contains: '\\Run\\'\n    condition: selection\n";
    let add = compile("registry_add", det);
    let del = compile("registry_delete", det);
    let ev = |t: &str| {
        event(
            "12",
            &[("TargetObject", "HKLM\\x\\Run\\y"), ("EventType", t)],
        )
    };
    let count = |r: &RuleSet, t: &str| {
        let mut out = Vec::new();
        r.matches(&ev(t), &mut out);
        out.len()
    };
    assert_eq!((count(&add, "CreateKey"), count(&add, "DeleteKey")), (1, 0));
    assert_eq!(
        (count(&del, "DeleteValue"), count(&del, "CreateKey")),
        (1, 0)
    );
}

#[test]
fn metadata_is_kept() {
    let rules = compile(
        "process_creation",
        "    selection:\n        Image: x\n    condition: selection\n",
    );
    let r = &rules.rules()[0];
    assert_eq!(r.title, "Test rule");
    assert_eq!(r.author, "Tester");
    assert_eq!(r.level, super::Level::High);
    assert_eq!(r.status, "test");
    assert_eq!(
        r.attack_tags().collect::<Vec<_>>(),
        ["attack.execution", "attack.t1059"]
    );
}

#[test]
fn unsupported_rules_are_skipped_with_their_reason() {
    assert!(
        skip_reason("    selection:\n        Image|expand: '%x%'\n    condition: selection\n")
            .contains("expand")
    );
    assert!(
        skip_reason("    selection:\n        Image|bogus: x\n    condition: selection\n")
            .contains("bogus")
    );
    assert!(skip_reason(
        "    selection:\n        Image: x\n    condition: selection | count() > 3\n"
    )
    .contains("aggregation"));
    assert!(
        skip_reason("    selection:\n        Image: x\n    condition: nothing\n")
            .contains("nothing")
    );
    assert!(
        skip_reason("    selection:\n        Image|re: '(?<=a)b'\n    condition: selection\n")
            .contains("look-around")
    );
    assert!(
        skip_reason("    selection:\n        Image: [\n    condition: selection\n")
            .contains("YAML")
    );
    let mut b = Builder::default();
    b.add(
        "a.yml".into(),
        &rule_text("ps_script", "    s:\n        X: y\n    condition: s\n"),
        &Filter::default(),
    );
    assert!(b.skipped[0].reason.contains("ps_script"));
}

#[test]
fn filter_by_level_status_and_id() {
    let text = rule_text(
        "process_creation",
        "    selection:\n        Image: x\n    condition: selection\n",
    );
    let run = |f: Filter| {
        let mut b = Builder::default();
        b.add("a.yml".into(), &text, &f);
        (b.finish().len(), 0)
    };
    assert_eq!(run(Filter::default()).0, 1);
    assert_eq!(
        run(Filter {
            min_level: Some(super::Level::Critical),
            ..Default::default()
        })
        .0,
        0
    );
    assert_eq!(
        run(Filter {
            status: vec!["stable".into()],
            ..Default::default()
        })
        .0,
        0
    );
    assert_eq!(
        run(Filter {
            status: vec!["test".into()],
            ..Default::default()
        })
        .0,
        1
    );
    let ids = ["00000000-0000-0000-0000-000000000001".to_string()]
        .into_iter()
        .collect();
    assert_eq!(
        run(Filter {
            disabled_ids: ids,
            ..Default::default()
        })
        .0,
        0
    );
}

#[test]
fn regex_only_rules_enter_the_index_and_still_match() {
    let rules = compile(
        "process_creation",
        "    selection:\n        CommandLine|re: '(?i)\\\\(Invoke-Mimikatz|Get-Pass)'\n    condition: selection\n",
    );
    assert_eq!(rules.unindexed_count(), 0, "the regex's literals index it");
    assert!(hits(&rules, &[("CommandLine", "x \\INVOKE-MIMIKATZ y")]));
    assert!(hits(&rules, &[("CommandLine", "\\get-pass")]));
    assert!(!hits(
        &rules,
        &[("CommandLine", "invoke-mimikatz without slash")]
    ));
    // A regex without a literal of three bytes still runs on every event.
    let open = compile(
        "process_creation",
        "    selection:\n        CommandLine|re: '[a-z]{40}'\n    condition: selection\n",
    );
    assert_eq!(open.unindexed_count(), 1);
    assert!(hits(&open, &[("CommandLine", &"q".repeat(40))]));
}

#[test]
fn reused_scratch_never_carries_a_value_into_the_next_event() {
    let rules = compile(
        "process_creation",
        "    selection:\n        Image|endswith: '\\tool.exe'\n        CommandLine|contains: '-x'\n    condition: selection\n",
    );
    let mut s = super::Scratch::default();
    let mut out = Vec::new();
    let both = event(
        "1",
        &[("Image", "C:\\TOOL.exe"), ("CommandLine", "tool -x")],
    );
    let no_cmd = event("1", &[("Image", "C:\\tool.exe")]);
    let other_image = event("1", &[("Image", "C:\\a.exe"), ("CommandLine", "a -x")]);
    for _ in 0..3 {
        out.clear();
        rules.matches_with(&both, &mut s, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        rules.matches_with(&no_cmd, &mut s, &mut out);
        assert!(out.is_empty(), "CommandLine of the previous event leaked");
        out.clear();
        rules.matches_with(&other_image, &mut s, &mut out);
        assert!(out.is_empty(), "Image of the previous event leaked");
    }
}

/// Two rules: one on `Image`, one keyword rule (reads every value).
fn image_and_keyword_rules() -> RuleSet {
    let mut b = Builder::default();
    b.add(
        PathBuf::from("image.yml"),
        &rule_text(
            "process_creation",
            "    selection:\n        Image|endswith: '\\whoami.exe'\n    condition: selection\n",
        )
        .replace("000000000001", "000000000011"),
        &Filter::default(),
    );
    b.add(
        PathBuf::from("keyword.yml"),
        &rule_text(
            "process_creation",
            "    keywords:\n        - 'secret-token'\n    condition: keywords\n",
        )
        .replace("000000000001", "000000000012"),
        &Filter::default(),
    );
    assert!(b.skipped.is_empty(), "{:?}", b.skipped);
    b.finish()
}

fn ids(rules: &RuleSet, s: &mut super::Scratch, fields: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    rules.matches_with(&event("1", fields), s, &mut out);
    out.iter().map(|&i| rules.rule(i).id.clone()).collect()
}

#[test]
fn remembered_verdicts_follow_the_fields_rules_read_and_keywords_always_run() {
    let rules = image_and_keyword_rules();
    let mut s = super::Scratch::default();
    let whoami = "C:\\Windows\\System32\\whoami.exe";
    let image_rule = "00000000-0000-0000-0000-000000000011";
    let keyword_rule = "00000000-0000-0000-0000-000000000012";
    assert_eq!(
        ids(&rules, &mut s, &[("Image", whoami), ("ProcessId", "1")]),
        [image_rule]
    );
    // Another process of the same image: a remembered verdict (ProcessId
    // is read by no rule), the same answer.
    assert_eq!(
        ids(&rules, &mut s, &[("Image", whoami), ("ProcessId", "2")]),
        [image_rule]
    );
    assert_eq!(RuleSet::memo_counts(&s), (1, 1));
    // The keyword rule runs on every event, remembered or not: a field
    // no rule names carries the keyword.
    assert_eq!(
        ids(
            &rules,
            &mut s,
            &[("Image", whoami), ("ProcessId", "secret-token")]
        ),
        [image_rule, keyword_rule]
    );
    assert_eq!(RuleSet::memo_counts(&s), (2, 1));
    // A different value of a field a rule reads is a different key.
    assert!(ids(&rules, &mut s, &[("Image", "C:\\x\\cmd.exe")]).is_empty());
    assert_eq!(
        ids(&rules, &mut s, &[("Image", "C:\\x\\WHOAMI.EXE")]),
        [image_rule]
    );
    assert_eq!(RuleSet::memo_counts(&s), (2, 3));
}

#[test]
fn keys_cannot_collide_by_moving_bytes_between_fields() {
    // Two fields read by the rule: "ab" + "c" and "a" + "bc" are different
    // events with different verdicts.
    let rules = compile(
        "process_creation",
        "    selection:\n        Image: 'ab'\n        CommandLine: 'c'\n    condition: selection\n",
    );
    let mut s = super::Scratch::default();
    assert_eq!(
        ids(&rules, &mut s, &[("CommandLine", "c"), ("Image", "ab")]).len(),
        1
    );
    assert!(ids(&rules, &mut s, &[("CommandLine", "bc"), ("Image", "a")]).is_empty());
    assert_eq!(RuleSet::memo_counts(&s), (0, 2));
}

#[test]
fn memory_of_verdicts_is_bounded() {
    let rules = compile(
        "process_creation",
        "    selection:\n        CommandLine|contains: 'x'\n    condition: selection\n",
    );
    let mut s = super::Scratch::default();
    // Keys of ~4 KiB: the bound is reached after ~4,000 distinct events,
    // and answers stay right past it.
    // Each event comes twice, so remembering pays and stays on (`gate.rs`).
    let long = "y".repeat(4096);
    for i in 0..6_000 {
        let cl = format!("{long}{i}{}", if i % 2 == 0 { "x" } else { "" });
        for _ in 0..2 {
            assert_eq!(
                ids(&rules, &mut s, &[("CommandLine", &cl)]).len(),
                1 - i % 2
            );
        }
        assert!(s.verdicts.bytes() <= super::memo::MEMO_BYTES);
    }
    // A key over the limit is evaluated and not remembered.
    let huge = "x".repeat(64 << 10);
    for _ in 0..2 {
        assert_eq!(ids(&rules, &mut s, &[("CommandLine", &huge)]).len(), 1);
    }
    let (hits, misses) = RuleSet::memo_counts(&s);
    assert_eq!((hits, misses), (6_000, 6_000));
}

#[test]
fn verdicts_that_never_repeat_stop_being_looked_up_and_answers_stay() {
    use super::gate::{PROBE, WINDOW};
    let rules = compile(
        "process_creation",
        "    selection:\n        CommandLine|contains: 'x'\n    condition: selection\n",
    );
    let mut s = super::Scratch::default();
    let events = 5_000u32;
    for i in 0..events {
        let cl = format!("run {i}{}", if i % 3 == 0 { "x" } else { "" });
        let want = usize::from(i % 3 == 0);
        assert_eq!(ids(&rules, &mut s, &[("CommandLine", &cl)]).len(), want);
    }
    // A window of lookups, then one event in PROBE.
    let (hits, misses) = RuleSet::memo_counts(&s);
    assert_eq!(hits, 0);
    assert_eq!(misses, u64::from(WINDOW + (events - WINDOW) / PROBE));
    // When events start to repeat, the probes find them and it reopens.
    for round in 0..WINDOW * PROBE * 2 {
        let cl = format!("again {}x", round % 100);
        assert_eq!(ids(&rules, &mut s, &[("CommandLine", &cl)]).len(), 1);
    }
    let (hits_after, misses_after) = RuleSet::memo_counts(&s);
    let looked_up = hits_after + misses_after - misses;
    assert!(hits_after > 0);
    assert!(
        looked_up > u64::from(WINDOW * 2),
        "reopened: every event is looked up again ({looked_up})"
    );
}

#[test]
fn a_rule_is_a_candidate_only_when_every_part_of_its_and_has_a_literal() {
    let rules = compile(
        "process_creation",
        "    selection_parent:\n        ParentImage|endswith: '\\explorer.exe'\n    \
         selection_child:\n        Image|endswith: '\\rundll32.exe'\n        \
         CommandLine|contains:\n            - 'javascript:'\n            - 'vbscript:'\n    \
         condition: all of selection_*\n",
    );
    let count = |fields: &[(&str, &str)]| rules.candidate_count(&event("1", fields));
    let explorer = ("ParentImage", "C:\\Windows\\explorer.exe");
    let rundll = ("Image", "C:\\Windows\\System32\\rundll32.exe");
    let js = ("CommandLine", "rundll32 javascript:alert");
    // One part alone does not make a candidate (each AND part is a set).
    assert_eq!(count(&[explorer]), 0);
    assert_eq!(count(&[explorer, rundll]), 0);
    assert_eq!(count(&[rundll, js]), 0);
    assert_eq!(count(&[explorer, rundll, js]), 1);
    assert!(hits(&rules, &[explorer, rundll, js]));
    assert!(!hits(
        &rules,
        &[explorer, rundll, ("CommandLine", "rundll32 x")]
    ));
    // An OR of parts needs one of them: `1 of` is one set.
    let or = compile(
        "process_creation",
        "    a:\n        Image|endswith: '\\a.exe'\n    b:\n        Image|endswith: '\\b.exe'\n    \
         condition: 1 of a or b\n",
    );
    assert_eq!(
        or.candidate_count(&event("1", &[("Image", "C:\\b.exe")])),
        1
    );
    assert_eq!(
        or.candidate_count(&event("1", &[("Image", "C:\\c.exe")])),
        0
    );
}

#[test]
fn star_needs_a_value_so_a_filter_on_it_lets_the_rule_fire() {
    // `*` on an absent (or empty) field: no value, no match, as in the
    // specification and Splunk's `Field=*`.
    check(
        "        ParentImage: '*'",
        &[
            (&[("ParentImage", "C:\\x.exe")], true),
            (&[("ParentImage", "")], false),
            (&[], false),
        ],
    );
    // `contains: ''` collapses to the same `*`.
    check(
        "        CommandLine|contains: ''",
        &[
            (&[("CommandLine", "x")], true),
            (&[("CommandLine", "")], false),
            (&[], false),
        ],
    );
    // `selection and not filter` with `filter: Field: '*'` fires when the
    // event lacks the field.
    let rules = compile(
        "process_creation",
        "    selection:\n        Image|endswith: '\\a.exe'\n    filter:\n        \
         OriginalFileName: '*'\n    condition: selection and not filter\n",
    );
    assert!(hits(&rules, &[("Image", "C:\\a.exe")]));
    assert!(!hits(
        &rules,
        &[("Image", "C:\\a.exe"), ("OriginalFileName", "a.exe")]
    ));
}

#[test]
fn neq_negates_the_whole_item() {
    check(
        "        Image|endswith: '\\a.exe'\n        User|neq:\n            - 'NT AUTHORITY\\SYSTEM'\n            - 'NT AUTHORITY\\LOCAL SERVICE'",
        &[
            (&[("Image", "C:\\a.exe"), ("User", "CORP\\bob")], true),
            (&[("Image", "C:\\a.exe"), ("User", "nt authority\\system")], false),
            (&[("Image", "C:\\a.exe"), ("User", "NT AUTHORITY\\LOCAL SERVICE")], false),
            // Absent is empty, and empty is neither value.
            (&[("Image", "C:\\a.exe")], true),
        ],
    );
    // With other modifiers, and alone in a rule (nothing for the index to
    // look for: the rule runs on every event of its category).
    check(
        "        CommandLine|contains|neq: ' -enc '",
        &[
            (&[("CommandLine", "powershell -enc AAA")], false),
            (&[("CommandLine", "powershell -File x.ps1")], true),
        ],
    );
    check(
        "        ParentImage|neq: null",
        &[(&[("ParentImage", "x")], true), (&[], false)],
    );
}

#[test]
fn time_modifiers_read_utc_time_and_splunk_time() {
    check(
        "        UtcTime|hour: 14\n        UtcTime|minute: 42",
        &[
            (&[("UtcTime", "2019-07-19 14:42:53.277")], true),
            (&[("UtcTime", "2019-07-19 15:42:53.277")], false),
            (&[("UtcTime", "not a time")], false),
            (&[], false),
        ],
    );
    // splunkd hands `_time` as epoch seconds: 2019-07-19 14:42:53.277 UTC.
    for (m, n, want) in [
        ("year", "2019", true),
        ("month", "7", true),
        ("day", "19", true),
        ("week", "29", true),
        ("hour", "14", true),
        ("minute", "42", true),
        ("day", "20", false),
    ] {
        check(
            &format!("        _time|{m}: {n}"),
            &[(&[("_time", "1563547373.277")], want)],
        );
    }
    // A list is any of its values.
    check(
        "        _time|hour:\n            - 22\n            - 23\n            - 0",
        &[
            (&[("_time", "1563577200")], true), // 23:00 UTC
            (&[("_time", "1563547373")], false),
        ],
    );
    assert!(
        skip_reason("    selection:\n        _time|hour: noon\n    condition: selection\n")
            .contains("whole number")
    );
}

#[test]
fn wide_without_base64_is_utf16le_text() {
    // `a\0b\0…`: what pySigma makes of it, and what a Splunk text field
    // would have to hold to match (Sysmon's XML-derived fields never hold
    // NUL, so on Sysmon data this never fires; it loads so the rest of the
    // rule works).
    check(
        "        Details|wide|contains: 'ab'",
        &[
            (&[("Details", "x a\u{0}b\u{0} y")], true),
            (&[("Details", "x ab y")], false),
        ],
    );
    // Wildcards stay wildcards.
    check(
        "        Details|wide: 'a*b'",
        &[
            (&[("Details", "a\u{0}zzb\u{0}")], true),
            (&[("Details", "azzb")], false),
        ],
    );
    // Non-ASCII cannot be matched as text: skipped with the reason.
    assert!(skip_reason(
        "    selection:\n        Details|wide|contains: 'é'\n    condition: selection\n"
    )
    .contains("not text"));
}

#[test]
fn windash_on_more_dashes_and_its_bound() {
    check(
        "        CommandLine|windash|contains: ' -a -b -c -d -e'",
        &[
            (&[("CommandLine", "x /a \u{2013}b -c /d \u{2015}e")], true),
            (&[("CommandLine", "x +a -b -c -d -e")], false),
        ],
    );
    assert!(skip_reason(
        "    selection:\n        CommandLine|windash|contains: ' -a -b -c -d -e -f'\n    condition: selection\n"
    )
    .contains("6 dashes"));
}

/// Rules over one category each, with their own ids (one `Builder`).
fn rules_of(rules: &[(&str, &str)]) -> RuleSet {
    let mut b = Builder::default();
    for (n, (category, detection)) in rules.iter().enumerate() {
        let text = rule_text(category, detection).replace(
            "00000000-0000-0000-0000-000000000001",
            &format!("00000000-0000-0000-0000-0000000001{n:02}"),
        );
        b.add(
            PathBuf::from(format!("r{n}.yml")),
            &text,
            &Filter::default(),
        );
    }
    assert!(b.skipped.is_empty(), "skipped: {:?}", b.skipped);
    b.finish()
}

#[test]
fn remembered_scans_give_what_a_full_scan_gives() {
    // One rule per table on the same field: a value's scan in the table of
    // EventCode 1 must not answer for EventCode 7's.
    let rules = rules_of(&[
        (
            "process_creation",
            "    selection:\n        Image|endswith: '\\whoami.exe'\n        CommandLine|contains: '/all'\n    condition: selection\n",
        ),
        (
            "image_load",
            "    selection:\n        Image|contains: '\\temp\\'\n    condition: selection\n",
        ),
    ]);
    let image = "C:\\Users\\a\\AppData\\Local\\Temp\\whoami.exe";
    let events = [
        event("1", &[("Image", image), ("CommandLine", "whoami /all")]),
        // Same Image, another command line: the verdict is not remembered
        // (CommandLine is read), the Image scan is.
        event("1", &[("Image", image), ("CommandLine", "whoami /user")]),
        event(
            "1",
            &[("Image", image), ("CommandLine", "whoami /ALL /fo csv")],
        ),
        event("7", &[("Image", image), ("ImageLoaded", "x.dll")]),
        event(
            "7",
            &[("Image", "C:\\Windows\\x.exe"), ("ImageLoaded", "y.dll")],
        ),
        event(
            "1",
            &[("Image", "C:\\Windows\\x.exe"), ("CommandLine", "/all")],
        ),
    ];
    let expected = [true, false, true, true, false, false];
    for mut s in [super::Scratch::default(), super::Scratch::forgetful()] {
        let got: Vec<bool> = events
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                rules.matches_with(e, &mut s, &mut out);
                !out.is_empty()
            })
            .collect();
        assert_eq!(got, expected);
    }
}
