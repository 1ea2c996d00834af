//! Behaviour tests for label and field selectors, including property tests for the parsers.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(selector: &str) -> String {
    match LabelSelector::parse(selector) {
        Ok(s) => panic!("{selector:?} parsed as {s}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_every_operator_and_prints_canonically() {
    let sel = LabelSelector::parse(
        " tier in ( web ,db ) , !legacy,env!=prod,app==api, zone notin (),canary,b>3,a<10, x=",
    )
    .expect("valid selector");
    assert_eq!(
        sel.to_string(),
        "a<10,app==api,b>3,canary,env!=prod,!legacy,tier in (db,web),x=,zone notin ()"
    );
    let ops: Vec<Operator> = sel
        .requirements()
        .iter()
        .map(Requirement::operator)
        .collect();
    assert_eq!(
        ops,
        [
            Operator::LessThan,
            Operator::DoubleEquals,
            Operator::GreaterThan,
            Operator::Exists,
            Operator::NotEquals,
            Operator::DoesNotExist,
            Operator::In,
            Operator::Equals,
            Operator::NotIn,
        ]
    );
}

#[test]
fn empty_entries_in_value_sets_mean_the_empty_value() {
    let sel = LabelSelector::parse("k in (a,,b),j in (,c)").expect("valid selector");
    assert_eq!(sel.requirements()[0].values(), ["", "c"]);
    assert_eq!(sel.requirements()[1].values(), ["", "a", "b"]);
    assert!(sel.matches(&labels(&[("k", ""), ("j", "")])));
}

#[test]
fn keywords_are_identifiers_in_key_and_value_position() {
    let sel = LabelSelector::parse("in in (notin),notin=in").expect("valid selector");
    assert!(sel.matches(&labels(&[("in", "notin"), ("notin", "in")])));
}

#[test]
fn matching_follows_upstream_semantics() {
    let set = labels(&[("app", "web"), ("tier", "front"), ("rev", "7")]);
    let check = |s: &str| {
        LabelSelector::parse(s)
            .expect("valid selector")
            .matches(&set)
    };
    assert!(check(""));
    assert!(check("app=web,tier in (front,back)"));
    assert!(check("missing notin (x)"), "notin matches an absent label");
    assert!(check("missing!=x"), "!= matches an absent label");
    assert!(!check("missing in (x)"));
    assert!(check("!missing,app"));
    assert!(check("rev>6,rev<8"));
    assert!(!check("app>1"), "non-integer labels never satisfy gt");
}

#[test]
fn syntax_errors_use_upstream_wording() {
    assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
    assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
    assert_eq!(
        err("=a"),
        "found '=', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(
        err("a b"),
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    assert_eq!(
        err("a in x"),
        "unable to parse requirement: found 'x' expected: '('"
    );
    assert_eq!(
        err("a in (x y)"),
        "unable to parse requirement: found 'y', expected: ',' or ')'"
    );
    assert_eq!(
        err("a>x"),
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}

#[test]
fn invalid_keys_and_values_are_rejected() {
    assert!(err("Bad_=x").starts_with(
        "unable to parse requirement: key: Invalid value: \"Bad_\": name part must consist of alphanumeric characters"
    ));
    assert!(err("a=-x").starts_with(
        "unable to parse requirement: values[0][a]: Invalid value: \"-x\": a valid label must be an empty string"
    ));
    assert!(err(&format!("a={}", "v".repeat(64))).contains("must be no more than 63 characters"));
}

#[test]
fn from_json_converts_match_labels_and_expressions() {
    let sel = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ]
    }))
    .expect("valid selector");
    assert_eq!(sel.to_string(), "app=web,!legacy,tier in (back,front)");
    assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "back"}}})));
    assert!(!sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("tier"), None);
}

#[test]
fn null_selects_nothing_and_empty_selects_everything() {
    let nothing = LabelSelector::from_json(&json!(null)).expect("null is allowed");
    assert!(nothing.matches_nothing() && !nothing.is_empty());
    assert!(!nothing.matches(&labels(&[])));
    let everything = LabelSelector::from_json(&json!({})).expect("{} is allowed");
    assert!(everything.is_empty());
    assert!(everything.matches_object(&json!({"metadata": {}})));
}

#[test]
fn from_json_reports_bad_operators_and_value_sets() {
    let bad_op = LabelSelector::from_json(
        &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
    );
    assert_eq!(
        bad_op.map_err(|e| e.to_string()),
        Err("\"Gt\" is not a valid label selector operator".to_string())
    );
    let empty_in = LabelSelector::from_json(
        &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
    );
    assert_eq!(
        empty_in.map_err(|e| e.to_string()),
        Err("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".to_string())
    );
    assert!(matches!(
        LabelSelector::from_json(&json!({"matchLabels": {"a": 1}})),
        Err(SelectorError::Malformed(_))
    ));
}

#[test]
fn from_set_builds_equality_requirements() {
    let sel = LabelSelector::from_set([("b", "2"), ("a", "1")]);
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert!(LabelSelector::from_set([]).is_empty());
}

#[test]
fn field_selectors_parse_escape_and_sort() {
    let sel = FieldSelector::parse(r"spec.nodeName!=,metadata.name=a\,b\=c\\d,,type==Opaque")
        .expect("valid");
    let reqs = sel.requirements();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (reqs[0].field.as_str(), reqs[0].value.as_str()),
        ("metadata.name", r"a,b=c\d")
    );
    assert_eq!(reqs[1].operator, FieldOperator::NotEquals);
    assert_eq!(reqs[2].operator, FieldOperator::Equals);
    assert_eq!(
        sel.to_string(),
        r"metadata.name=a\,b\=c\\d,spec.nodeName!=,type=Opaque"
    );
    assert_eq!(sel.requires_exact_match("metadata.name"), Some(r"a,b=c\d"));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
}

