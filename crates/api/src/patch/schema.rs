//! Patch metadata for strategic merge patch: which lists merge (and by which key) instead of
//! being replaced, mirroring the `patchStrategy` / `patchMergeKey` struct tags of the built-in
//! Go types (`k8s.io/api@v0.32`, see kube-api.md §2.1).

/// How strategic merge patch treats one field (upstream struct tags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldStrategy<'a> {
    /// `patchStrategy` includes `merge`: a list is merged instead of replaced atomically.
    pub merge: bool,
    /// `patchMergeKey`: the field that identifies elements of a merged list of objects.
    pub merge_key: Option<&'a str>,
    /// `patchStrategy` includes `retainKeys` (honoured through the `$retainKeys` directive).
    pub retain_keys: bool,
}

impl<'a> FieldStrategy<'a> {
    /// No strategy: lists are replaced whole, maps merge recursively.
    pub const ATOMIC: FieldStrategy<'static> = FieldStrategy {
        merge: false,
        merge_key: None,
        retain_keys: false,
    };

    /// A list of objects merged element-wise by `key`.
    pub const fn merge_by(key: &'a str) -> Self {
        Self {
            merge: true,
            merge_key: Some(key),
            retain_keys: false,
        }
    }

    /// A list of scalars merged as an ordered set.
    pub const fn merge_primitive() -> Self {
        Self {
            merge: true,
            merge_key: None,
            retain_keys: false,
        }
    }

    /// A field tagged `retainKeys` only.
    pub const fn retain_keys() -> Self {
        Self {
            merge: false,
            merge_key: None,
            retain_keys: true,
        }
    }

    /// Adds `retainKeys` to a strategy (`patchStrategy:"merge,retainKeys"`).
    pub const fn with_retain_keys(self) -> Self {
        Self {
            retain_keys: true,
            ..self
        }
    }
}

/// Answers the patch strategy of a field, given the field names from the object root with
/// list indices skipped (`["spec", "template", "spec", "containers", "env"]`).
pub trait PatchSchema: Sync {
    /// The strategy of the field at `path`; [`FieldStrategy::ATOMIC`] when it has none.
    fn strategy(&self, path: &[&str]) -> FieldStrategy<'_>;
}

