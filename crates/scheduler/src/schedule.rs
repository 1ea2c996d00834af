//! One scheduling cycle for one pod, without IO (upstream `schedule_one.go`'s
//! `schedulePod`): pre-filter, filter nodes until enough feasible ones are found (starting
//! where the previous cycle stopped), pre-score, score, normalize, pick the best. When no node
//! fits, the [`FitError`] carries each node's verdict for the FailedScheduling message and for
//! preemption.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::framework::{
    Cluster, CycleState, FilterPlugin, NodeInfo, PlacedPod, PodInfo, PreScore, ScorePlugin, Status,
    str_at,
};
use crate::plugins;

/// The plugins one scheduler profile runs.
pub struct Profile {
    /// Filters, in order; the first that rejects a node decides its reason.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Scores, each with its weight.
    pub scores: Vec<Box<dyn ScorePlugin>>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            filters: plugins::default_filters(),
            scores: plugins::default_scores(),
        }
    }
}

/// Pods nominated to nodes by earlier preemptions: node → pod key → pod.
pub type Nominated = HashMap<String, HashMap<String, Arc<PlacedPod>>>;

/// Why a pod fits nowhere (upstream `FitError`).
#[derive(Debug, Default)]
pub struct FitError {
    /// Number of nodes considered.
    pub total: usize,
    /// A pre-filter's rejection, which applies to every node.
    pub pre_filter: Option<String>,
    /// Each node's verdict.
    pub statuses: HashMap<String, Status>,
    /// What preemption said (`preemption: ...`), once it ran.
    pub post_filter: Option<String>,
}

impl FitError {
    /// Upstream's message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't
    /// match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption
    /// is not helpful for scheduling.` — counts per reason, sorted as strings like upstream.
    pub fn message(&self) -> String {
        if self.total == 0 {
            return "0/0 nodes are available: no nodes available to schedule pods.".into();
        }
        let mut msg = format!("0/{} nodes are available:", self.total);
        if let Some(p) = &self.pre_filter {
            msg.push_str(&format!(" {p}."));
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for reason in self.statuses.values().flat_map(Status::reasons) {
                *counts.entry(reason).or_default() += 1;
            }
            let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            if !parts.is_empty() {
                msg.push_str(&format!(" {}.", parts.join(", ")));
            }
        }
        if let Some(p) = &self.post_filter {
            msg.push(' ');
            msg.push_str(p);
            if !p.ends_with('.') {
                msg.push('.');
            }
        }
        msg
    }
}

/// Where a cycle stopped filtering, so the next one starts after it (upstream
/// `nextStartNodeIndex`): every node gets its turn even when only a share is examined.
#[derive(Default)]
pub struct Rotation(usize);

/// How many feasible nodes to find before scoring (upstream `numFeasibleNodesToFind` with the
/// adaptive `percentageOfNodesToScore`: 50% minus 1% per 125 nodes, at least 5% and 100 nodes).
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(MIN_FEASIBLE)
}

/// Run every filter's pre-filter; the first rejection applies to every node.
pub fn pre_filter(profile: &Profile, cx: &Cluster, pod: &PodInfo) -> Result<CycleState, Status> {
    let mut state = CycleState::default();
    for (i, f) in profile.filters.iter().enumerate() {
        if i < 64 && f.skip(pod) {
            state.skipped_filters |= 1 << i;
            continue;
        }
        match f.pre_filter(cx, pod, &mut state) {
            Status::Fit => {}
            rejected => return Err(rejected),
        }
    }
    Ok(state)
}

/// The first filter's rejection of a node, or `Fit`.
pub fn run_filters(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for (i, f) in profile.filters.iter().enumerate() {
        if i < 64 && state.skipped_filters & (1 << i) != 0 {
            continue;
        }
        let s = f.filter(state, pod, node);
        if s != Status::Fit {
            return s;
        }
    }
    Status::Fit
}

/// Filter a node as if the pods nominated to it with at least the pod's priority were
/// already there (they were promised the room), then — if that fits — as it is, since a
/// nominated pod may never arrive (upstream `RunFilterPluginsWithNominatedPods`).
pub fn filter_with_nominated(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    nominated: &Nominated,
) -> Status {
    if nominated.is_empty() {
        return run_filters(profile, state, pod, node);
    }
    let ahead: Vec<&Arc<PlacedPod>> = nominated
        .get(&node.name)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|p| p.priority >= pod.priority && p.key != pod.key)
        .collect();
    if ahead.is_empty() {
        return run_filters(profile, state, pod, node);
    }
    let mut with = node.clone();
    let mut with_state = state.clone();
    for p in ahead {
        with.add_pod(p.clone());
        for f in &profile.filters {
            f.add_pod(&mut with_state, pod, p, &with);
        }
    }
    match run_filters(profile, &with_state, pod, &with) {
        Status::Fit => run_filters(profile, state, pod, node),
        rejected => rejected,
    }
}

