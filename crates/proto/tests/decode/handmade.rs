//! Hand-built bodies for kinds and field shapes the kubectl captures do not
//! reach (controllers and client-go programs send these). Each expected JSON
//! is written from the upstream Go types: what `encoding/json` prints for the
//! struct the protobuf decodes into.

use serde_json::{Value, json};

use crate::pb::{b, body, kv, m, meta, s, v};

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;

fn decode(body: &[u8]) -> Value {
    ledge_proto::decode(body).unwrap_or_else(|e| panic!("{e}"))
}

fn error(body: &[u8]) -> ledge_proto::DecodeError {
    match ledge_proto::decode(body) {
        Ok(v) => panic!("decoded to {v}"),
        Err(e) => e,
    }
}

/// Compares serialized text, so member order (Go field order, sorted map
/// keys) is checked too.
fn assert_json(got: &Value, want: &Value) {
    assert_eq!(got.to_string(), want.to_string());
}

#[test]
fn eviction_carries_delete_options() {
    let options = m(
        2,
        vec![
            v(1, 0),
            m(2, vec![s(1, "u1")]),
            s(4, "Foreground"),
            s(5, "All"),
        ],
    );
    let got = decode(&body(
        "policy/v1",
        "Eviction",
        vec![meta("p", "default"), options],
    ));
    assert_json(
        &got,
        &json!({"kind": "Eviction", "apiVersion": "policy/v1",
            "metadata": {"name": "p", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u1"},
                "propagationPolicy": "Foreground", "dryRun": ["All"]}}),
    );
}

#[test]
fn delete_options_decode_under_any_group_version() {
    for api_version in ["v1", "apps/v1", "batch/v1"] {
        let got = decode(&body(
            api_version,
            "DeleteOptions",
            vec![s(4, "Background"), v(3, 1)],
        ));
        assert_json(
            &got,
            &json!({"kind": "DeleteOptions", "apiVersion": api_version,
                "orphanDependents": true, "propagationPolicy": "Background"}),
        );
    }
}

#[test]
fn lease_times_have_microseconds() {
    let spec = m(
        2,
        vec![
            s(1, "node-a"),
            v(2, 15),
            m(3, vec![v(1, T0), v(2, 123_456_789)]),
            m(4, vec![v(1, T0 + 15)]),
            v(5, 0),
        ],
    );
    let got = decode(&body(
        "coordination.k8s.io/v1",
        "Lease",
        vec![meta("l", "kube-system"), spec],
    ));
    assert_json(
        &got["spec"],
        &json!({"holderIdentity": "node-a", "leaseDurationSeconds": 15,
            "acquireTime": "2024-01-01T00:00:00.123456Z",
            "renewTime": "2024-01-01T00:00:15.000000Z", "leaseTransitions": 0}),
    );
}

#[test]
fn events_v1_event_prints_go_zero_values() {
    let got = decode(&body(
        "events.k8s.io/v1",
        "Event",
        vec![
            meta("e", "default"),
            m(2, vec![v(1, T0), v(2, 5_000)]),
            m(3, vec![v(1, 2), m(2, vec![v(1, T0 + 60)])]),
            s(4, "kubelet"),
            s(5, "node-a"),
            s(6, "Pulling"),
            s(7, "Pulled"),
            m(8, vec![s(1, "Pod"), s(3, "p")]),
            s(10, "pulled image"),
            s(11, "Normal"),
        ],
    ));
    // deprecatedSource is a struct value and the deprecated times are
    // metav1.Time values: omitempty does not drop them.
    assert_json(
        &got,
        &json!({"kind": "Event", "apiVersion": "events.k8s.io/v1",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000005Z",
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:01:00.000000Z"},
            "reportingController": "kubelet", "reportingInstance": "node-a",
            "action": "Pulling", "reason": "Pulled", "regarding": {"kind": "Pod", "name": "p"},
            "note": "pulled image", "type": "Normal", "deprecatedSource": {},
            "deprecatedFirstTimestamp": null, "deprecatedLastTimestamp": null}),
    );
}

#[test]
fn core_event_prints_unset_event_time_as_null() {
    let got = decode(&body(
        "v1",
        "Event",
        vec![
            meta("p.1", "default"),
            m(2, vec![s(1, "Pod"), s(2, "default"), s(3, "p")]),
            s(3, "Started"),
            m(5, vec![s(1, "kubelet"), s(2, "node-a")]),
            m(6, vec![v(1, T0)]),
            v(8, 1),
            s(9, "Normal"),
        ],
    ));
    assert_json(
        &got,
        &json!({"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "p.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"},
            "reason": "Started", "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": null, "count": 1,
            "type": "Normal", "eventTime": null, "reportingComponent": "", "reportingInstance": ""}),
    );
}