/// Strategies of fields relative to a PodSpec.
const POD_SPEC: &[(&[&str], FieldStrategy<'static>)] = &[
    (
        &["volumes"],
        FieldStrategy::merge_by("name").with_retain_keys(),
    ),
    (&["imagePullSecrets"], FieldStrategy::merge_by("name")),
    (&["hostAliases"], FieldStrategy::merge_by("ip")),
    (
        &["topologySpreadConstraints"],
        FieldStrategy::merge_by("topologyKey"),
    ),
    (&["schedulingGates"], FieldStrategy::merge_by("name")),
    (
        &["resourceClaims"],
        FieldStrategy::merge_by("name").with_retain_keys(),
    ),
];

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Strategies of fields relative to a Container (and EphemeralContainerCommon).
const CONTAINER: &[(&str, FieldStrategy<'static>)] = &[
    ("ports", FieldStrategy::merge_by("containerPort")),
    ("env", FieldStrategy::merge_by("name")),
    ("volumeMounts", FieldStrategy::merge_by("mountPath")),
    ("volumeDevices", FieldStrategy::merge_by("devicePath")),
];

const CONDITIONS: (&[&str], FieldStrategy<'static>) =
    (&["status", "conditions"], FieldStrategy::merge_by("type"));

const POD_STATUS: &[(&[&str], FieldStrategy<'static>)] = &[
    CONDITIONS,
    (&["status", "podIPs"], FieldStrategy::merge_by("ip")),
    (&["status", "hostIPs"], FieldStrategy::merge_by("ip")),
    (
        &["status", "resourceClaimStatuses"],
        FieldStrategy::merge_by("name").with_retain_keys(),
    ),
    (
        &["status", "containerStatuses", "volumeMounts"],
        FieldStrategy::merge_by("mountPath"),
    ),
    (
        &["status", "containerStatuses", "allocatedResourcesStatus"],
        FieldStrategy::merge_by("name"),
    ),
    (
        &["status", "initContainerStatuses", "volumeMounts"],
        FieldStrategy::merge_by("mountPath"),
    ),
    (
        &[
            "status",
            "initContainerStatuses",
            "allocatedResourcesStatus",
        ],
        FieldStrategy::merge_by("name"),
    ),
    (
        &["status", "ephemeralContainerStatuses", "volumeMounts"],
        FieldStrategy::merge_by("mountPath"),
    ),
    (
        &[
            "status",
            "ephemeralContainerStatuses",
            "allocatedResourcesStatus",
        ],
        FieldStrategy::merge_by("name"),
    ),
];

/// The strategy table of one kind: where ObjectMeta and PodSpecs sit, plus other fields.
struct KindSchema {
    /// Paths of ObjectMeta values besides the root `metadata` (pod template metadata).
    extra_metadata: &'static [&'static [&'static str]],
    /// Paths of PodSpec values.
    pod_specs: &'static [&'static [&'static str]],
    /// Exact paths of other fields with a strategy.
    fields: &'static [(&'static [&'static str], FieldStrategy<'static>)],
}

const TEMPLATE_SPEC: &[&str] = &["spec", "template", "spec"];
const TEMPLATE_META: &[&str] = &["spec", "template", "metadata"];

const GENERIC: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[],
};
const POD: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[&["spec"]],
    fields: POD_STATUS,
};
const POD_TEMPLATE: KindSchema = KindSchema {
    extra_metadata: &[&["template", "metadata"]],
    pod_specs: &[&["template", "spec"]],
    fields: &[],
};
const WORKLOAD: KindSchema = KindSchema {
    extra_metadata: &[TEMPLATE_META],
    pod_specs: &[TEMPLATE_SPEC],
    fields: &[CONDITIONS],
};
const DEPLOYMENT: KindSchema = KindSchema {
    extra_metadata: &[TEMPLATE_META],
    pod_specs: &[TEMPLATE_SPEC],
    fields: &[
        CONDITIONS,
        (&["spec", "strategy"], FieldStrategy::retain_keys()),
    ],
};
const CRON_JOB: KindSchema = KindSchema {
    extra_metadata: &[
        &["spec", "jobTemplate", "metadata"],
        &["spec", "jobTemplate", "spec", "template", "metadata"],
    ],
    pod_specs: &[&["spec", "jobTemplate", "spec", "template", "spec"]],
    fields: &[],
};
const SERVICE: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[
        CONDITIONS,
        (&["spec", "ports"], FieldStrategy::merge_by("port")),
    ],
};
const NODE: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[
        CONDITIONS,
        (&["spec", "podCIDRs"], FieldStrategy::merge_primitive()),
        (&["status", "addresses"], FieldStrategy::merge_by("type")),
    ],
};
const SERVICE_ACCOUNT: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[(&["secrets"], FieldStrategy::merge_by("name"))],
};
const WITH_CONDITIONS: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[CONDITIONS],
};
const COMPONENT_STATUS: KindSchema = KindSchema {
    extra_metadata: &[],
    pod_specs: &[],
    fields: &[(&["conditions"], FieldStrategy::merge_by("type"))],
};

fn object_meta_field(rest: &[&str]) -> Option<FieldStrategy<'static>> {
    match rest {
        ["ownerReferences"] => Some(FieldStrategy::merge_by("uid")),
        ["finalizers"] => Some(FieldStrategy::merge_primitive()),
        _ => None,
    }
}

fn pod_spec_field(rest: &[&str]) -> Option<FieldStrategy<'static>> {
    match rest {
        [list] if CONTAINER_LISTS.contains(list) => Some(FieldStrategy::merge_by("name")),
        [list, field] if CONTAINER_LISTS.contains(list) => CONTAINER
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, s)| *s),
        _ => POD_SPEC.iter().find(|(p, _)| *p == rest).map(|(_, s)| *s),
    }
}

impl PatchSchema for KindSchema {
    fn strategy(&self, path: &[&str]) -> FieldStrategy<'_> {
        let metas = std::iter::once(&["metadata"][..]).chain(self.extra_metadata.iter().copied());
        for meta in metas {
            if let Some(s) = path.strip_prefix(meta).and_then(object_meta_field) {
                return s;
            }
        }
        for spec in self.pod_specs {
            if let Some(s) = path.strip_prefix(*spec).and_then(pod_spec_field) {
                return s;
            }
        }
        self.fields
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(FieldStrategy::ATOMIC, |(_, s)| *s)
    }
}

