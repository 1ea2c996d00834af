//! Behaviour tests for JSON patch, merge patch and strategic merge patch.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn smp(group: &str, kind: &str, doc: Value, patch: Value) -> Value {
    match strategic_merge(&doc, &patch, builtin_schema(group, kind)) {
        Ok(v) => v,
        Err(e) => panic!("patch failed: {e}"),
    }
}

fn smp_err(doc: Value, patch: Value) -> PatchError {
    match strategic_merge(&doc, &patch, builtin_schema("", "Pod")) {
        Ok(v) => panic!("patch unexpectedly applied: {v}"),
        Err(e) => e,
    }
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn json_patch_applies_operations_in_order() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
    ]);
    let out = json_patch(&doc, &patch).expect("patch applies");
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
    );
}

#[test]
fn failing_json_patch_test_is_a_clear_422() {
    let err = json_patch(
        &json!({"a": 1}),
        &json!([{"op": "test", "path": "/a", "value": 2}]),
    )
    .expect_err("test must fail");
    assert_eq!(
        err,
        PatchError::TestFailed {
            index: 0,
            path: "/a".into()
        }
    );
    assert_eq!(err.status_code(), 422);
    assert_eq!(
        err.to_string(),
        "json patch operation 0 (test) failed: the value at \"/a\" did not match"
    );
}

#[test]
fn json_patch_reports_bad_documents_and_paths() {
    let bad = json_patch(&json!({}), &json!({"op": "add"})).expect_err("not a list");
    assert_eq!(bad.status_code(), 400);
    let missing =
        json_patch(&json!({}), &json!([{"op": "remove", "path": "/x/y"}])).expect_err("no /x");
    assert!(
        matches!(missing, PatchError::OperationFailed { ref op, .. } if op == "remove"),
        "{missing}"
    );
    assert_eq!(missing.field(), Some("/x/y"));
}

#[test]
fn merge_patch_replaces_lists_and_deletes_nulls() {
    let doc = json!({"data": {"a": "1", "b": "2"}, "list": [1, 2]});
    let out = merge_patch(&doc, &json!({"data": {"b": null, "c": "3"}, "list": [3]}));
    assert_eq!(out, json!({"data": {"a": "1", "c": "3"}, "list": [3]}));
}

#[test]
fn smp_merges_maps_and_deletes_with_null() {
    // The body kubectl's client-side apply sends for a ConfigMap (kube-api.md §1.3).
    let doc =
        json!({"kind": "ConfigMap", "metadata": {"name": "demo"}, "data": {"a": "1", "b": "2"}});
    let patch = json!({"data": {"b": null, "c": "3"}, "metadata": {"annotations": {"x": "y"}}});
    let out = smp("", "ConfigMap", doc, patch);
    assert_eq!(
        out,
        json!({"kind": "ConfigMap", "metadata": {"name": "demo", "annotations": {"x": "y"}}, "data": {"a": "1", "c": "3"}})
    );
}

#[test]
fn deployment_apply_body_from_kubectl() {
    let doc = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "busybox"},
        ]}}}
    });
    let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"new"}},
     "spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"side"}],
      "containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"C"}],
                     "env":[{"name":"C","value":"3"},{"$patch":"delete","name":"B"}],
                     "image":"nginx:2","name":"app"}]}}}});
    let out = smp("apps", "Deployment", doc, patch);
    assert_eq!(
        out,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:2", "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]},
                {"name": "side", "image": "busybox"},
            ]}}}
        })
    );
}

#[test]
fn lists_without_strategy_are_replaced_and_cleaned() {
    let doc = pod(json!([{"name": "c", "args": ["a", "b"]}]));
    let out = smp(
        "",
        "Pod",
        doc,
        json!({"spec": {"containers": [{"name": "c", "args": ["z"]}], "tolerations": [{"key": "k", "value": null}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "args": ["z"]}])
    );
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "k"}]));
}