/// The outcome of a cycle that found no node.
pub struct Unschedulable {
    /// Each node's verdict.
    pub fit: FitError,
    /// The pre-filter state (for preemption), if pre-filtering passed.
    pub state: Option<CycleState>,
}

/// Choose a node for the pod.
///
/// # Errors
/// [`Unschedulable`] when no node fits.
pub fn schedule(
    profile: &Profile,
    cx: &Cluster,
    pod: &PodInfo,
    nominated: &Nominated,
    rotation: &mut Rotation,
) -> Result<String, Box<Unschedulable>> {
    let nodes = cx.nodes;
    let mut fit = FitError {
        total: nodes.len(),
        ..Default::default()
    };
    if nodes.is_empty() {
        return Err(Box::new(Unschedulable { fit, state: None }));
    }
    let state = match pre_filter(profile, cx, pod) {
        Ok(s) => s,
        Err(rejected) => {
            fit.pre_filter = rejected.reason().map(str::to_string);
            for n in nodes {
                fit.statuses.insert(n.name.clone(), rejected.clone());
            }
            return Err(Box::new(Unschedulable { fit, state: None }));
        }
    };
    // A pod that preempted goes where it made room, if that node fits now.
    let nominated_node = str_at(&pod.pod, "/status/nominatedNodeName");
    if !nominated_node.is_empty()
        && let Some(node) = nodes.iter().find(|n| n.name == nominated_node)
        && filter_with_nominated(profile, &state, pod, node, nominated) == Status::Fit
    {
        return Ok(node.name.clone());
    }
    let want = num_feasible_nodes_to_find(nodes.len());
    let start = rotation.0 % nodes.len();
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
    let mut processed = 0;
    for i in 0..nodes.len() {
        let node = &nodes[(start + i) % nodes.len()];
        processed += 1;
        match filter_with_nominated(profile, &state, pod, node, nominated) {
            Status::Fit => {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            }
            rejected => {
                fit.statuses.insert(node.name.clone(), rejected);
            }
        }
    }
    rotation.0 = (start + processed) % nodes.len();
    if feasible.is_empty() {
        return Err(Box::new(Unschedulable {
            fit,
            state: Some(state),
        }));
    }
    if feasible.len() == 1 {
        return Ok(feasible[0].name.clone());
    }
    Ok(best(profile, cx, pod, state, &feasible).to_string())
}