#[test]
fn binding_and_scale() {
    let got = decode(&body(
        "v1",
        "Binding",
        vec![
            meta("p", "default"),
            m(2, vec![s(1, "Node"), s(3, "node-a")]),
        ],
    ));
    assert_json(
        &got,
        &json!({"kind": "Binding", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "default"},
            "target": {"kind": "Node", "name": "node-a"}}),
    );
    let got = decode(&body(
        "autoscaling/v1",
        "Scale",
        vec![meta("web", "default"), m(2, vec![v(1, 3)])],
    ));
    assert_json(&got["spec"], &json!({"replicas": 3}));
    assert_json(&got["status"], &json!({"replicas": 0}));
}

#[test]
fn pod_inlines_embedded_structs() {
    let limits = m(1, vec![s(1, "cpu"), m(2, vec![s(1, "500m")])]);
    let requests = m(2, vec![s(1, "memory"), m(2, vec![s(1, "1Gi")])]);
    let probe = m(
        10,
        vec![
            m(
                1,
                vec![m(
                    2,
                    vec![s(1, "/healthz"), m(2, vec![v(1, 1), s(3, "http")])],
                )],
            ),
            v(4, 10),
        ],
    );
    let container = m(
        2,
        vec![
            s(1, "c"),
            s(2, "nginx"),
            m(8, vec![limits, requests]),
            probe,
        ],
    );
    let volume = m(
        1,
        vec![
            s(1, "cfg"),
            m(
                2,
                vec![m(19, vec![m(1, vec![s(1, "app-config")]), v(3, 420)])],
            ),
        ],
    );
    let ephemeral = m(
        34,
        vec![m(1, vec![s(1, "dbg"), s(2, "busybox")]), s(2, "c")],
    );
    // supplementalGroups [1000, 2000] packed, which gogo accepts too.
    let security = m(14, vec![b(4, &[0xe8, 0x07, 0xd0, 0x0f])]);
    let spec = m(2, vec![container, volume, ephemeral, security]);
    let got = decode(&body("v1", "Pod", vec![meta("p", "default"), spec]));
    assert_json(
        &got,
        &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420}}],
                "containers": [{"name": "c", "image": "nginx",
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "1Gi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}}],
                "ephemeralContainers": [{"name": "dbg", "image": "busybox", "resources": {},
                    "targetContainerName": "c"}],
                "securityContext": {"supplementalGroups": [1000, 2000]}},
            "status": {}}),
    );
}

#[test]
fn object_meta_in_full() {
    let metadata = m(
        1,
        vec![
            s(1, "cm"),
            s(3, "default"),
            v(7, 2),
            m(8, vec![v(1, T0)]),
            m(9, vec![v(1, T0 + 60)]),
            v(10, 30),
            // Sent out of order: Go prints map keys sorted.
            kv(11, "z", "2"),
            kv(11, "a", "1"),
            m(
                13,
                vec![
                    s(5, "apps/v1"),
                    s(1, "ReplicaSet"),
                    s(3, "rs"),
                    s(4, "u"),
                    v(6, 1),
                ],
            ),
            s(14, "x"),
            m(
                17,
                vec![
                    s(1, "kubectl"),
                    s(2, "Apply"),
                    s(3, "v1"),
                    m(4, vec![v(1, T0)]),
                    s(6, "FieldsV1"),
                    m(7, vec![s(1, r#"{"f:data":{}}"#)]),
                ],
            ),
        ],
    );
    let data = kv(2, "k", "v");
    let binary = m(3, vec![s(1, "raw"), b(2, &[0x00, 0xff])]);
    // An entry without a value: gogo stores []byte{}, printed as "".
    let empty = m(3, vec![s(1, "empty")]);
    let got = decode(&body(
        "v1",
        "ConfigMap",
        vec![metadata, data, binary, empty, v(4, 1)],
    ));
    assert_json(
        &got,
        &json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {
                "name": "cm", "namespace": "default", "generation": 2,
                "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-01T00:01:00Z",
                "deletionGracePeriodSeconds": 30, "labels": {"a": "1", "z": "2"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "u", "controller": true}],
                "finalizers": ["x"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                    "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {}}}]},
            "immutable": true, "data": {"k": "v"}, "binaryData": {"empty": "", "raw": "AP8="}}),
    );
}

#[test]
fn node_with_taints_capacity_and_value_structs() {
    let quantity = |k: &str, q: &str| m(1, vec![s(1, k), m(2, vec![s(1, q)])]);
    let got = decode(&body(
        "v1",
        "Node",
        vec![
            m(1, vec![s(1, "node-a")]),
            m(
                2,
                vec![
                    v(4, 1),
                    m(5, vec![s(1, "k"), s(3, "NoSchedule"), m(4, vec![v(1, T0)])]),
                ],
            ),
            m(3, vec![quantity("memory", "8Gi"), quantity("cpu", "4")]),
        ],
    ));
    let empty_info = json!({"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
        "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "", "kubeProxyVersion": "",
        "operatingSystem": "", "architecture": ""});
    assert_json(
        &got,
        &json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-a"},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule",
                "timeAdded": "2024-01-01T00:00:00Z"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi"},
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}, "nodeInfo": empty_info}}),
    );
}