#[test]
fn keyed_lists_merge_and_new_elements_go_first() {
    let doc = pod(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
    let out = smp(
        "",
        "Pod",
        doc,
        json!({"spec": {"containers": [{"name": "b", "image": "y2"}, {"name": "n", "image": "z"}]}}),
    );
    // Upstream order: patch elements in patch order, server-only "a" ahead of "b" (live order).
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y2"}, {"name": "n", "image": "z"}])
    );
    let doc = pod(json!([{"name": "a"}, {"name": "b"}]));
    let out = smp(
        "",
        "Pod",
        doc,
        json!({"spec": {"containers": [{"name": "n"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "n"}, {"name": "a"}, {"name": "b"}])
    );
}

#[test]
fn list_element_directives() {
    let doc = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "a", "dup": true}]));
    let deleted = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
    );
    assert_eq!(
        deleted["spec"]["containers"],
        json!([{"name": "b"}]),
        "all duplicates go"
    );
    let replaced = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"spec": {"containers": [{"name": "z", "x": null}, {"$patch": "replace"}]}}),
    );
    assert_eq!(replaced["spec"]["containers"], json!([{"name": "z"}]));
    let doc = pod(json!([{"name": "a"}, {"name": "b"}]));
    let merged = smp(
        "",
        "Pod",
        doc,
        json!({"spec": {"containers": [{"name": "b", "$patch": "merge", "image": "i"}]}}),
    );
    assert_eq!(
        merged["spec"]["containers"],
        json!([{"name": "a"}, {"name": "b", "image": "i"}])
    );
}

#[test]
fn map_directives() {
    let doc = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {}});
    let replaced = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    );
    assert_eq!(replaced["metadata"]["labels"], json!({"c": "3"}));
    let deleted = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    );
    assert_eq!(deleted["metadata"]["labels"], json!({}));
    let absent = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"metadata": {"annotations": {"$patch": "delete"}}}),
    );
    assert!(absent["metadata"].get("annotations").is_none());
    let merged = smp(
        "",
        "Pod",
        doc.clone(),
        json!({"metadata": {"labels": {"$patch": "merge", "c": "3"}}}),
    );
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"a": "1", "b": "2", "c": "3"})
    );
    let err = smp_err(doc, json!({"metadata": {"labels": {"$patch": "nuke"}}}));
    assert_eq!(err.to_string(), "metadata.labels: unknown patch type: nuke");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn retain_keys_switches_deployment_strategy() {
    let doc =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp("apps", "Deployment", doc.clone(), patch);
    assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    let bad = strategic_merge(
        &doc,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        builtin_schema("apps", "Deployment"),
    );
    assert!(
        matches!(bad, Err(PatchError::BadDirective { ref field, .. }) if field == "spec.strategy"),
        "{bad:?}"
    );
}

#[test]
fn finalizers_are_a_set_and_can_be_deleted() {
    let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
    let union = smp(
        "",
        "ConfigMap",
        doc.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
    );
    assert_eq!(union["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let removed = smp(
        "",
        "ConfigMap",
        doc.clone(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}),
    );
    assert_eq!(removed["metadata"]["finalizers"], json!(["b"]));
    let none = smp(
        "",
        "ConfigMap",
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(
        none,
        json!({"metadata": {}}),
        "deleting from a missing list does not create it"
    );
    let bad = strategic_merge(
        &doc,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        builtin_schema("", "ConfigMap"),
    );
    assert!(matches!(bad, Err(PatchError::BadDirective { .. })));
}

#[test]
fn set_element_order_interleaves_server_only_items() {
    // "x" is not in the order list: it stays after "p" and before "r", as in the live list.
    let doc = pod(json!([{"name": "p"}, {"name": "q"}, {"name": "x"}, {"name": "r"}]));
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "q"}, {"name": "p"}, {"name": "r"}]}});
    let out = smp("", "Pod", doc.clone(), patch);
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "q"}, {"name": "p"}, {"name": "x"}, {"name": "r"}])
    );
    // Upstream only moves a server-only element ahead of an ordered one that follows it live.
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "r"}, {"name": "q"}, {"name": "p"}]}});
    let out = smp("", "Pod", doc, patch);
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "x"}, {"name": "r"}, {"name": "q"}, {"name": "p"}])
    );
    let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let out = smp(
        "",
        "Pod",
        doc,
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "zz"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c", "a"]));
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let err = smp_err(
        pod(json!([{"name": "a"}, {"name": "b"}])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                        "containers": [{"name": "b", "image": "i"}, {"name": "a", "image": "j"}]}}),
    );
    assert_eq!(
        err,
        PatchError::OrderMismatch {
            field: "spec.containers".into()
        }
    );
}