/// Score the feasible nodes and return the best (ties: the smallest name, so decisions are
/// reproducible; upstream picks one of the tied at random).
fn best<'a>(
    profile: &Profile,
    cx: &Cluster,
    pod: &PodInfo,
    mut state: CycleState,
    feasible: &[&'a NodeInfo],
) -> &'a str {
    let run: Vec<bool> = profile
        .scores
        .iter()
        .map(|s| s.pre_score(cx, pod, feasible, &mut state) == PreScore::Run)
        .collect();
    let mut total = vec![0i64; feasible.len()];
    // One buffer for every plugin's raw scores.
    let mut scores: Vec<(&str, i64)> = Vec::with_capacity(feasible.len());
    for (s, _) in profile.scores.iter().zip(&run).filter(|(_, run)| **run) {
        scores.clear();
        scores.extend(
            feasible
                .iter()
                .map(|n| (n.name.as_str(), s.score(&state, pod, n))),
        );
        s.normalize(&state, &mut scores);
        for (t, (_, v)) in total.iter_mut().zip(&scores) {
            *t += v * s.weight();
        }
    }
    let mut best = (i64::MIN, "");
    for (node, score) in feasible.iter().zip(total) {
        if score > best.0 || (score == best.0 && node.name.as_str() < best.1) {
            best = (score, &node.name);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    fn cx<'a>(nodes: &'a [NodeInfo], images: &'a HashMap<String, usize>) -> Cluster<'a> {
        Cluster {
            nodes,
            image_nodes: images,
            runtime_class: &|_| None,
        }
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Result<String, Box<Unschedulable>> {
        let images = HashMap::new();
        schedule(
            &Profile::default(),
            &cx(nodes, &images),
            p,
            &Nominated::new(),
            &mut Rotation::default(),
        )
    }

    #[test]
    fn message_counts_reasons_like_upstream() {
        let nodes = [
            node(
                json!({"metadata": {"name": "a", "labels": {"zone": "x"}}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
            ),
            node(
                json!({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "8", "memory": "1Gi", "pods": "10"}}}),
            ),
            node(
                json!({"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "8", "memory": "1Gi", "pods": "10"}}}),
            ),
        ];
        let p = pod(
            json!({"spec": {"nodeSelector": {"zone": "x"}, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        let Err(e) = run(&p, &nodes) else {
            panic!("scheduled")
        };
        let mut fit = e.fit;
        assert_eq!(
            fit.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        fit.post_filter = Some(
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                .into(),
        );
        assert_eq!(
            fit.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn reasons_sort_as_strings_like_upstream() {
        let mut fit = FitError {
            total: 12,
            ..Default::default()
        };
        for i in 0..12 {
            let s = if i < 10 {
                Status::Unfit("Insufficient cpu".into())
            } else {
                Status::Unresolvable("node(s) were unschedulable".into())
            };
            fit.statuses.insert(format!("n{i}"), s);
        }
        assert_eq!(
            fit.message(),
            "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."
        );
    }

    #[test]
    fn picks_the_least_allocated_node() {
        let mut busy = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
        );
        busy.requested.milli_cpu = 3000;
        let idle = node(
            json!({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
        );
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(run(&p, &[busy, idle]).ok().as_deref(), Some("b"));
    }

    #[test]
    fn pre_filter_rejection_applies_to_every_node() {
        let nodes = [node(json!({"metadata": {"name": "a"}}))];
        let p = pod(json!({"spec": {"runtimeClassName": "gone"}}));
        let Err(e) = run(&p, &nodes) else {
            panic!("scheduled")
        };
        assert_eq!(
            e.fit.message(),
            "0/1 nodes are available: RuntimeClass \"gone\" not found."
        );
    }

    #[test]
    fn nominated_pods_hold_their_room_against_lower_priority() {
        let n = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
        );
        let cpu = |name: &str, prio: i64| {
            json!({"metadata": {"namespace": "d", "name": name}, "spec": {"priority": prio,
                   "containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}})
        };
        let mut nominated = Nominated::new();
        nominated.entry("a".into()).or_default().insert(
            "d/vip".into(),
            Arc::new(PlacedPod::new(Arc::new(cpu("vip", 100)))),
        );
        let refs = [n];
        let images = HashMap::new();
        let profile = Profile::default();
        let low = pod(cpu("low", 0));
        let r = schedule(
            &profile,
            &cx(&refs, &images),
            &low,
            &nominated,
            &mut Rotation::default(),
        );
        assert!(
            r.is_err(),
            "a lower-priority pod must not take the nominated room"
        );
        let high = pod(cpu("high", 1000));
        let r = schedule(
            &profile,
            &cx(&refs, &images),
            &high,
            &nominated,
            &mut Rotation::default(),
        );
        assert_eq!(r.ok().as_deref(), Some("a"));
    }

    #[test]
    fn large_clusters_are_sampled_from_a_rotating_start() {
        let nodes: Vec<NodeInfo> = (0..200)
            .map(|i| {
                node(json!({"metadata": {"name": format!("n{i:03}")},
                    "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}))
            })
            .collect();
        let images = HashMap::new();
        let profile = Profile::default();
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        let mut rotation = Rotation::default();
        // 200 nodes: 50% - 1% = 49% → 98, raised to the 100-node minimum.
        let first = schedule(
            &profile,
            &cx(&nodes, &images),
            &p,
            &Nominated::new(),
            &mut rotation,
        );
        assert_eq!(rotation.0, 100, "filtering stops once 100 nodes fit");
        // All tie: the smallest name among the sampled ones wins, then the next sample.
        assert_eq!(first.ok().as_deref(), Some("n000"));
        let second = schedule(
            &profile,
            &cx(&nodes, &images),
            &p,
            &Nominated::new(),
            &mut rotation,
        );
        assert_eq!(second.ok().as_deref(), Some("n100"));
        assert_eq!(rotation.0, 0);
    }

    #[test]
    fn feasible_nodes_to_find_follows_upstream() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(150), 100);
        // 5000 nodes: 50 - 40 = 10% → 500.
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        // 10000 nodes: 5% floor.
        assert_eq!(num_feasible_nodes_to_find(10000), 500);
    }
}
