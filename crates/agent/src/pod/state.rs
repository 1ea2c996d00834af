//! What the node knows about one pod's containers, and the upstream `PodStatus` made from it:
//! `phase` (kubelet's `getPhase` rules), the conditions kubelet owns (`PodReadyToStartContainers`,
//! `Initialized`, `ContainersReady`, `Ready`; others such as `PodScheduled` or
//! `DisruptionTarget` are kept as the API has them), `containerStatuses` and
//! `initContainerStatuses` with `state`, `lastState`, `restartCount`, `ready`, `started`.

use chrono::{DateTime, Utc};
use ledge_api::time::format_time;
use ledge_runtime::Exit;
use serde_json::{Map, Value, json};

/// The state of one container, as `containerStatuses[].state` shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: being created, backing off, or refused (`reason`, `message`).
    Waiting {
        /// `ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`, `ErrImageNeverPull`, ...
        reason: String,
        /// Details, if any.
        message: Option<String>,
    },
    /// Running since.
    Running {
        /// `startedAt`.
        started_at: DateTime<Utc>,
    },
    /// Ended.
    Terminated {
        /// How.
        exit: Exit,
        /// `startedAt`.
        started_at: Option<DateTime<Utc>>,
        /// `finishedAt`.
        finished_at: DateTime<Utc>,
    },
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => {
                json!({"running": {"startedAt": format_time(*started_at)}})
            }
            State::Terminated {
                exit,
                started_at,
                finished_at,
            } => {
                let mut t = json!({
                    "exitCode": exit.code,
                    "reason": exit.reason,
                    "finishedAt": format_time(*finished_at),
                });
                if let Some(s) = started_at {
                    t["startedAt"] = json!(format_time(*s));
                }
                if let Some(sig) = exit.signal {
                    t["signal"] = json!(sig);
                }
                if let Some(m) = &exit.message {
                    t["message"] = json!(m);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// One container's status.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerState {
    /// Its name.
    pub name: String,
    /// The image as written in the pod.
    pub image: String,
    /// The image's digest, once resolved.
    pub image_id: String,
    /// `ledge://<pod uid>/<name>/<restart>` once started.
    pub container_id: Option<String>,
    /// Current state.
    pub state: State,
    /// The previous run's end, if it was restarted.
    pub last_state: Option<State>,
    /// How many times it was restarted.
    pub restart_count: u32,
    /// Passing its readiness probe (or running without one).
    pub ready: bool,
    /// Past its startup probe (or running without one).
    pub started: bool,
    /// Will not run again (ended and the restart policy says so).
    pub done: bool,
}

impl ContainerState {
    /// A container not started yet.
    pub fn new(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: None,
            state: State::Waiting {
                reason: reason.to_string(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            done: false,
        }
    }

    /// Whether it has ever run.
    pub fn ever_ran(&self) -> bool {
        !matches!(self.state, State::Waiting { .. }) || self.last_state.is_some()
    }

    fn exit_code(&self) -> Option<i32> {
        match &self.state {
            State::Terminated { exit, .. } => Some(exit.code),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        let mut c = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started && matches!(self.state, State::Running { .. }),
        });
        if let Some(id) = &self.container_id {
            c["containerID"] = json!(id);
        }
        c
    }
}

/// Why the whole pod failed, when it did on its own (`status.reason`).
#[derive(Clone, Debug, PartialEq)]
pub struct PodFailure {
    /// `DeadlineExceeded`, `UnexpectedAdmissionError`, ...
    pub reason: String,
    /// The message.
    pub message: String,
}

/// What the node knows about one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    /// `initContainers`.
    pub init: Vec<ContainerState>,
    /// `containers`.
    pub main: Vec<ContainerState>,
    /// The node's (and so the pod's) IP.
    pub host_ip: String,
    /// When the node accepted the pod.
    pub start_time: DateTime<Utc>,
    /// Volumes are set up and the sandbox exists.
    pub sandbox_ready: bool,
    /// A pod-level failure.
    pub failure: Option<PodFailure>,
    /// The condition types of the pod's `readinessGates`.
    pub readiness_gates: Vec<String>,
    /// When each condition last changed, by type.
    transitions: Map<String, Value>,
}

