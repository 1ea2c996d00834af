//! Bodies captured from kubectl 1.32 and 1.33 (protobuf) against what
//! kubectl 1.31 sends as JSON for the same command (tests/capture.py).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn data_dir() -> PathBuf {
    Path::new(&crate::manifest_dir()).join("tests/data")
}

fn read(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(name: &str) -> Value {
    ledge_proto::decode(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The 1.31 JSON, less what legitimately differs from a current decoding.
fn expected(name: &str) -> Value {
    let mut value: Value = serde_json::from_slice(&read(&format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}.json: {e}"));
    strip_null_creation_timestamps(&mut value);
    value
}

/// kubectl 1.31's Go types print `"creationTimestamp": null` for an unset
/// ObjectMeta time; ObjectMeta.creationTimestamp has been `omitzero` since,
/// so today's apiserver (and this decoder) leave it out.
fn strip_null_creation_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("creationTimestamp") == Some(&Value::Null) {
                map.shift_remove("creationTimestamp");
            }
            map.values_mut().for_each(strip_null_creation_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null_creation_timestamps),
        _ => {}
    }
}

/// Every fixture stem that has a kubectl 1.32 protobuf capture.
fn captured() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap_or_else(|e| panic!("tests/data: {e}"))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".pb")?;
            (!stem.ends_with(".133")).then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    names
}

/// Replaces values that depend on when or where a capture ran.
fn normalize_run_specific(name: &str, value: &mut Value) {
    match name {
        // The debugger pod's name ends in a random suffix.
        "debug-node" => value["metadata"]["name"] = json!("node-debugger-node1-*"),
        // kubectl stamps the approval condition with the current time.
        "certificate-approve" => {
            if let Some(conditions) = value["status"]["conditions"].as_array_mut() {
                for condition in conditions {
                    condition["lastUpdateTime"] = json!("*");
                }
            }
        }
        _ => {}
    }
}

/// Compares the serialized text, so member order must match Go's too
/// (serde_json keeps insertion order in this workspace).
fn assert_same(name: &str, got: &Value, want: &Value) {
    let (got_text, want_text) = (got.to_string(), want.to_string());
    if got_text != want_text {
        panic!(
            "{name}: decoded protobuf differs from kubectl's JSON\n--- decoded\n{}\n--- expected\n{}",
            serde_json::to_string_pretty(got).unwrap_or_default(),
            serde_json::to_string_pretty(want).unwrap_or_default()
        );
    }
}

#[test]
fn kubectl_132_protobuf_decodes_to_kubectl_131_json() {
    let names = captured();
    assert!(
        names.len() >= 30,
        "only {} captures in tests/data",
        names.len()
    );
    for name in &names {
        let mut got = decode(&format!("{name}.pb"));
        let mut want = expected(name);
        normalize_run_specific(name, &mut got);
        normalize_run_specific(name, &mut want);
        assert_same(name, &got, &want);
    }
}

#[test]
fn kubectl_133_protobuf_decodes_like_132() {
    for name in captured() {
        let (pb132, pb133) = (format!("{name}.pb"), format!("{name}.133.pb"));
        if !data_dir().join(&pb133).exists() {
            continue;
        }
        if name == "autoscale" {
            continue; // 1.33 autoscales with autoscaling/v2: see below
        }
        let (mut a, mut b) = (decode(&pb132), decode(&pb133));
        normalize_run_specific(&name, &mut a);
        normalize_run_specific(&name, &mut b);
        assert_same(&pb133, &b, &a);
    }
}

#[test]
fn kubectl_133_autoscale_sends_autoscaling_v2() {
    let got = decode("autoscale.133.pb");
    // HorizontalPodAutoscalerStatus.currentMetrics has no omitempty.
    let want = json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 2, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]},
        "status": {"desiredReplicas": 0, "currentMetrics": null}});
    assert_same("autoscale.133.pb", &got, &want);
}
