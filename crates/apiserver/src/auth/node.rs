//! What a node may do: upstream's Node authorizer (`plugin/pkg/auth/authorizer/node`) and the
//! NodeRestriction admission plugin (`plugin/pkg/admission/noderestriction`) folded into one
//! decision, for users named `system:node:<node>` in the group `system:nodes` — the identity of
//! a ledge agent's client certificate.
//!
//! Upstream decides "which secrets may this node read" from a graph of pods, nodes and what they
//! reference; ledge asks the watch cache the same question at request time (the pods of the
//! namespace bound to the node, and their references), through [`Graph`] so the rules are tested
//! without a server. What lives here is the decision only; the 403 it turns into is built in
//! [`super::authorize`].
//!
//! Departures from upstream: a node may list and watch pods only with the field selector
//! `spec.nodeName=<node>` and get only the pods bound to it (upstream's `system:node` role lets
//! a node read every pod); it may list and watch the Leases of `kube-node-lease`; it may get
//! events by name (the shared event recorder reads an event before counting a repeat); mirror
//! pods do not exist, so a node creates no pods.

use std::sync::Arc;

use ledge_api::Pointer as _;
use ledge_api::selector::FieldSelector;
use serde_json::Value;

use super::User;
use crate::cache::Cache;
use crate::http::request::{RequestInfo, Verb};

/// The group every node's certificate carries.
pub const GROUP: &str = "system:nodes";

/// The user-name prefix of node identities.
pub const USER_PREFIX: &str = "system:node:";

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Whether the user is in the node group (whatever its name says).
pub fn is_node(user: &User) -> bool {
    user.groups.iter().any(|g| g == GROUP)
}

/// The node a user speaks for: `system:node:<node>` in `system:nodes` (upstream
/// `NodeIdentity`); `None` for anyone else, and for a member of the group without a node name.
pub fn node_name(user: &User) -> Option<&str> {
    user.name
        .strip_prefix(USER_PREFIX)
        .filter(|n| !n.is_empty())
        .filter(|_| is_node(user))
}

/// The cluster state the decision reads: pods by name and by namespace.
pub trait Graph {
    /// One pod, if it exists.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
    /// Every pod of a namespace.
    fn pods(&self, namespace: &str) -> Vec<Arc<Value>>;
}

impl Graph for Cache {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.get(&format!("/registry/core/pods/{namespace}/{name}"))
    }

    fn pods(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.list(&format!("/registry/core/pods/{namespace}/"), None)
            .items
    }
}

/// Whether deciding about this request reads pods (so the cache must first catch up).
pub fn needs_graph(info: &RequestInfo) -> bool {
    info.group.is_empty()
        && matches!(
            info.resource.as_str(),
            "pods" | "secrets" | "configmaps" | "serviceaccounts"
        )
}

/// Whether deciding about this request needs the `metadata.name` of its body (creates of
/// Nodes and Leases, whose names are not in the path).
pub fn needs_body_name(info: &RequestInfo) -> bool {
    info.verb == Verb::Create
        && info.subresource.is_none()
        && matches!(
            (info.group.as_str(), info.resource.as_str()),
            ("", "nodes") | ("coordination.k8s.io", "leases")
        )
}

/// A node's request, as the decision needs it.
pub struct NodeRequest<'a> {
    /// The routed request.
    pub info: &'a RequestInfo,
    /// The `fieldSelector` query parameter.
    pub field_selector: Option<&'a str>,
    /// For a create: the `metadata.name` of the body.
    pub body_name: Option<&'a str>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 403; the reason, when there is one, follows upstream's message.
    Deny(Option<String>),
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::Deny(Some(reason.into()))
}

fn allow_if(ok: bool, reason: impl FnOnce() -> String) -> Decision {
    if ok {
        Decision::Allow
    } else {
        Decision::Deny(Some(reason()))
    }
}

fn no_relationship(node: &str) -> String {
    format!("no relationship found between node '{node}' and this object")
}