impl PodState {
    /// A pod just accepted by the node.
    pub fn new(
        init: Vec<ContainerState>,
        main: Vec<ContainerState>,
        host_ip: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            init,
            main,
            host_ip,
            start_time: now,
            sandbox_ready: false,
            failure: None,
            readiness_gates: Vec::new(),
            transitions: Map::new(),
        }
    }

    /// All init containers completed successfully.
    pub fn initialized(&self) -> bool {
        self.init.iter().all(|c| c.done && c.exit_code() == Some(0))
    }

    /// `status.phase`, by kubelet's rules.
    pub fn phase(&self) -> &'static str {
        if self.failure.is_some() {
            return "Failed";
        }
        if self
            .init
            .iter()
            .any(|c| c.done && c.exit_code().is_some_and(|e| e != 0))
        {
            return "Failed";
        }
        if !self.initialized() {
            return "Pending";
        }
        if !self.main.is_empty() && self.main.iter().all(|c| c.done) {
            return if self.main.iter().all(|c| c.exit_code() == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if self.main.iter().any(ContainerState::ever_ran) {
            "Running"
        } else {
            "Pending"
        }
    }

    /// Whether nothing will run any more.
    pub fn finished(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }

    fn condition(
        &mut self,
        ty: &str,
        ok: bool,
        reason: Option<&str>,
        old: &[Value],
        now: DateTime<Utc>,
    ) -> Value {
        let status = if ok { "True" } else { "False" };
        let previous = old
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(ty));
        let same =
            previous.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some(status));
        let time = if same {
            previous
                .and_then(|c| c.get("lastTransitionTime"))
                .cloned()
                .unwrap_or_else(|| json!(format_time(now)))
        } else {
            json!(format_time(now))
        };
        self.transitions.insert(ty.to_string(), time.clone());
        let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": time});
        if let Some(r) = reason.filter(|_| !ok) {
            c["reason"] = json!(r);
        }
        c
    }

    /// The pod's `status`, given the status the API holds now (`old`), so conditions the node
    /// does not own are kept and transition times only move on a change.
    pub fn to_status(&mut self, old: &Value, now: DateTime<Utc>) -> Value {
        let old_conditions: Vec<Value> = old
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let phase = self.phase();
        let finished = self.finished();
        let initialized = self.initialized();
        let containers_ready = !finished && self.main.iter().all(|c| c.ready);
        let sandbox = self.sandbox_ready && !finished;
        let mut conditions = Vec::new();
        const OWNED: [&str; 4] = [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ];
        for c in &old_conditions {
            let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
            if !OWNED.contains(&ty) {
                conditions.push(c.clone());
            }
        }
        let init_reason = if phase == "Succeeded" {
            "PodCompleted"
        } else {
            "ContainersNotInitialized"
        };
        let ready_reason = if phase == "Succeeded" {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        conditions.push(self.condition(
            "PodReadyToStartContainers",
            sandbox,
            None,
            &old_conditions,
            now,
        ));
        conditions.push(self.condition(
            "Initialized",
            initialized || phase == "Succeeded",
            Some(init_reason),
            &old_conditions,
            now,
        ));
        // Upstream `GeneratePodReadyCondition`: the readiness gates' conditions, which others
        // write, must be True too.
        let gate_problem = self.readiness_gates.iter().find_map(|gate| {
            let found = old_conditions
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(gate.as_str()));
            match found.and_then(|c| c.get("status")).and_then(Value::as_str) {
                Some("True") => None,
                None if found.is_none() => Some(format!(
                    "corresponding condition of pod readiness gate \"{gate}\" does not exist."
                )),
                status => Some(format!(
                    "the status of pod readiness gate \"{gate}\" is not \"True\", but {}",
                    status.unwrap_or("")
                )),
            }
        });
        let gates_hold = containers_ready && gate_problem.is_some();
        conditions.push(self.condition(
            "Ready",
            containers_ready && !gates_hold,
            Some(if gates_hold {
                "ReadinessGatesNotReady"
            } else {
                ready_reason
            }),
            &old_conditions,
            now,
        ));
        if let (true, Some(msg)) = (gates_hold, gate_problem)
            && let Some(ready) = conditions.last_mut()
        {
            ready["message"] = json!(msg);
        }
        conditions.push(self.condition(
            "ContainersReady",
            containers_ready,
            Some(ready_reason),
            &old_conditions,
            now,
        ));
        let not_ready: Vec<&str> = self
            .main
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        if !containers_ready && !finished && !not_ready.is_empty() {
            let msg = format!("containers with unready status: [{}]", not_ready.join(" "));
            for c in conditions.iter_mut().rev().take(2) {
                c["message"] = json!(msg);
            }
        }
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.host_ip,
            "podIPs": [{"ip": self.host_ip}],
            "startTime": format_time(self.start_time),
            "containerStatuses": self.main.iter().map(ContainerState::to_json).collect::<Vec<_>>(),
            "qosClass": old.get("qosClass").cloned().unwrap_or(Value::Null),
        });
        if status["qosClass"].is_null() {
            status.as_object_mut().map(|m| m.remove("qosClass"));
        }
        if !self.init.is_empty() {
            status["initContainerStatuses"] =
                Value::Array(self.init.iter().map(ContainerState::to_json).collect());
        }
        if let Some(f) = &self.failure {
            status["reason"] = json!(f.reason);
            status["message"] = json!(f.message);
        }
        if let Some(n) = old.get("nominatedNodeName") {
            status["nominatedNodeName"] = n.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn terminated(code: i32) -> State {
        State::Terminated {
            exit: Exit::code(code),
            started_at: Some(now()),
            finished_at: now(),
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let mut s = PodState::new(
            vec![ContainerState::new("init", "i", "PodInitializing")],
            vec![ContainerState::new("a", "i", "PodInitializing")],
            "10.0.0.1".into(),
            now(),
        );
        assert_eq!(s.phase(), "Pending");
        s.init[0].state = terminated(0);
        s.init[0].done = true;
        assert_eq!(s.phase(), "Pending");
        s.main[0].state = State::Running { started_at: now() };
        assert_eq!(s.phase(), "Running");
        s.main[0].state = terminated(1);
        assert_eq!(
            s.phase(),
            "Running",
            "a restarting container keeps the pod Running"
        );
        s.main[0].done = true;
        assert_eq!(s.phase(), "Failed");
        s.main[0].state = terminated(0);
        assert_eq!(s.phase(), "Succeeded");
        s.init[0].state = terminated(2);
        assert_eq!(s.phase(), "Failed");
    }

    #[test]
    fn readiness_gates_hold_back_ready() {
        let mut s = PodState::new(
            vec![],
            vec![ContainerState::new("a", "img", "ContainerCreating")],
            "10.0.0.1".into(),
            now(),
        );
        s.sandbox_ready = true;
        s.readiness_gates = vec!["example.com/lb".into()];
        s.main[0].state = State::Running { started_at: now() };
        s.main[0].ready = true;
        let ready = |s: &mut PodState, old: Value| {
            let st = s.to_status(&old, now());
            st["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()
                .clone()
        };
        let r = ready(&mut s, json!({}));
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("False"), Some("ReadinessGatesNotReady"))
        );
        assert!(
            r["message"].as_str().unwrap().contains("does not exist"),
            "{r}"
        );
        let r = ready(
            &mut s,
            json!({"conditions": [{"type": "example.com/lb", "status": "False"}]}),
        );
        assert_eq!(r["status"], "False");
        let r = ready(
            &mut s,
            json!({"conditions": [{"type": "example.com/lb", "status": "True"}]}),
        );
        assert_eq!(r["status"], "True");
    }

    #[test]
    fn status_keeps_foreign_conditions_and_transition_times() {
        let mut s = PodState::new(
            vec![],
            vec![ContainerState::new("a", "img", "ContainerCreating")],
            "10.0.0.1".into(),
            now(),
        );
        s.sandbox_ready = true;
        let old = json!({"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2025-06-01T00:00:00Z"}
        ], "qosClass": "BestEffort"});
        let st = s.to_status(&old, now());
        let cond = |ty: &str| {
            st["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == ty)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("PodScheduled")["status"], "True");
        assert_eq!(cond("Ready")["lastTransitionTime"], "2025-06-01T00:00:00Z");
        assert_eq!(
            cond("Ready")["message"],
            "containers with unready status: [a]"
        );
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(st["qosClass"], "BestEffort");
        assert_eq!(st["podIP"], "10.0.0.1");
        s.main[0].state = State::Running { started_at: now() };
        s.main[0].ready = true;
        s.main[0].started = true;
        let st = s.to_status(&st, now());
        assert_eq!(st["phase"], "Running");
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(st["containerStatuses"][0]["started"], true);
    }
}
