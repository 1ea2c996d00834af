//! The decoders of untrusted input (label and field selectors, JSON/merge/strategic patches)
//! run over a corpus of seed inputs kept in `tests/corpus/` plus every truncation and a set of
//! byte mutations of each seed: they must answer `Ok` or a clean error, never panic. Add an
//! input here whenever a bug report shows one that misbehaved.

use ledge_api::patch::{builtin_schema, json_patch, merge_patch, strategic_merge};
use ledge_api::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

/// This package's directory, as the test runner says at run time: a test binary built in a
/// checkout elsewhere that shares the target directory must read this checkout's files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

fn seeds(name: &str) -> Vec<String> {
    let path = format!("{}/tests/corpus/{name}", manifest_dir());
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every prefix of `s` and copies with single characters replaced by syntax characters.
fn mutations(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out: Vec<String> = (0..=chars.len())
        .map(|i| chars[..i].iter().collect())
        .collect();
    for i in 0..chars.len() {
        for sub in ['=', '!', ',', '(', ')', ' ', '\\', '/', '\u{0}', 'é'] {
            let mut c = chars.clone();
            c[i] = sub;
            out.push(c.into_iter().collect());
        }
    }
    out
}

#[test]
fn label_selectors_never_panic() {
    let mut parsed = 0;
    for seed in seeds("label_selectors.txt") {
        for input in mutations(&seed) {
            if let Ok(sel) = LabelSelector::parse(&input) {
                parsed += 1;
                // What parses prints back to something that parses to the same selector.
                let again = LabelSelector::parse(&sel.to_string()).expect("canonical form parses");
                assert_eq!(
                    again.to_string(),
                    sel.to_string(),
                    "round trip of {input:?}"
                );
            }
        }
    }
    assert!(
        parsed > 100,
        "the corpus should exercise the success path too ({parsed})"
    );
}

#[test]
fn field_selectors_never_panic() {
    let obj = serde_json::json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n"}});
    for seed in seeds("field_selectors.txt") {
        for input in mutations(&seed) {
            if let Ok(sel) = FieldSelector::parse(&input) {
                let _ = sel.matches_object(&obj);
            }
        }
    }
}

#[test]
fn patches_never_panic() {
    let schema = builtin_schema("apps", "Deployment");
    for line in seeds("patches.jsonl") {
        let case: Value = serde_json::from_str(&line).expect("corpus lines are JSON");
        let (doc, patch) = (&case["doc"], &case["patch"]);
        let _ = strategic_merge(doc, patch, schema);
        let _ = merge_patch(doc, patch);
        let _ = json_patch(doc, patch);
        // Mutated patch documents: any string that still parses as JSON must not panic.
        for text in mutations(&patch.to_string()) {
            if let Ok(p) = serde_json::from_str::<Value>(&text) {
                let _ = strategic_merge(doc, &p, schema);
                let _ = merge_patch(doc, &p);
                let _ = json_patch(doc, &p);
            }
        }
    }
}
