//! Bad rule input: the load always completes, each problem is reported
//! once with what was wrong, and the valid rules still work.

use std::collections::HashMap;
use std::path::PathBuf;
use sysmonenrich::sigma::{Filter, RuleSet, MAX_RULE_FILE};

fn rule(id: usize, image: &str) -> String {
    format!(
        "title: Generated rule {id}\nid: 10000000-0000-0000-0000-{id:012}\nstatus: test\nlevel: medium\n\
         author: Generator\nlogsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        Image|endswith: '\\{image}'\n        CommandLine|contains: ' -n{id} '\n    \
         condition: selection\n"
    )
}

fn event(image: &str, cl: &str) -> HashMap<String, String> {
    [("EventCode", "1"), ("Image", image), ("CommandLine", cl)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn broken_files_and_missing_dirs_are_reported_once_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("good.yml"), rule(1, "good.exe")).expect("write");
    std::fs::write(d.join("broken.yml"), "title: x\ndetection: [\n  - : :\n").expect("write");
    std::fs::write(d.join("empty.yml"), "").expect("write");
    std::fs::write(d.join("binary.yml"), [0xFFu8, 0xFE, 0x00, 0x41]).expect("write");
    std::fs::write(d.join("big.yml"), vec![b'#'; MAX_RULE_FILE as usize + 1]).expect("write");
    std::fs::write(d.join("notes.txt"), "not a rule").expect("write");
    // A regex that compiles past the size limit.
    let huge = rule(2, "x.exe").replace(
        "CommandLine|contains: ' -n2 '",
        &format!("CommandLine|re: '{}'", "(\\w{50}){50}|".repeat(20) + "end"),
    );
    std::fs::write(d.join("huge_regex.yml"), huge).expect("write");
    std::fs::write(d.join("z_dup.yml"), rule(1, "other.exe")).expect("write");
    let missing = d.join("no-such-dir");
    let report = RuleSet::load(&[d.to_path_buf(), missing.clone()], &Filter::default());

    assert_eq!(report.rules.len(), 1, "only good.yml loads");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].path, missing);
    assert!(report.problems[0].message.contains("does not exist"));
    let reasons: HashMap<String, String> = report
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        reasons.len(),
        report.skipped.len(),
        "each file reported once"
    );
    assert!(reasons["broken.yml"].contains("broken YAML"), "{reasons:?}");
    assert!(reasons["empty.yml"].contains("empty"), "{reasons:?}");
    assert!(reasons["binary.yml"].contains("UTF-8"), "{reasons:?}");
    assert!(reasons["big.yml"].contains("larger than"), "{reasons:?}");
    assert!(
        reasons["huge_regex.yml"].contains("regex too big"),
        "{reasons:?}"
    );
    assert!(reasons["z_dup.yml"].contains("duplicate"), "{reasons:?}");
    assert!(!reasons.contains_key("notes.txt"));
    assert_eq!(
        report
            .skipped_by_reason()
            .iter()
            .map(|g| g.count)
            .sum::<usize>(),
        6
    );

    let mut out = Vec::new();
    report
        .rules
        .matches(&event("C:\\good.exe", "x -n1 y"), &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    report
        .rules
        .matches(&event("C:\\good.exe", "x -n2 y"), &mut out);
    assert!(out.is_empty());
}

#[test]
fn ten_thousand_rules_load_and_select_by_literal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000 {
        let sub = dir.path().join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(
            sub.join(format!("r{i}.yml")),
            rule(i, &format!("tool{}.exe", i % 100)),
        )
        .expect("write");
    }
    let t = std::time::Instant::now();
    let report = RuleSet::load(&[PathBuf::from(dir.path())], &Filter::default());
    eprintln!("10,000 rules loaded in {:?} (debug build)", t.elapsed());
    assert!(report.problems.is_empty() && report.skipped.is_empty());
    assert_eq!(report.rules.len(), 10_000);
    assert_eq!(report.rules.unindexed_count(), 0);
    let mut out = Vec::new();
    report
        .rules
        .matches(&event("C:\\bin\\TOOL42.exe", "run -n4242 now"), &mut out);
    let titles: Vec<&str> = out
        .iter()
        .map(|id| report.rules.rule(*id).title.as_str())
        .collect();
    assert_eq!(titles, ["Generated rule 4242"]);
}
