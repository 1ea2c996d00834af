//! The parts of a Pod the node acts on, read from JSON into plain structs. The API server has
//! validated the pod; what is read here only needs to be tolerant of fields left out.

use ledge_api::Pointer as _;
use serde::Deserialize;
use serde_json::Value;

/// `spec` of a pod, as far as the agent is concerned.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    /// `initContainers`, run one after the other before `containers`.
    pub init_containers: Vec<Container>,
    /// `containers`, run together.
    pub containers: Vec<Container>,
    /// `restartPolicy`: `Always` (default), `OnFailure`, `Never`.
    pub restart_policy: Option<String>,
    /// `runtimeClassName`.
    pub runtime_class_name: Option<String>,
    /// `terminationGracePeriodSeconds` (default 30).
    pub termination_grace_period_seconds: Option<i64>,
    /// `activeDeadlineSeconds`.
    pub active_deadline_seconds: Option<i64>,
    /// `volumes`.
    pub volumes: Vec<Volume>,
    /// `serviceAccountName`.
    pub service_account_name: Option<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `enableServiceLinks` (default true).
    pub enable_service_links: Option<bool>,
    /// `readinessGates`: conditions others set that must be True for the pod to be Ready.
    pub readiness_gates: Vec<ReadinessGate>,
}

/// One `readinessGates` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReadinessGate {
    /// `conditionType`.
    pub condition_type: String,
}

impl PodSpec {
    /// Read the spec of `pod`.
    ///
    /// # Errors
    /// The spec does not have the shape of a pod spec.
    pub fn of(pod: &Value) -> Result<Self, String> {
        match pod.get("spec") {
            Some(spec) => Self::deserialize(spec).map_err(|e| format!("cannot read pod spec: {e}")),
            None => Ok(Self::default()),
        }
    }

    /// The restart policy.
    pub fn restart(&self) -> RestartPolicy {
        match self.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// The termination grace period (30 s by default, as upstream).
    pub fn grace_seconds(&self) -> i64 {
        self.termination_grace_period_seconds.unwrap_or(30).max(0)
    }

    /// Whether the two specs differ in what a running pod cannot take without restarting
    /// containers (ledge treats the container list, images, commands, env and volumes as such;
    /// upstream only allows `image` and `activeDeadlineSeconds` to change at all).
    pub fn containers_differ(&self, other: &PodSpec) -> bool {
        self.init_containers != other.init_containers
            || self.containers != other.containers
            || self.volumes != other.volumes
            || self.runtime_class_name != other.runtime_class_name
    }
}

/// `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whenever a container ends.
    Always,
    /// Restart a container that failed.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Whether a container that ended with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// One container.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    /// `name`.
    pub name: String,
    /// `image`.
    pub image: String,
    /// `command`.
    pub command: Vec<String>,
    /// `args`.
    pub args: Vec<String>,
    /// `workingDir`.
    pub working_dir: Option<String>,
    /// `env`.
    pub env: Vec<EnvVar>,
    /// `envFrom`.
    pub env_from: Vec<EnvFromSource>,
    /// `ports`.
    pub ports: Vec<ContainerPort>,
    /// `volumeMounts`.
    pub volume_mounts: Vec<VolumeMount>,
    /// `resources`.
    pub resources: Resources,
    /// `readinessProbe`.
    pub readiness_probe: Option<Probe>,
    /// `livenessProbe`.
    pub liveness_probe: Option<Probe>,
    /// `startupProbe`.
    pub startup_probe: Option<Probe>,
    /// `restartPolicy` of an init container (`Always` makes it a sidecar).
    pub restart_policy: Option<String>,
}

/// `env[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: Option<String>,
    /// `valueFrom`.
    pub value_from: Option<Value>,
}

/// `envFrom[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvFromSource {
    /// `prefix`.
    pub prefix: Option<String>,
    /// `configMapRef`.
    pub config_map_ref: Option<NameRef>,
    /// `secretRef`.
    pub secret_ref: Option<NameRef>,
}

/// A `{name, optional}` reference.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NameRef {
    /// `name`.
    pub name: String,
    /// `optional`.
    pub optional: Option<bool>,
}

/// `ports[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    /// `name`.
    pub name: Option<String>,
    /// `containerPort`.
    pub container_port: i64,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `hostIP`.
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// `volumeMounts[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    /// `name`.
    pub name: String,
    /// `mountPath`.
    pub mount_path: String,
    /// `subPath`.
    pub sub_path: Option<String>,
    /// `readOnly`.
    pub read_only: Option<bool>,
}

/// `resources`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Resources {
    /// `limits`.
    pub limits: Option<serde_json::Map<String, Value>>,
    /// `requests`.
    pub requests: Option<serde_json::Map<String, Value>>,
}

/// A probe.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    /// `httpGet`.
    pub http_get: Option<HttpGet>,
    /// `tcpSocket`.
    pub tcp_socket: Option<TcpSocket>,
    /// `exec`.
    pub exec: Option<ExecAction>,
    /// `initialDelaySeconds`.
    pub initial_delay_seconds: Option<i64>,
    /// `periodSeconds` (10).
    pub period_seconds: Option<i64>,
    /// `timeoutSeconds` (1).
    pub timeout_seconds: Option<i64>,
    /// `successThreshold` (1).
    pub success_threshold: Option<i64>,
    /// `failureThreshold` (3).
    pub failure_threshold: Option<i64>,
}

/// `httpGet`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpGet {
    /// `path`.
    pub path: Option<String>,
    /// `port`: a number or a port name.
    pub port: Value,
    /// `host`.
    pub host: Option<String>,
    /// `scheme`.
    pub scheme: Option<String>,
    /// `httpHeaders`.
    pub http_headers: Vec<HttpHeader>,
}

/// `httpHeaders[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpHeader {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: String,
}

/// `tcpSocket`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TcpSocket {
    /// `port`.
    pub port: Value,
    /// `host`.
    pub host: Option<String>,
}

/// `exec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExecAction {
    /// `command`.
    pub command: Vec<String>,
}

/// `volumes[]`: the name and the raw source, read by [`super::volumes`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Volume {
    /// `name`.
    pub name: String,
    /// Everything else (exactly one source).
    #[serde(flatten)]
    pub source: serde_json::Map<String, Value>,
}

/// Read a string at `pointer` in `obj`.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.at(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_pod_and_its_defaults() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostIP": "1.2.3.4"}],
                            "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "unknownField": 1,
        }});
        let spec = PodSpec::of(&pod).unwrap();
        assert_eq!(
            spec.containers[0].ports[0].host_ip.as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(spec.restart(), RestartPolicy::Always);
        assert_eq!(spec.grace_seconds(), 30);
        assert!(spec.volumes[0].source.contains_key("emptyDir"));
        assert!(
            spec.containers[0]
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .is_some()
        );
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(2));
        assert!(!RestartPolicy::Never.restarts(2));
    }
}
