//! One worker per pod: the pod's lifecycle on the node as an explicit sequence —
//! accept → set up volumes → init containers one by one → containers together (each with its
//! own supervisor: start, probes, exit, restart with back-off) → finished, or → terminating
//! (stop every container within the grace period) → gone (final status, then the pod's
//! deletion is completed, as kubelet does with a zero-grace DELETE).
//!
//! State lives in [`PodState`] behind a mutex; every change wakes the status pusher, which
//! writes `pods/<name>/status` only when the status actually changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use ledge_api::Pointer as _;
use ledge_controller::kinds::POD;
use ledge_runtime::log::LogWriter;
use ledge_runtime::{ContainerSpec, Limits, Port, Protocol, Runtime};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::env;
use super::probe::Prober;
use super::refs::Refs;
use super::spec::{Container, PodSpec, RestartPolicy, str_at};
use super::state::{ContainerState, PodFailure, PodState, State};
use super::volumes;

/// What the API says about a pod, as the manager hands it to the worker.
#[derive(Clone, Debug)]
pub enum Desired {
    /// The pod as last seen.
    Run(Arc<Value>),
    /// Deleted from the API (its last state).
    Gone,
}

/// The clock seam of container back-off.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay (kubelet: 10 s).
    pub initial: Duration,
    /// Cap (kubelet: 5 minutes).
    pub max: Duration,
    /// A container that ran this long resets its back-off (kubelet: 10 minutes).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// Which list a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Init,
    Main,
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    namespace: String,
    name: String,
    spec: PodSpec,
    runtime: Option<Arc<dyn Runtime>>,
    runtime_error: String,
    pod_dir: PathBuf,
    volumes: Mutex<HashMap<String, PathBuf>>,
    state: Mutex<PodState>,
    changed: Notify,
    desired: watch::Receiver<Desired>,
    /// Stops every container (deletion, deadline, agent shutdown).
    stop: CancellationToken,
    /// The grace period a stop uses, in seconds.
    grace: AtomicU64,
}

/// Run the pod `pod` until it is gone from the API (or `cancel`).
pub async fn run(
    shared: Arc<Shared>,
    pod: Arc<Value>,
    desired: watch::Receiver<Desired>,
    cancel: CancellationToken,
) {
    let uid = str_at(&pod, "/metadata/uid").unwrap_or("").to_string();
    let namespace = str_at(&pod, "/metadata/namespace")
        .unwrap_or("default")
        .to_string();
    let name = str_at(&pod, "/metadata/name").unwrap_or("").to_string();
    let spec = match PodSpec::of(&pod) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "cannot read the pod");
            PodSpec::default()
        }
    };
    let handler = shared
        .runtime_handler(spec.runtime_class_name.as_deref())
        .await;
    let runtime = shared.runtimes.get(&handler).cloned();
    let runtime_error = format!(
        "this node offers no runtime {handler:?} (it offers: {})",
        shared.runtimes.names().join(", ")
    );
    let containers = |list: &[Container], reason: &str| {
        list.iter()
            .map(|c| ContainerState::new(&c.name, &c.image, reason))
            .collect::<Vec<_>>()
    };
    let init_reason = if spec.init_containers.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut state = PodState::new(
        containers(&spec.init_containers, "PodInitializing"),
        containers(&spec.containers, init_reason),
        shared.node.host_ip.clone(),
        Utc::now(),
    );
    state.readiness_gates = spec
        .readiness_gates
        .iter()
        .map(|g| g.condition_type.clone())
        .collect();
    let worker = Arc::new(Worker {
        pod_dir: shared.pods_dir.join(&uid),
        shared,
        uid,
        namespace,
        name,
        grace: AtomicU64::new(spec.grace_seconds() as u64),
        spec,
        runtime,
        runtime_error,
        volumes: Mutex::new(HashMap::new()),
        state: Mutex::new(state),
        changed: Notify::new(),
        desired,
        stop: cancel.child_token(),
    });
    let pusher = tokio::spawn(worker.clone().push_status());
    let watcher = tokio::spawn(worker.clone().watch_desired());
    let finished_before = matches!(str_at(&pod, "/status/phase"), Some("Succeeded" | "Failed"));
    if !finished_before && !is_deleting(&pod) {
        worker.clone().lifecycle().await;
    }
    // Wait until the pod is to go (or the agent stops).
    worker.stop.cancelled().await;
    watcher.abort();
    let gone = matches!(*worker.desired.borrow(), Desired::Gone);
    let deleting = match &*worker.desired.borrow() {
        Desired::Run(p) => is_deleting(p),
        Desired::Gone => false,
    };
    // Write the final status (unless the agent itself is stopping: its pods are not over),
    // then complete a deletion.
    if !gone && !cancel.is_cancelled() {
        worker.flush_status().await;
    }
    if deleting {
        worker.finish_deletion().await;
    }
    pusher.abort();
    if gone || deleting {
        worker.clean_up();
    }
}

