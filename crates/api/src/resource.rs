//! The resource registry's static half: what every served resource is called, its scope, short
//! names, categories and subresources. The API server builds discovery, routing and storage keys
//! from these definitions; custom resources get the same type, built from their CRD.

/// A subresource a resource serves, such as `status` or `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `<resource>/status`: writes only `.status`.
    Status,
    /// `<resource>/scale`: an `autoscaling/v1 Scale` view of the replicas.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: a PDB-respecting delete.
    Eviction,
    /// `pods/log`: container logs.
    Log,
    /// `pods/exec`: run a command in a container.
    Exec,
    /// `namespaces/finalize`: update `spec.finalizers`.
    Finalize,
}

impl Subresource {
    /// The path segment, e.g. `status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Eviction => "eviction",
            Self::Log => "log",
            Self::Exec => "exec",
            Self::Finalize => "finalize",
        }
    }

    /// Parse a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Self::Status,
            "scale" => Self::Scale,
            "binding" => Self::Binding,
            "eviction" => Self::Eviction,
            "log" => Self::Log,
            "exec" => Self::Exec,
            "finalize" => Self::Finalize,
            _ => return None,
        })
    }

    /// The verbs discovery advertises for it.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Status | Self::Scale => &["get", "patch", "update"],
            Self::Binding | Self::Eviction => &["create"],
            Self::Log => &["get"],
            Self::Exec => &["create", "get"],
            Self::Finalize => &["update"],
        }
    }
}

/// Everything the server needs to know to serve one resource at one group-version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, "" for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name used in paths, e.g. `configmaps`.
    pub plural: String,
    /// Singular name, e.g. `configmap`.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`cm`), used by kubectl.
    pub short_names: Vec<String>,
    /// Categories (`all`), used by `kubectl get all`.
    pub categories: Vec<String>,
    /// Subresources served below each object.
    pub subresources: Vec<Subresource>,
}

/// The verbs every stored resource supports.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceDef {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The list kind, e.g. `ConfigMapList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether this resource serves `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix of every object of this resource, ending in `/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The storage key prefix of one namespace's objects (or all, for `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

struct Builtin {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    subs: &'static [Subresource],
}

const fn b(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    subs: &'static [Subresource],
) -> Builtin {
    Builtin {
        group,
        kind,
        plural,
        namespaced,
        short,
        all,
        subs,
    }
}

use Subresource::*;

/// Built-in kinds with their upstream scope, short names, `all` category and subresources.
const BUILTINS: &[Builtin] = &[
    b(
        "",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        false,
        &[Status, Finalize],
    ),
    b(
        "",
        "Pod",
        "pods",
        true,
        &["po"],
        true,
        &[Status, Binding, Eviction, Log, Exec],
    ),
    b("", "Node", "nodes", false, &["no"], false, &[Status]),
    b("", "Service", "services", true, &["svc"], true, &[Status]),
    b("", "Endpoints", "endpoints", true, &["ep"], false, &[]),
    b("", "ConfigMap", "configmaps", true, &["cm"], false, &[]),
    b("", "Secret", "secrets", true, &[], false, &[]),
    b("", "Event", "events", true, &["ev"], false, &[]),
    b(
        "",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        &[],
    ),
    b("", "PodTemplate", "podtemplates", true, &[], false, &[]),
    b(
        "apps",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        &[Status, Scale],
    ),
    b(
        "apps",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        &[Status, Scale],
    ),
    b(
        "apps",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        &[Status],
    ),
    b(
        "apps",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        &[Status, Scale],
    ),
    b(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
        &[],
    ),
    b("batch", "Job", "jobs", true, &[], true, &[Status]),
    b(
        "batch",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        &[Status],
    ),
    b(
        "coordination.k8s.io",
        "Lease",
        "leases",
        true,
        &[],
        false,
        &[],
    ),
    b(
        "scheduling.k8s.io",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        &[],
    ),
    b(
        "node.k8s.io",
        "RuntimeClass",
        "runtimeclasses",
        false,
        &[],
        false,
        &[],
    ),
    b(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
        &[],
    ),
    b(
        "events.k8s.io",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        &[],
    ),
    b(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        false,
        &[Status],
    ),
    b(
        "rbac.authorization.k8s.io",
        "Role",
        "roles",
        true,
        &[],
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
        &[],
    ),
    b(
        "certificates.k8s.io",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
        &["csr"],
        false,
        &[Status],
    ),
    b(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        false,
        &[Status],
    ),
];

/// The built-in resources ledge serves, in discovery order.
pub fn builtin_resources() -> Vec<ResourceDef> {
    BUILTINS
        .iter()
        .map(|x| ResourceDef {
            group: x.group.to_string(),
            version: "v1".to_string(),
            kind: x.kind.to_string(),
            plural: x.plural.to_string(),
            singular: x.kind.to_lowercase(),
            namespaced: x.namespaced,
            short_names: x.short.iter().map(|s| s.to_string()).collect(),
            categories: if x.all {
                vec!["all".to_string()]
            } else {
                vec![]
            },
            subresources: x.subs.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kubernetes_style() {
        let all = builtin_resources();
        let cm = all
            .iter()
            .find(|r| r.plural == "configmaps")
            .expect("configmaps");
        assert_eq!(
            cm.key(Some("default"), "x"),
            "/registry/core/configmaps/default/x"
        );
        assert_eq!(
            cm.namespace_prefix(Some("a")),
            "/registry/core/configmaps/a/"
        );
        let ns = all
            .iter()
            .find(|r| r.plural == "namespaces")
            .expect("namespaces");
        assert_eq!(ns.key(Some("ignored"), "x"), "/registry/core/namespaces/x");
        let d = all
            .iter()
            .find(|r| r.plural == "deployments")
            .expect("deployments");
        assert_eq!(d.api_version(), "apps/v1");
        assert!(d.has(Subresource::Scale));
    }
}