#[test]
fn endpoint_slice_pointers_and_null_lists() {
    let endpoint = m(
        2,
        vec![s(1, "10.0.0.1"), m(2, vec![v(1, 1)]), s(6, "node-a")],
    );
    let port = m(3, vec![s(1, "http"), s(2, "TCP"), v(3, 80)]);
    let got = decode(&body(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        vec![meta("s", "default"), s(4, "IPv4"), endpoint, port],
    ));
    assert_json(
        &got,
        &json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "node-a"}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
    );
    // endpoints and ports have no omitempty: nil slices print as null.
    let got = decode(&body(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        vec![s(4, "IPv4")],
    ));
    assert_json(
        &got,
        &json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": {},
            "addressType": "IPv4", "endpoints": null, "ports": null}),
    );
}

#[test]
fn stateful_set_with_claim_templates_and_percent() {
    let claim = m(
        4,
        vec![
            m(1, vec![s(1, "data")]),
            m(
                2,
                vec![
                    s(1, "ReadWriteOnce"),
                    m(
                        2,
                        vec![m(2, vec![s(1, "storage"), m(2, vec![s(1, "1Gi")])])],
                    ),
                ],
            ),
        ],
    );
    let strategy = m(
        7,
        vec![
            s(1, "RollingUpdate"),
            m(2, vec![v(1, 0), m(2, vec![v(1, 1), s(3, "50%")])]),
        ],
    );
    let spec = m(2, vec![v(1, 3), claim, s(5, "db"), strategy]);
    let got = decode(&body(
        "apps/v1",
        "StatefulSet",
        vec![meta("db", "default"), spec],
    ));
    assert_json(
        &got["spec"],
        &json!({"replicas": 3, "selector": null, "template": {"metadata": {}, "spec": {"containers": null}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}, "status": {}}],
            "serviceName": "db",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": "50%"}}}),
    );
    assert_json(
        &got["status"],
        &json!({"replicas": 0, "availableReplicas": 0}),
    );
}

#[test]
fn raw_extension_embeds_json() {
    let data = m(2, vec![b(1, br#"{"spec":{"template":{}}}"#)]);
    let got = decode(&body(
        "apps/v1",
        "ControllerRevision",
        vec![meta("r", "default"), data, v(3, 4)],
    ));
    assert_json(&got["data"], &json!({"spec": {"template": {}}}));
    assert_eq!(got["revision"], 4);
    let got = decode(&body(
        "apps/v1",
        "ControllerRevision",
        vec![meta("r", "default")],
    ));
    assert_json(
        &got,
        &json!({"kind": "ControllerRevision", "apiVersion": "apps/v1",
            "metadata": {"name": "r", "namespace": "default"}, "data": null, "revision": 0}),
    );
}

#[test]
fn secret_bytes_are_base64_and_bad_utf8_is_replaced() {
    let got = decode(&body(
        "v1",
        "Secret",
        vec![
            meta("s", "default"),
            m(2, vec![s(1, "bin"), b(2, &[0, 255, 1])]),
            m(4, vec![s(1, "plain"), b(2, &[b'a', 0xff])]),
            s(3, "Opaque"),
        ],
    ));
    assert_json(
        &got,
        &json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "namespace": "default"},
            "data": {"bin": "AP8B"}, "stringData": {"plain": "a\u{fffd}"}, "type": "Opaque"}),
    );
}