#[test]
fn malformed_lists_are_rejected_with_the_field() {
    let err = smp_err(
        pod(json!([{"name": "a"}])),
        json!({"spec": {"containers": [{"image": "x"}]}}),
    );
    assert_eq!(
        err.to_string(),
        "spec.containers[0]: map {\"image\":\"x\"} does not contain declared merge key: name"
    );
    assert_eq!(err.status_code(), 422);
    let err = smp_err(
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": [1]}}),
    );
    assert_eq!(
        err,
        PatchError::MixedList {
            field: "metadata.finalizers".into()
        }
    );
    let err = smp_err(
        json!({"metadata": {"finalizers": []}}),
        json!({"metadata": {"finalizers": [["a"]]}}),
    );
    assert_eq!(
        err,
        PatchError::ListOfLists {
            field: "metadata.finalizers".into()
        }
    );
    assert!(strategic_merge(&json!({}), &json!([]), builtin_schema("", "Pod")).is_err());
}

#[test]
fn new_content_has_directives_resolved() {
    let doc = pod(json!([{"name": "a"}]));
    let patch = json!({"spec": {"containers": [{"name": "b", "$setElementOrder/env": [{"name": "X"}],
        "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}], "image": null}]}});
    let out = smp("", "Pod", doc, patch);
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b", "env": [{"name": "X", "value": "1"}]}, {"name": "a"}])
    );
}

#[test]
fn builtin_merge_keys_in_other_kinds() {
    let owners = smp(
        "",
        "ConfigMap",
        json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
        json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}, {"uid": "2", "name": "b"}]}}),
    );
    assert_eq!(
        owners["metadata"]["ownerReferences"],
        json!([{"uid": "1", "name": "a", "controller": true}, {"uid": "2", "name": "b"}])
    );
    let svc = smp(
        "",
        "Service",
        json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}}),
        json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443}])
    );
    let node = smp(
        "",
        "Node",
        json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}}),
        json!({"spec": {"podCIDRs": ["fd00::/64"]}}),
    );
    assert_eq!(
        node["spec"]["podCIDRs"],
        json!(["fd00::/64", "10.0.0.0/24"])
    );
    let status = smp(
        "",
        "Pod",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    assert_eq!(
        status["status"]["conditions"][0],
        json!({"type": "Ready", "status": "True"})
    );
}

/// JSON trees of nested maps with scalar leaves (no lists, no `$` keys).
fn map_tree(with_nulls: bool) -> impl Strategy<Value = Value> {
    let leaf = if with_nulls {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from)
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from)
        ]
        .boxed()
    };
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(("[a-d]{1,2}", inner), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
    })
    .prop_map(|v| if v.is_object() { v } else { json!({"k": v}) })
}

/// Arbitrary JSON built from Kubernetes-ish keys and directive words, to shake the SMP code.
fn directive_soup() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/env",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder",
        "spec",
        "metadata",
        "containers",
        "env",
        "finalizers",
        "name",
        "value",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        prop::sample::select(vec!["replace", "delete", "merge", "a", "b", "name"])
            .prop_map(Value::from),
        any::<u8>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..4).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #[test]
    fn merge_patch_with_empty_object_is_identity(inner in directive_soup()) {
        // RFC 7386 turns a non-object target into {} first, so identity holds for objects.
        let doc = json!({"k": inner});
        prop_assert_eq!(merge_patch(&doc, &json!({})), doc);
    }

    #[test]
    fn smp_equals_merge_patch_on_maps_without_lists(doc in map_tree(false), patch in map_tree(true)) {
        let expected = merge_patch(&doc, &patch);
        prop_assert_eq!(strategic_merge(&doc, &patch, builtin_schema("", "ConfigMap")), Ok(expected));
    }

    #[test]
    fn smp_never_panics(doc in directive_soup(), patch in directive_soup()) {
        let _ = strategic_merge(&doc, &patch, builtin_schema("", "Pod"));
        let _ = strategic_merge(&doc, &json!({"spec": patch}), builtin_schema("", "Pod"));
    }
}
