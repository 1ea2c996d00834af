//! What a runtime is asked to run: one container of one pod, fully resolved (env values read,
//! volumes materialised on the host, image located in the node's image store).

use std::path::PathBuf;
use std::sync::Arc;

use crate::log::LogWriter;

/// One container, ready to start.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// `metadata.namespace` of the pod.
    pub namespace: String,
    /// `metadata.name` of the pod.
    pub pod_name: String,
    /// `metadata.uid` of the pod.
    pub pod_uid: String,
    /// The container's name.
    pub name: String,
    /// The image reference as written in the pod (`ghcr.io/x/hello:1`, `hello.wasm`).
    pub image: String,
    /// Where the image's content is on this node: a `.wasm` file for `wasm`, an executable or an
    /// unpacked root file system for `process`. `None` when the reference is a host path the
    /// runtime resolves itself (the `process` runtime's `command[0]`).
    pub artifact: Option<PathBuf>,
    /// `command` (the entrypoint override); empty means the image's own.
    pub command: Vec<String>,
    /// `args`, with `$(VAR)` references already expanded.
    pub args: Vec<String>,
    /// Environment, in order, duplicates resolved (last wins), `$(VAR)` expanded.
    pub env: Vec<(String, String)>,
    /// `workingDir`, if set.
    pub working_dir: Option<String>,
    /// Volumes, materialised as host directories or files.
    pub mounts: Vec<Mount>,
    /// Declared container ports.
    pub ports: Vec<Port>,
    /// Resource limits.
    pub limits: Limits,
    /// Where stdout and stderr go.
    pub log: Arc<LogWriter>,
}

/// A volume mount: a host path made visible at `container_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The materialised volume (a directory, or a file for `subPath`).
    pub host_path: PathBuf,
    /// `mountPath`.
    pub container_path: String,
    /// `readOnly`.
    pub read_only: bool,
}

/// A declared `containerPort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// `name`, if any.
    pub name: Option<String>,
    /// `containerPort`.
    pub container_port: u16,
    /// `protocol`.
    pub protocol: Protocol,
    /// `hostIP` to bind, if set (default: all addresses).
    pub host_ip: Option<String>,
}

/// A port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// `resources.limits`, in plain units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
}