#[test]
fn wire_details_match_gogo() {
    // Unknown fields (newer clients) are skipped, at the top and nested.
    let plain = decode(&body("v1", "ConfigMap", vec![meta("cm", "ns")]));
    let extra = decode(&body(
        "v1",
        "ConfigMap",
        vec![
            m(1, vec![s(1, "cm"), s(3, "ns"), v(99, 7)]),
            s(98, "future"),
        ],
    ));
    assert_eq!(plain, extra);
    // A message field sent twice is merged, as protobuf specifies.
    let split = decode(&body(
        "v1",
        "ConfigMap",
        vec![m(1, vec![s(1, "cm")]), m(1, vec![s(3, "ns")])],
    ));
    assert_eq!(plain, split);
    // Negative and oversized int32 varints are truncated like Go's int32(v).
    let got = decode(&body("apps/v1", "Deployment", vec![m(2, vec![v(1, -1)])]));
    assert_eq!(got["spec"]["replicas"], -1);
    let got = decode(&body(
        "apps/v1",
        "Deployment",
        vec![m(2, vec![v(1, (1 << 32) + 5)])],
    ));
    assert_eq!(got["spec"]["replicas"], 5);
    // Scalars: the last occurrence wins.
    let got = decode(&body(
        "v1",
        "ConfigMap",
        vec![m(1, vec![s(1, "a"), s(1, "b")])],
    ));
    assert_eq!(got["metadata"]["name"], "b");
}

#[test]
fn errors_name_the_field_path() {
    let port = m(6, vec![s(3, "80")]);
    let pod_spec = m(2, vec![m(2, vec![s(1, "c"), port])]);
    let bad = body(
        "apps/v1",
        "Deployment",
        vec![m(2, vec![m(3, vec![pod_spec])])],
    );
    assert_eq!(
        error(&bad).to_string(),
        "cannot decode apps/v1 Deployment from protobuf at \
         spec.template.spec.containers[0].ports[0].containerPort: \
         wrong wire type length-delimited, expected varint"
    );
    let limits = m(1, vec![s(1, "cpu"), m(2, vec![s(1, "lots")])]);
    let bad = body(
        "v1",
        "Pod",
        vec![m(2, vec![m(2, vec![s(1, "c"), m(8, vec![limits])])])],
    );
    let err = error(&bad);
    assert!(!err.is_unsupported());
    assert!(
        err.to_string().starts_with(
            "cannot decode v1 Pod from protobuf at spec.containers[0].resources.limits[cpu]: \
             quantity \"lots\" does not match"
        ),
        "{err}"
    );
    let truncated = body("v1", "ConfigMap", vec![b(1, &[0x0a, 0x05, b'a'])]);
    assert_eq!(
        error(&truncated).to_string(),
        "cannot decode v1 ConfigMap from protobuf at metadata: unexpected end of data"
    );
}

#[test]
fn unsupported_input_says_send_json() {
    for (api_version, kind) in [("apps/v1beta1", "Deployment"), ("example.com/v1", "Widget")] {
        let err = error(&body(api_version, kind, Vec::new()));
        assert!(err.is_unsupported());
        assert_eq!(
            err.to_string(),
            format!("unsupported kind {api_version} {kind} in a protobuf body; send JSON instead")
        );
    }
    let cbor = m(2, vec![b(1, &[0xd9, 0xd9, 0xf7, 0xa0])]);
    let err = error(&body("apps/v1", "ControllerRevision", vec![cbor]));
    assert!(err.is_unsupported(), "{err}");
    assert_eq!(
        error(b"{\"kind\":\"ConfigMap\"}").to_string(),
        r#"protobuf body is missing the "k8s\x00" prefix"#
    );
}

#[test]
fn every_kind_the_brief_names_is_supported() {
    let wanted = [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "Endpoints"),
        ("v1", "Event"),
        ("v1", "Node"),
        ("v1", "PodTemplate"),
        ("v1", "Binding"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "StatefulSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("coordination.k8s.io/v1", "Lease"),
        ("policy/v1", "PodDisruptionBudget"),
        ("policy/v1", "Eviction"),
        ("autoscaling/v1", "Scale"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("node.k8s.io/v1", "RuntimeClass"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("events.k8s.io/v1", "Event"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authorization.k8s.io/v1", "SubjectAccessReview"),
        ("networking.k8s.io/v1", "Ingress"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("apps/v1", "DeleteOptions"),
    ];
    for (api_version, kind) in wanted {
        assert!(
            ledge_proto::is_supported(api_version, kind),
            "{api_version} {kind}"
        );
    }
    assert!(ledge_proto::supported_kinds().count() > 100);
}