/// The least delay before an unwritten status is tried again, and the most.
const STATUS_RETRY_MIN: Duration = Duration::from_millis(500);
const STATUS_RETRY_MAX: Duration = Duration::from_secs(5);

/// A status the API acknowledged, with the pod's resourceVersion after that write.
struct Acked {
    status: Value,
    resource_version: u64,
}

fn resource_version(pod: &Value) -> u64 {
    str_at(pod, "/metadata/resourceVersion")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_deleting(pod: &Value) -> bool {
    pod.at("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

impl Worker {
    fn state(&self) -> std::sync::MutexGuard<'_, PodState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut PodState)) {
        f(&mut self.state());
        self.changed.notify_one();
    }

    fn latest(&self) -> Option<Arc<Value>> {
        match &*self.desired.borrow() {
            Desired::Run(p) => Some(p.clone()),
            Desired::Gone => None,
        }
    }

    fn event(&self, warning: bool, reason: &str, message: String) {
        let Some(pod) = self.latest() else { return };
        if warning {
            self.shared.events.warning(&POD, &pod, reason, message);
        } else {
            self.shared.events.normal(&POD, &pod, reason, message);
        }
    }

    /// Follow the API: deletion (with its grace period) or removal stops the pod.
    async fn watch_desired(self: Arc<Self>) {
        let mut rx = self.desired.clone();
        loop {
            let stop_with = match &*rx.borrow_and_update() {
                Desired::Gone => Some(self.spec.grace_seconds() as u64),
                Desired::Run(p) if is_deleting(p) => Some(
                    p.at("/metadata/deletionGracePeriodSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(self.spec.grace_seconds() as u64),
                ),
                Desired::Run(_) => None,
            };
            // A new version may carry a status someone else wrote: compare again.
            self.changed.notify_one();
            if let Some(grace) = stop_with {
                self.grace.store(grace, Ordering::Release);
                self.stop.cancel();
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Accept → volumes → init containers → containers.
    async fn lifecycle(self: Arc<Self>) {
        if self.runtime.is_none() {
            let msg = self.runtime_error.clone();
            self.event(true, "FailedCreatePodSandBox", msg.clone());
            self.update(|s| {
                for c in s.init.iter_mut().chain(s.main.iter_mut()) {
                    c.state = State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(msg.clone()),
                    };
                }
            });
            return;
        }
        if let Some(deadline) = self.spec.active_deadline_seconds {
            tokio::spawn(
                self.clone()
                    .enforce_deadline(Duration::from_secs(deadline.max(0) as u64)),
            );
        }
        if !self.set_up_volumes().await {
            return;
        }
        for idx in 0..self.spec.init_containers.len() {
            self.clone().supervise(Role::Init, idx).await;
            let ok = self.state().init[idx].exit_ok();
            if !ok {
                return;
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for idx in 0..self.spec.containers.len() {
            set.spawn(self.clone().supervise(Role::Main, idx));
        }
        while set.join_next().await.is_some() {}
    }

    async fn enforce_deadline(self: Arc<Self>, deadline: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(deadline) => {}
            _ = self.stop.cancelled() => return,
        }
        if self.state().finished() {
            return;
        }
        let message = "Pod was active on the node longer than the specified deadline".to_string();
        self.event(true, "DeadlineExceeded", message.clone());
        self.update(|s| {
            s.failure = Some(PodFailure {
                reason: "DeadlineExceeded".into(),
                message,
            })
        });
        self.stop.cancel();
    }

    /// Set up volumes, retrying with back-off; `false` if the pod was stopped first.
    async fn set_up_volumes(&self) -> bool {
        let mut delay = Duration::from_secs(1);
        loop {
            let pod = match self.latest() {
                Some(p) => p,
                None => return false,
            };
            let result = match Refs::fetch(&*self.shared.client, &self.namespace, &self.spec).await
            {
                Ok(refs) => {
                    let (dir, pod2, spec, node) = (
                        self.pod_dir.clone(),
                        pod.clone(),
                        self.spec.clone(),
                        self.shared.node.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        volumes::set_up(&dir, &pod2, &spec, &refs, &node)
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("volume set-up failed: {e}")))
                }
                Err(e) => Err(format!("cannot read the pod's ConfigMaps and Secrets: {e}")),
            };
            match result {
                Ok(v) => {
                    *self.volumes.lock().unwrap_or_else(PoisonError::into_inner) = v;
                    self.update(|s| s.sandbox_ready = true);
                    return true;
                }
                Err(e) => {
                    self.event(true, "FailedMount", e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.cancelled() => return false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    fn container(&self, role: Role, idx: usize) -> &Container {
        match role {
            Role::Init => &self.spec.init_containers[idx],
            Role::Main => &self.spec.containers[idx],
        }
    }

    fn with_status(&self, role: Role, idx: usize, f: impl FnOnce(&mut ContainerState)) {
        self.update(|s| match role {
            Role::Init => f(&mut s.init[idx]),
            Role::Main => f(&mut s.main[idx]),
        });
    }

    fn restart_count(&self, role: Role, idx: usize) -> u32 {
        let s = self.state();
        match role {
            Role::Init => s.init[idx].restart_count,
            Role::Main => s.main[idx].restart_count,
        }
    }

    /// Whether a container that ended with `code` runs again.
    fn restarts(&self, role: Role, code: i32) -> bool {
        match role {
            // Init containers are retried until they succeed, unless the pod never restarts.
            Role::Init => code != 0 && self.spec.restart() != RestartPolicy::Never,
            Role::Main => self.spec.restart().restarts(code),
        }
    }

    /// Run one container to the end of its life in this pod: start, watch, restart with
    /// back-off while the restart policy says so.
    async fn supervise(self: Arc<Self>, role: Role, idx: usize) {
        let backoff = self.shared.backoff;
        let mut delay = backoff.initial;
        let name = self.container(role, idx).name.clone();
        loop {
            if self.stop.is_cancelled() {
                self.with_status(role, idx, |c| c.done = true);
                return;
            }
            let started = match self.start_container(role, idx).await {
                Ok(c) => c,
                Err((reason, message)) => {
                    self.event(true, "Failed", format!("Error: {message}"));
                    self.with_status(role, idx, |c| {
                        c.state = State::Waiting {
                            reason,
                            message: Some(message),
                        }
                    });
                    if !self.sleep(delay).await {
                        self.with_status(role, idx, |c| c.done = true);
                        return;
                    }
                    delay = (delay * 2).min(backoff.max);
                    continue;
                }
            };
            let (container, image_id, log_path, mut exec_target) = started;
            exec_target.pid = container.pid();
            self.shared
                .exec
                .insert(&self.uid, &name, exec_target.clone());
            let started_at = Utc::now();
            let began = Instant::now();
            let restart = self.restart_count(role, idx);
            let c_spec = self.container(role, idx).clone();
            self.event(false, "Started", format!("Started container {name}"));
            self.with_status(role, idx, |c| {
                c.state = State::Running { started_at };
                c.image_id = image_id.clone();
                c.container_id = Some(format!("ledge://{}/{}/{restart}", self.uid, c.name));
                // As kubelet: not ready before started, whether or not it has a readiness probe.
                c.started = c_spec.startup_probe.is_none();
                c.ready = role == Role::Main
                    && c_spec.readiness_probe.is_none()
                    && c_spec.startup_probe.is_none();
            });
            let killed = Arc::new(Notify::new());
            let probes = (role == Role::Main)
                .then(|| tokio::spawn(self.clone().probe(idx, exec_target, killed.clone())));
            let grace = || Duration::from_secs(self.grace.load(Ordering::Acquire));
            let exit = tokio::select! {
                exit = container.wait() => exit,
                _ = self.stop.cancelled() => {
                    self.event(false, "Killing", format!("Stopping container {name}"));
                    container.stop(grace()).await
                }
                _ = killed.notified() => container.stop(grace()).await,
            };
            if let Some(p) = probes {
                p.abort();
            }
            self.shared.logs.ended(&log_path);
            self.shared.exec.remove(&self.uid, &name);
            let finished_at = Utc::now();
            let again = !self.stop.is_cancelled() && self.restarts(role, exit.code);
            self.with_status(role, idx, |c| {
                c.state = State::Terminated {
                    exit: exit.clone(),
                    started_at: Some(started_at),
                    finished_at,
                };
                c.ready = role == Role::Init && exit.code == 0;
                c.started = false;
                c.done = !again;
            });
            if !again {
                return;
            }
            if began.elapsed() >= backoff.reset_after {
                delay = backoff.initial;
            }
            let message = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                human(delay),
                self.name,
                self.namespace,
                self.uid
            );
            self.event(
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    self.name, self.namespace, self.uid
                ),
            );
            self.with_status(role, idx, |c| {
                c.last_state = Some(c.state.clone());
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(message),
                };
            });
            if !self.sleep(delay).await {
                self.with_status(role, idx, |c| {
                    if let Some(last) = c.last_state.take() {
                        c.state = last;
                    }
                    c.done = true;
                });
                return;
            }
            delay = (delay * 2).min(backoff.max);
            self.with_status(role, idx, |c| c.restart_count += 1);
        }
    }

    /// Sleep unless stopped; `false` if stopped.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    /// Build the container's spec and start it; the error is (waiting reason, message).
    async fn start_container(
        &self,
        role: Role,
        idx: usize,
    ) -> Result<
        (
            Box<dyn ledge_runtime::Container>,
            String,
            PathBuf,
            crate::exec::Target,
        ),
        (String, String),
    > {
        let Some(runtime) = self.runtime.clone() else {
            return Err((
                "CreateContainerConfigError".into(),
                self.runtime_error.clone(),
            ));
        };
        let c = self.container(role, idx).clone();
        let pod = self.latest().ok_or_else(|| {
            (
                "ContainerCreating".to_string(),
                "the pod is gone".to_string(),
            )
        })?;
        let config_err = |m: String| ("CreateContainerConfigError".to_string(), m);
        let refs = Refs::fetch(&*self.shared.client, &self.namespace, &self.spec)
            .await
            .map_err(|e| {
                config_err(format!("cannot read the pod's ConfigMaps and Secrets: {e}"))
            })?;
        let env = env::resolve(&pod, &c, &refs, &self.shared.node).map_err(config_err)?;
        let mounts = {
            let vols = self.volumes.lock().unwrap_or_else(PoisonError::into_inner);
            volumes::mounts(&c, &vols).map_err(config_err)?
        };
        let (artifact, image_id) = self.resolve_image(&c, runtime.name())?;
        let restart = self.restart_count(role, idx);
        let log_path = self
            .shared
            .log_dir(&self.namespace, &self.name, &self.uid)
            .join(&c.name)
            .join(format!("{restart}.log"));
        let log = LogWriter::create(&log_path).map_err(|e| {
            (
                "CreateContainerError".to_string(),
                format!("cannot create the log {}: {e}", log_path.display()),
            )
        })?;
        let mut exec_env = env.clone();
        if !exec_env.iter().any(|(k, _)| k == "HOSTNAME") {
            exec_env.push(("HOSTNAME".into(), self.name.clone()));
        }
        let exec_target = crate::exec::Target {
            name: c.name.clone(),
            pid: None,
            env: exec_env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            runtime: runtime.name(),
        };
        let spec = ContainerSpec {
            namespace: self.namespace.clone(),
            pod_name: self.name.clone(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            artifact,
            command: env::expand_all(&c.command, &env),
            args: env::expand_all(&c.args, &env),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            mounts,
            ports: ports(&c),
            limits: limits(&c),
            log: Arc::new(log),
        };
        self.shared.logs.started(&log_path);
        match runtime.start(spec).await {
            Ok(started) => {
                self.event(false, "Created", format!("Created container: {}", c.name));
                Ok((started, image_id, log_path, exec_target))
            }
            Err(e) => {
                self.shared.logs.ended(&log_path);
                Err((e.reason().to_string(), e.to_string()))
            }
        }
    }

    /// The image's content on this node: (artifact, imageID).
    fn resolve_image(
        &self,
        c: &Container,
        runtime: &str,
    ) -> Result<(Option<PathBuf>, String), (String, String)> {
        let found = self
            .shared
            .images
            .resolve(&c.image)
            .map_err(|e| ("InvalidImageName".to_string(), e.to_string()))?;
        match found {
            Some((path, rec)) => {
                if rec.kind.runtime() != runtime {
                    return Err((
                        "InvalidImage".into(),
                        format!(
                            "image {:?} is a {:?} artifact, which the {runtime} runtime cannot run: set runtimeClassName: {}",
                            c.image,
                            rec.kind,
                            rec.kind.runtime()
                        ),
                    ));
                }
                self.event(
                    false,
                    "Pulled",
                    format!("Container image \"{}\" already present on machine", c.image),
                );
                Ok((Some(path), rec.digest))
            }
            // A process container may name a host program in `command` instead of an image.
            None if runtime == "process" && !c.command.is_empty() => Ok((None, String::new())),
            None => {
                let msg = format!(
                    "Container image \"{}\" is not present with pull policy of Never: import it with `ledge image import FILE --name {}` on node {}",
                    c.image, c.image, self.shared.node_name
                );
                self.event(true, "ErrImageNeverPull", msg.clone());
                Err(("ErrImageNeverPull".into(), msg))
            }
        }
    }

    /// Run the probes of the container running as `target` until aborted; a failed liveness
    /// or startup probe notifies `kill`.
    async fn probe(self: Arc<Self>, idx: usize, target: crate::exec::Target, kill: Arc<Notify>) {
        let c = self.spec.containers[idx].clone();
        let make = |p: &Option<super::spec::Probe>| p.as_ref().map(|p| Prober::new(p, &c, &target));
        let startup = make(&c.startup_probe);
        let readiness = make(&c.readiness_probe);
        let liveness = make(&c.liveness_probe);
        for p in [&startup, &readiness, &liveness].into_iter().flatten() {
            if let Err(e) = p {
                self.event(true, "Unhealthy", format!("Probe error: {e}"));
            }
        }
        if let Some(Ok(p)) = startup {
            if !self.run_probe(&p, "Startup").await {
                self.event(
                    false,
                    "Killing",
                    format!(
                        "Container {} failed startup probe, will be restarted",
                        c.name
                    ),
                );
                kill.notify_one();
                return;
            }
            let ready = c.readiness_probe.is_none();
            self.with_status(Role::Main, idx, |s| {
                s.started = true;
                s.ready = ready;
            });
        }
        let readiness = readiness.and_then(Result::ok);
        let liveness = liveness.and_then(Result::ok);
        let me = self.clone();
        let ready_task = readiness.map(|p| {
            tokio::spawn(async move {
                tokio::time::sleep(p.initial_delay).await;
                let (mut ok, mut bad) = (0u32, 0u32);
                loop {
                    match p.run().await {
                        Ok(()) => {
                            ok += 1;
                            bad = 0;
                            if ok >= p.success_threshold {
                                me.with_status(Role::Main, idx, |s| s.ready = true);
                            }
                        }
                        Err(e) => {
                            bad += 1;
                            ok = 0;
                            if bad >= p.failure_threshold {
                                me.with_status(Role::Main, idx, |s| s.ready = false);
                            }
                            me.event(true, "Unhealthy", format!("Readiness probe failed: {e}"));
                        }
                    }
                    tokio::time::sleep(p.period).await;
                }
            })
        });
        struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                if let Some(t) = &self.0 {
                    t.abort();
                }
            }
        }
        let _guard = AbortOnDrop(ready_task);
        if let Some(p) = liveness {
            if !self.run_probe(&p, "Liveness").await {
                self.event(
                    false,
                    "Killing",
                    format!(
                        "Container {} failed liveness probe, will be restarted",
                        c.name
                    ),
                );
                kill.notify_one();
            }
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Probe until `failureThreshold` consecutive failures; `true` once a startup probe passed.
    async fn run_probe(&self, p: &Prober, what: &str) -> bool {
        tokio::time::sleep(p.initial_delay).await;
        let mut bad = 0u32;
        loop {
            match p.run().await {
                Ok(()) => {
                    bad = 0;
                    if what == "Startup" {
                        return true;
                    }
                }
                Err(e) => {
                    bad += 1;
                    self.event(true, "Unhealthy", format!("{what} probe failed: {e}"));
                    if bad >= p.failure_threshold {
                        return false;
                    }
                }
            }
            tokio::time::sleep(p.period).await;
        }
    }

    /// Write the status whenever it changed, until aborted. A write the server could not take
    /// (the link is down) is retried with capped back-off until it lands, so what happened
    /// offline reaches the API once the link is back; a new version of the pod from the API
    /// (which may carry a status the server changed meanwhile, such as Ready=False on a node
    /// that was unreachable) is compared again.
    async fn push_status(self: Arc<Self>) {
        let mut acked: Option<Acked> = None;
        let mut retry: Option<Duration> = None;
        loop {
            match retry {
                None => self.changed.notified().await,
                Some(delay) => tokio::select! {
                    _ = self.changed.notified() => {}
                    _ = tokio::time::sleep(delay) => {}
                },
            }
            // Coalesce a burst of changes (volumes ready, container started) into one write,
            // without holding a pod's Running back noticeably.
            tokio::time::sleep(Duration::from_millis(2)).await;
            retry = match self.write_status(&mut acked).await {
                Ok(()) => None,
                Err(()) => Some(retry.map_or(STATUS_RETRY_MIN, |d| (d * 2).min(STATUS_RETRY_MAX))),
            };
        }
    }

    async fn flush_status(&self) {
        let _ = self.write_status(&mut None).await;
    }

    /// Write the status if the API does not have it yet. `Err` when the server could not be
    /// reached (try again later).
    async fn write_status(&self, acked: &mut Option<Acked>) -> Result<(), ()> {
        for attempt in 0..3 {
            let Some(pod) = self.latest() else {
                return Ok(());
            };
            let old = pod.get("status").cloned().unwrap_or_else(|| json!({}));
            let status = self.state().to_status(&old, Utc::now());
            // The informer may not have caught up with our own last write: until it has, that
            // write is what the API holds.
            let known = match acked.as_ref() {
                Some(a) if a.resource_version > resource_version(&pod) => &a.status,
                _ => &old,
            };
            if *known == status {
                return Ok(());
            }
            let body = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
                "status": status,
            });
            match self
                .shared
                .client
                .update_status(&POD, Some(&self.namespace), body)
                .await
            {
                Ok(written) => {
                    *acked = Some(Acked {
                        status,
                        resource_version: resource_version(&written),
                    });
                    return Ok(());
                }
                Err(e) if e.code == 404 => return Ok(()),
                Err(e) if e.code == 503 => {
                    tracing::debug!(pod = %self.name, error = %e, "the server is unreachable; the pod status waits");
                    return Err(());
                }
                Err(e) => {
                    tracing::debug!(pod = %self.name, attempt, error = %e, "pod status update failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        Err(())
    }

    /// Every container has stopped: complete the pod's deletion (zero-grace DELETE, only for
    /// this uid).
    async fn finish_deletion(&self) {
        if let Err(e) = self
            .shared
            .http
            .delete_now(&POD, &self.namespace, &self.name, &self.uid)
            .await
            && e.code != 404
            && e.code != 409
        {
            tracing::warn!(pod = %self.name, error = %e, "cannot complete the pod's deletion");
        }
    }

    fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.pod_dir);
        let _ =
            std::fs::remove_dir_all(self.shared.log_dir(&self.namespace, &self.name, &self.uid));
    }
}

impl ContainerState {
    fn exit_ok(&self) -> bool {
        matches!(&self.state, State::Terminated { exit, .. } if exit.code == 0)
    }
}

fn ports(c: &Container) -> Vec<Port> {
    c.ports
        .iter()
        .filter_map(|p| {
            Some(Port {
                name: p.name.clone(),
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            })
        })
        .collect()
}

fn limits(c: &Container) -> Limits {
    let get = |k: &str| {
        c.resources
            .limits
            .as_ref()
            .and_then(|l| l.get(k))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
    };
    Limits {
        memory_bytes: get("memory")
            .and_then(|q| ledge_api::quantity::value(&q).ok())
            .and_then(|v| u64::try_from(v).ok()),
        cpu_millis: get("cpu")
            .and_then(|q| ledge_api::quantity::milli_value(&q).ok())
            .and_then(|v| u64::try_from(v).ok()),
    }
}

/// `10s`, `1m20s`, `5m0s`, as Go prints durations in kubelet's back-off message.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}