/// May `node` make this request?
pub fn decide(node: &str, req: &NodeRequest<'_>, graph: &dyn Graph) -> Decision {
    let info = req.info;
    let read = matches!(info.verb, Verb::Get | Verb::List | Verb::Watch);
    let plain = info.subresource.is_none();
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "nodes") => nodes(node, req),
        ("coordination.k8s.io", "leases") => lease(node, req),
        ("", "pods") => pods(node, req, graph),
        ("", "secrets" | "configmaps" | "serviceaccounts") => referenced(node, info, graph),
        ("", "services" | "endpoints" | "namespaces")
        | ("discovery.k8s.io", "endpointslices")
        | ("node.k8s.io", "runtimeclasses")
            if read && plain =>
        {
            Decision::Allow
        }
        // Upstream's `system:node` role has no `get` on events; ledge's event recorder reads an
        // event by name before counting a repeat, so a node may get (not list) them.
        ("", "events") | ("events.k8s.io", "events")
            if plain
                && matches!(
                    info.verb,
                    Verb::Create | Verb::Update | Verb::Patch | Verb::Get
                ) =>
        {
            Decision::Allow
        }
        // Certificate renewal, as `system:node` and `system:node-bootstrapper` allow.
        ("certificates.k8s.io", "certificatesigningrequests")
            if plain && (read || info.verb == Verb::Create) =>
        {
            Decision::Allow
        }
        _ => Decision::Deny(None),
    }
}

/// Every Node may be read; only its own may be written (NodeRestriction).
fn nodes(node: &str, req: &NodeRequest<'_>) -> Decision {
    let info = req.info;
    let status = info.subresource.as_deref() == Some("status");
    if !(info.subresource.is_none() || status) {
        return Decision::Deny(None);
    }
    let target = match info.verb {
        Verb::Get | Verb::List | Verb::Watch => return Decision::Allow,
        Verb::Create if !status => req.body_name,
        Verb::Update | Verb::Patch => info.name.as_deref(),
        Verb::Delete if !status => info.name.as_deref(),
        _ => return Decision::Deny(None),
    };
    let target = target.unwrap_or("");
    allow_if(target == node, || {
        format!("node {node:?} is not allowed to modify node {target:?}")
    })
}

/// Its own Lease in `kube-node-lease` (upstream `authorizeLease`); ledge also lets a node list
/// and watch that namespace's Leases.
fn lease(node: &str, req: &NodeRequest<'_>) -> Decision {
    let info = req.info;
    if info.namespace.as_deref() != Some(LEASE_NAMESPACE) {
        return deny(format!(
            "can only access leases in the {LEASE_NAMESPACE} namespace"
        ));
    }
    let name = match info.verb {
        _ if info.subresource.is_some() => None,
        Verb::List | Verb::Watch => return Decision::Allow,
        Verb::Create => Some(req.body_name.unwrap_or("")),
        Verb::Get | Verb::Update | Verb::Patch | Verb::Delete => info.name.as_deref(),
        Verb::DeleteCollection => None,
    };
    let Some(name) = name else {
        return deny("can only get, list, watch, create, update, patch, or delete a node lease");
    };
    allow_if(name == node, || {
        "can only access node lease with the same name as the requesting node".into()
    })
}

fn bound_to(pod: &Value, node: &str) -> bool {
    pod.at("/spec/nodeName").and_then(Value::as_str) == Some(node)
}

/// The node's own pods: read, status writes, deletion and eviction.
fn pods(node: &str, req: &NodeRequest<'_>, graph: &dyn Graph) -> Decision {
    let info = req.info;
    let sub = info.subresource.as_deref();
    if matches!(info.verb, Verb::List | Verb::Watch) && sub.is_none() {
        let selected = req
            .field_selector
            .and_then(|s| FieldSelector::parse(s).ok())
            .is_some_and(|s| s.requires_exact_match("spec.nodeName") == Some(node));
        return allow_if(selected, || {
            format!("can only list/watch pods with spec.nodeName={node} field selector")
        });
    }
    if info.verb == Verb::Create && sub.is_none() {
        return deny(format!(
            "node {node:?} is not allowed to create pods (ledge has no mirror pods)"
        ));
    }
    let (Some(ns), Some(name)) = (info.namespace.as_deref(), info.name.as_deref()) else {
        return Decision::Deny(None);
    };
    let pod = graph.pod(ns, name);
    let bound = pod.as_deref().is_some_and(|p| bound_to(p, node));
    // NodeRestriction lets writes to a pod that is gone through, to be answered 404 by the
    // handler; a read of one is unrelated to the node.
    let missing = pod.is_none();
    match (info.verb, sub) {
        (Verb::Get, None | Some("status")) => allow_if(bound, || no_relationship(node)),
        (Verb::Update | Verb::Patch, Some("status")) => allow_if(bound || missing, || {
            format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            )
        }),
        (Verb::Delete, None) => allow_if(bound || missing, || {
            format!("node {node:?} can only delete pods with spec.nodeName set to itself")
        }),
        (Verb::Create, Some("eviction")) => allow_if(bound || missing, || {
            format!("node {node:?} can only evict pods with spec.nodeName set to itself")
        }),
        _ => Decision::Deny(None),
    }
}