#[test]
fn field_selector_errors_use_upstream_wording() {
    let e = |s: &str| {
        FieldSelector::parse(s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        e("a=b,name"),
        Err("invalid selector: 'a=b,name'; can't understand 'name'".into())
    );
    assert_eq!(
        e("a=b=c"),
        Err("invalid field selector: unescaped character in value: '='".into())
    );
    assert_eq!(
        e(r"a=\q"),
        Err(r"invalid field selector: invalid escape sequence: \q".into())
    );
    assert_eq!(
        e(r"a=b\"),
        Err(r"invalid field selector: invalid escape sequence: \".into())
    );
    assert!(FieldSelector::parse("").expect("empty is valid").is_empty());
}

#[test]
fn missing_fields_compare_as_empty() {
    let scheduled = json!({"spec": {"nodeName": "n1", "replicas": 3, "paused": false}, "status": {"phase": "Running"}});
    let pending = json!({"spec": {}, "status": {"phase": "Pending"}});
    let unset = FieldSelector::parse("spec.nodeName=").expect("valid");
    let set = FieldSelector::parse("spec.nodeName!=").expect("valid");
    assert!(unset.matches_object(&pending) && !unset.matches_object(&scheduled));
    assert!(set.matches_object(&scheduled) && !set.matches_object(&pending));
    let running = FieldSelector::parse("status.phase=Running,spec.replicas=3,spec.paused=false")
        .expect("valid");
    assert!(running.matches_object(&scheduled));
    assert!(!running.matches(|path| (path != "status.phase").then(|| "x".to_string())));
}

#[test]
fn field_value_renders_scalars_only() {
    let obj =
        json!({"type": "Opaque", "involvedObject": {"kind": "Pod"}, "n": 1.5, "l": [1], "z": null});
    assert_eq!(field_value(&obj, "type").as_deref(), Some("Opaque"));
    assert_eq!(
        field_value(&obj, "involvedObject.kind").as_deref(),
        Some("Pod")
    );
    assert_eq!(field_value(&obj, "n").as_deref(), Some("1.5"));
    assert_eq!(field_value(&obj, "l"), None);
    assert_eq!(field_value(&obj, "z"), None);
    assert_eq!(field_value(&obj, "type.x"), None);
}

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    let key = (
        "([a-z]{1,6}\\.io/)?",
        "[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,8}[a-zA-Z0-9])?",
    )
        .prop_map(|(prefix, name)| format!("{prefix}{name}"));
    let value = "([a-zA-Z0-9]([-a-zA-Z0-9_.]{0,6}[a-zA-Z0-9])?)?";
    let values = prop::collection::btree_set(value, 1..4)
        .prop_map(|set| set.into_iter().collect::<Vec<String>>());
    let op = prop::sample::select(vec![
        Operator::In,
        Operator::NotIn,
        Operator::Equals,
        Operator::DoubleEquals,
        Operator::NotEquals,
        Operator::Exists,
        Operator::DoesNotExist,
        Operator::GreaterThan,
        Operator::LessThan,
    ]);
    (key, op, values, 0u32..1_000_000).prop_map(|(key, op, values, n)| {
        let values = match op {
            Operator::In | Operator::NotIn => values,
            Operator::Exists | Operator::DoesNotExist => Vec::new(),
            Operator::GreaterThan | Operator::LessThan => vec![n.to_string()],
            _ => values.into_iter().take(1).collect(),
        };
        match Requirement::new(&key, op, values) {
            Ok(r) => r,
            Err(e) => panic!("generator produced an invalid requirement: {e}"),
        }
    })
}

proptest! {
    #[test]
    fn label_selector_round_trips_through_its_string_form(
        mut reqs in prop::collection::vec(requirement_strategy(), 0..6)
    ) {
        let text: Vec<String> = reqs.iter().map(ToString::to_string).collect();
        let parsed = LabelSelector::parse(&text.join(","));
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let parsed = parsed.unwrap_or_default();
        reqs.sort_by(|a, b| a.key().cmp(b.key()));
        prop_assert_eq!(parsed.requirements(), reqs.as_slice());
        prop_assert_eq!(LabelSelector::parse(&parsed.to_string()), Ok(parsed));
    }

    #[test]
    fn selector_parsers_never_panic(input in any::<String>()) {
        let _ = LabelSelector::parse(&input);
        let _ = FieldSelector::parse(&input);
    }

    #[test]
    fn field_values_survive_escaping(value in any::<String>()) {
        prop_assert_eq!(unescape_value(&escape_value(&value)), Ok(value));
    }

    #[test]
    fn field_selector_round_trips(
        terms in prop::collection::vec(("[a-z]{1,5}(\\.[a-zA-Z]{1,5}){0,2}", any::<bool>(), any::<String>()), 0..5)
    ) {
        let text: Vec<String> = terms
            .iter()
            .map(|(f, eq, v)| format!("{f}{}{}", if *eq { "==" } else { "!=" }, escape_value(v)))
            .collect();
        let parsed = FieldSelector::parse(&text.join(","));
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let parsed = parsed.unwrap_or_default();
        prop_assert_eq!(parsed.requirements().len(), terms.len());
        prop_assert_eq!(FieldSelector::parse(&parsed.to_string()), Ok(parsed));
    }
}