/// The strategy table for a built-in kind (`group` is `""` for core/v1). Kinds without special
/// lists get ObjectMeta's rules only (ownerReferences by uid, finalizers as a set). Whether a
/// kind may be strategic-merge-patched at all (custom resources may not: 415) is the caller's call.
pub fn builtin_schema(group: &str, kind: &str) -> &'static dyn PatchSchema {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") | ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            &WORKLOAD
        }
        ("batch", "Job") => &WORKLOAD,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("batch", "CronJob") => &CRON_JOB,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Namespace" | "PersistentVolumeClaim") => &WITH_CONDITIONS,
        ("", "ComponentStatus") => &COMPONENT_STATUS,
        _ => &GENERIC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(group: &str, kind: &str, path: &str) -> FieldStrategy<'static> {
        let parts: Vec<&str> = path.split('.').collect();
        builtin_schema(group, kind).strategy(&parts)
    }

    #[test]
    fn pod_templates_are_found_in_every_workload() {
        let env = FieldStrategy::merge_by("name");
        assert_eq!(lookup("", "Pod", "spec.containers.env"), env);
        assert_eq!(
            lookup(
                "apps",
                "Deployment",
                "spec.template.spec.initContainers.env"
            ),
            env
        );
        assert_eq!(
            lookup("apps", "StatefulSet", "spec.template.spec.containers.env"),
            env
        );
        assert_eq!(
            lookup("batch", "Job", "spec.template.spec.containers.env"),
            env
        );
        assert_eq!(
            lookup(
                "batch",
                "CronJob",
                "spec.jobTemplate.spec.template.spec.containers.env"
            ),
            env
        );
        assert_eq!(
            lookup("", "PodTemplate", "template.spec.containers.env"),
            env
        );
        assert_eq!(
            lookup("", "Pod", "spec.template.spec.containers.env"),
            FieldStrategy::ATOMIC
        );
    }

    #[test]
    fn container_and_pod_spec_keys() {
        assert_eq!(
            lookup("", "Pod", "spec.containers.ports").merge_key,
            Some("containerPort")
        );
        assert_eq!(
            lookup("", "Pod", "spec.containers.volumeMounts").merge_key,
            Some("mountPath")
        );
        assert!(lookup("", "Pod", "spec.volumes").retain_keys);
        assert_eq!(lookup("", "Pod", "spec.tolerations"), FieldStrategy::ATOMIC);
        assert_eq!(
            lookup("", "Pod", "spec.containers.args"),
            FieldStrategy::ATOMIC
        );
        assert_eq!(lookup("", "Pod", "status.podIPs").merge_key, Some("ip"));
    }

    #[test]
    fn object_meta_rules_apply_to_every_kind_and_template() {
        assert_eq!(
            lookup("", "ConfigMap", "metadata.finalizers"),
            FieldStrategy::merge_primitive()
        );
        assert_eq!(
            lookup("example.com", "Widget", "metadata.ownerReferences").merge_key,
            Some("uid")
        );
        assert_eq!(
            lookup("apps", "Deployment", "spec.template.metadata.finalizers"),
            FieldStrategy::merge_primitive()
        );
        assert_eq!(
            lookup("", "ConfigMap", "data.finalizers"),
            FieldStrategy::ATOMIC
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(lookup("", "Service", "spec.ports").merge_key, Some("port"));
        assert_eq!(
            lookup("", "Node", "spec.podCIDRs"),
            FieldStrategy::merge_primitive()
        );
        assert_eq!(
            lookup("", "Node", "status.addresses").merge_key,
            Some("type")
        );
        assert_eq!(
            lookup("", "Namespace", "status.conditions").merge_key,
            Some("type")
        );
        assert_eq!(
            lookup("", "ServiceAccount", "secrets").merge_key,
            Some("name")
        );
        assert_eq!(
            lookup("apps", "Deployment", "spec.strategy"),
            FieldStrategy::retain_keys()
        );
        assert_eq!(
            lookup("apps", "DaemonSet", "status.conditions").merge_key,
            Some("type")
        );
        assert_eq!(
            lookup("", "ConfigMap", "status.conditions"),
            FieldStrategy::ATOMIC
        );
    }
}