/// Secrets, ConfigMaps and ServiceAccounts: one at a time, and only those a pod bound to the
/// node references.
fn referenced(node: &str, info: &RequestInfo, graph: &dyn Graph) -> Decision {
    if info.verb != Verb::Get || info.subresource.is_some() {
        return deny("can only get individual resources of this type");
    }
    let (Some(ns), Some(name)) = (info.namespace.as_deref(), info.name.as_deref()) else {
        return Decision::Deny(None);
    };
    let related = graph
        .pods(ns)
        .iter()
        .filter(|p| bound_to(p, node))
        .any(|p| references(p, &info.resource).contains(&name));
    allow_if(related, || no_relationship(node))
}

/// The names of the `resource` objects (`secrets`, `configmaps`, `serviceaccounts`) a pod
/// references, as upstream's `VisitPodSecretNames` / `VisitPodConfigmapNames` find them.
pub fn references<'a>(pod: &'a Value, resource: &str) -> Vec<&'a str> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    let mut push = |v: Option<&'a Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            out.push(n);
        }
    };
    if resource == "serviceaccounts" {
        push(spec.get("serviceAccountName"));
        push(spec.get("serviceAccount"));
        return out;
    }
    let secrets = resource == "secrets";
    if secrets {
        for s in items(spec, "imagePullSecrets") {
            push(s.get("name"));
        }
    }
    let (key_ref, from_ref) = if secrets {
        ("secretKeyRef", "secretRef")
    } else {
        ("configMapKeyRef", "configMapRef")
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(spec, list) {
            for e in items(c, "env") {
                push(e.at(&format!("/valueFrom/{key_ref}/name")));
            }
            for e in items(c, "envFrom") {
                push(e.at(&format!("/{from_ref}/name")));
            }
        }
    }
    for vol in items(spec, "volumes") {
        let Some(sources) = vol.as_object() else {
            continue;
        };
        for (kind, source) in sources {
            match (secrets, kind.as_str()) {
                (true, "secret") | (true, "azureFile") => push(source.get("secretName")),
                (false, "configMap") => push(source.get("name")),
                (_, "projected") => {
                    let key = if secrets { "secret" } else { "configMap" };
                    for s in items(source, "sources") {
                        push(s.at(&format!("/{key}/name")));
                    }
                }
                (true, "csi") => push(source.at("/nodePublishSecretRef/name")),
                // cephfs, cinder, flexVolume, iscsi, rbd, scaleIO, storageos.
                (true, _) => push(source.at("/secretRef/name")),
                _ => {}
            }
        }
    }
    out
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::http::request::{Route, route};

    /// Pods by (namespace, name).
    #[derive(Default)]
    struct Pods(BTreeMap<(String, String), Arc<Value>>);

    impl Pods {
        fn with(mut self, ns: &str, name: &str, node: &str, spec: Value) -> Self {
            let mut pod = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
            pod["spec"]["nodeName"] = json!(node);
            self.0.insert((ns.into(), name.into()), Arc::new(pod));
            self
        }
    }

    impl Graph for Pods {
        fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
            self.0.get(&(namespace.into(), name.into())).cloned()
        }
        fn pods(&self, namespace: &str) -> Vec<Arc<Value>> {
            self.0
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|(_, p)| p.clone())
                .collect()
        }
    }

    fn cluster() -> Pods {
        let spec = json!({
            "serviceAccountName": "runner",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                ],
                "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "from-cm"}}],
            }],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "vol-secret"}},
                {"name": "m", "configMap": {"name": "vol-cm"}},
                {"name": "p", "projected": {"sources": [
                    {"secret": {"name": "proj-secret"}},
                    {"configMap": {"name": "proj-cm"}},
                    {"serviceAccountToken": {"path": "token"}},
                ]}},
                {"name": "x", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                {"name": "r", "rbd": {"monitors": [], "image": "i", "secretRef": {"name": "rbd-secret"}}},
            ],
        });
        Pods::default().with("default", "mine", "a", spec).with(
            "default",
            "theirs",
            "b",
            json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "b-only"}}]}]}),
        )
    }

    fn req(method: Method, path: &str) -> RequestInfo {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match route(&method, path, query.contains("watch=true")) {
            Route::Resource(info) => info,
            other => panic!("{path} routed to {other:?}"),
        }
    }

    /// Node `a`'s decision on `method path`; `?fieldSelector=` is read from the path and `body`
    /// is a create's `metadata.name`.
    fn decide_for(method: Method, path: &str, body: Option<&str>) -> Decision {
        let info = req(method, path);
        let selector = path
            .split_once("fieldSelector=")
            .map(|(_, s)| s.split('&').next().unwrap_or(""));
        let request = NodeRequest {
            info: &info,
            field_selector: selector,
            body_name: body,
        };
        decide("a", &request, &cluster())
    }

    fn allowed(method: Method, path: &str) -> bool {
        decide_for(method, path, None) == Decision::Allow
    }

    #[test]
    fn node_identity_needs_the_name_and_the_group() {
        let user = |name: &str, group: &str| User {
            name: name.into(),
            groups: vec![group.into()],
        };
        assert_eq!(node_name(&user("system:node:a", GROUP)), Some("a"));
        assert_eq!(node_name(&user("system:node:a", "system:masters")), None);
        assert_eq!(node_name(&user("system:node:", GROUP)), None);
        assert_eq!(node_name(&user("kubelet-a", GROUP)), None);
        assert!(is_node(&user("kubelet-a", GROUP)));
    }

    #[test]
    fn nodes_read_every_node_and_write_only_their_own() {
        assert!(allowed(Method::GET, "/api/v1/nodes/b"));
        assert!(allowed(Method::GET, "/api/v1/nodes?watch=true"));
        assert!(allowed(Method::GET, "/api/v1/nodes"));
        assert!(allowed(Method::PUT, "/api/v1/nodes/a/status"));
        assert!(allowed(Method::PATCH, "/api/v1/nodes/a"));
        assert!(allowed(Method::PUT, "/api/v1/nodes/a"));
        assert!(allowed(Method::DELETE, "/api/v1/nodes/a"));
        assert_eq!(
            decide_for(Method::POST, "/api/v1/nodes", Some("a")),
            Decision::Allow
        );
        assert_eq!(
            decide_for(Method::POST, "/api/v1/nodes", Some("b")),
            deny("node \"a\" is not allowed to modify node \"b\"")
        );
        assert!(!allowed(Method::POST, "/api/v1/nodes"));
        assert_eq!(
            decide_for(Method::PUT, "/api/v1/nodes/b/status", None),
            deny("node \"a\" is not allowed to modify node \"b\"")
        );
        assert!(!allowed(Method::PATCH, "/api/v1/nodes/b"));
        assert!(!allowed(Method::DELETE, "/api/v1/nodes/b"));
        assert!(!allowed(Method::DELETE, "/api/v1/nodes"));
        assert!(!allowed(Method::GET, "/api/v1/nodes/a/proxy"));
    }

    #[test]
    fn leases_only_its_own_in_kube_node_lease() {
        let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
        for m in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(allowed(m.clone(), &format!("{leases}/a")), "{m}");
            assert_eq!(
                decide_for(m.clone(), &format!("{leases}/b"), None),
                deny("can only access node lease with the same name as the requesting node"),
                "{m}"
            );
        }
        assert_eq!(decide_for(Method::POST, leases, Some("a")), Decision::Allow);
        assert!(decide_for(Method::POST, leases, Some("b")) != Decision::Allow);
        assert!(allowed(Method::GET, leases));
        assert!(allowed(Method::GET, &format!("{leases}?watch=true")));
        assert!(!allowed(Method::DELETE, leases));
        assert_eq!(
            decide_for(
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/a",
                None
            ),
            deny("can only access leases in the kube-node-lease namespace")
        );
    }

    #[test]
    fn pods_only_those_bound_to_the_node() {
        let pods = "/api/v1/namespaces/default/pods";
        assert!(allowed(Method::GET, &format!("{pods}/mine")));
        assert!(allowed(Method::GET, &format!("{pods}/mine/status")));
        assert_eq!(
            decide_for(Method::GET, &format!("{pods}/theirs"), None),
            deny("no relationship found between node 'a' and this object")
        );
        assert!(!allowed(Method::GET, &format!("{pods}/nowhere")));
        assert!(allowed(Method::PUT, &format!("{pods}/mine/status")));
        assert!(allowed(Method::PATCH, &format!("{pods}/mine/status")));
        assert!(!allowed(Method::PUT, &format!("{pods}/theirs/status")));
        assert!(!allowed(Method::PUT, &format!("{pods}/mine")));
        assert!(!allowed(Method::PATCH, &format!("{pods}/mine")));
        assert!(allowed(Method::DELETE, &format!("{pods}/mine")));
        assert_eq!(
            decide_for(Method::DELETE, &format!("{pods}/theirs"), None),
            deny("node \"a\" can only delete pods with spec.nodeName set to itself")
        );
        assert!(!allowed(Method::DELETE, pods));
        // Writes to a pod that is gone get the handler's 404, as with NodeRestriction.
        assert!(allowed(Method::DELETE, &format!("{pods}/gone")));
        assert!(allowed(Method::PUT, &format!("{pods}/gone/status")));
        assert!(allowed(Method::POST, &format!("{pods}/mine/eviction")));
        assert!(!allowed(Method::POST, &format!("{pods}/theirs/eviction")));
        assert!(!allowed(Method::POST, pods));
        assert!(!allowed(Method::POST, &format!("{pods}/mine/binding")));
        assert!(!allowed(Method::GET, &format!("{pods}/mine/log")));
    }

    #[test]
    fn pods_are_listed_and_watched_only_with_the_node_selector() {
        assert!(allowed(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName=a"
        ));
        assert!(allowed(
            Method::GET,
            "/api/v1/pods?watch=true&fieldSelector=spec.nodeName==a,status.phase!=Failed"
        ));
        assert!(allowed(
            Method::GET,
            "/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName=a"
        ));
        assert_eq!(
            decide_for(Method::GET, "/api/v1/pods", None),
            deny("can only list/watch pods with spec.nodeName=a field selector")
        );
        assert!(!allowed(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName=b"
        ));
        assert!(!allowed(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName!=b"
        ));
        assert!(!allowed(
            Method::GET,
            "/api/v1/pods?watch=true&fieldSelector=metadata.name=mine"
        ));
    }

    #[test]
    fn secrets_and_config_maps_only_when_a_bound_pod_references_them() {
        let get = |resource: &str, name: &str| {
            allowed(
                Method::GET,
                &format!("/api/v1/namespaces/default/{resource}/{name}"),
            )
        };
        for s in [
            "pull",
            "env-secret",
            "from-secret",
            "init-secret",
            "vol-secret",
            "proj-secret",
            "csi-secret",
            "rbd-secret",
        ] {
            assert!(get("secrets", s), "{s}");
            assert!(!get("configmaps", s), "{s}");
        }
        for c in ["env-cm", "from-cm", "vol-cm", "proj-cm"] {
            assert!(get("configmaps", c), "{c}");
            assert!(!get("secrets", c), "{c}");
        }
        assert!(get("serviceaccounts", "runner"));
        assert!(!get("serviceaccounts", "default"));
        // Referenced by another node's pod, or by nothing, or in another namespace.
        assert!(!get("secrets", "b-only"));
        assert!(!get("secrets", "unrelated"));
        assert!(!allowed(
            Method::GET,
            "/api/v1/namespaces/other/secrets/vol-secret"
        ));
        assert_eq!(
            decide_for(Method::GET, "/api/v1/namespaces/default/secrets", None),
            deny("can only get individual resources of this type")
        );
        assert!(!allowed(Method::GET, "/api/v1/secrets?watch=true"));
        assert!(!allowed(
            Method::PUT,
            "/api/v1/namespaces/default/secrets/vol-secret"
        ));
        assert!(!allowed(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps/vol-cm"
        ));
    }

    #[test]
    fn the_rest_of_what_an_agent_needs_and_nothing_more() {
        for path in [
            "/api/v1/services",
            "/api/v1/namespaces/default/endpoints/kubernetes",
            "/api/v1/namespaces/default",
            "/apis/discovery.k8s.io/v1/endpointslices?watch=true",
            "/apis/node.k8s.io/v1/runtimeclasses/process",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/x",
        ] {
            assert!(allowed(Method::GET, path), "{path}");
        }
        assert!(allowed(Method::POST, "/api/v1/namespaces/default/events"));
        assert!(allowed(
            Method::GET,
            "/api/v1/namespaces/default/events/e.1"
        ));
        assert!(allowed(
            Method::PUT,
            "/api/v1/namespaces/default/events/e.1"
        ));
        assert!(allowed(
            Method::PATCH,
            "/apis/events.k8s.io/v1/namespaces/default/events/e.1"
        ));
        assert!(allowed(
            Method::POST,
            "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        ));
        for (method, path) in [
            (Method::GET, "/api/v1/namespaces/default/events"),
            (Method::DELETE, "/api/v1/namespaces/default/events/e.1"),
            (Method::POST, "/api/v1/namespaces"),
            (Method::DELETE, "/api/v1/namespaces/default"),
            (Method::POST, "/api/v1/namespaces/default/services"),
            (
                Method::PUT,
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval",
            ),
            (Method::GET, "/apis/apps/v1/deployments"),
            (
                Method::GET,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            ),
            (
                Method::DELETE,
                "/apis/node.k8s.io/v1/runtimeclasses/process",
            ),
        ] {
            assert_eq!(
                decide_for(method.clone(), path, None),
                Decision::Deny(None),
                "{method} {path}"
            );
        }
    }
}
