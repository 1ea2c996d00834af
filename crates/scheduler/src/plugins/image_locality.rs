//! ImageLocality: prefer nodes that already hold the pod's container images
//! (`status.images`), so it starts without a pull. Each image present counts its size scaled
//! by the share of nodes holding it (an image on every node says nothing about this one), and
//! the sum maps onto 0–100 between 23 MiB and 1000 MiB per container (upstream
//! `imagelocality/image_locality.go`).

use std::collections::HashMap;

use ledge_api::Pointer as _;
use serde_json::Value;

use crate::framework::{
    Cluster, CycleState, MAX_NODE_SCORE, NodeInfo, PodInfo, PreScore, ScorePlugin,
};

/// Upstream plugin name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this the images are not worth preferring a node for.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: above this an image's presence counts the same.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The plugin.
pub struct ImageLocality;

/// The pod's images and, for each, how many nodes hold it.
struct State {
    images: Vec<(String, usize)>,
    total_nodes: usize,
    containers: i64,
}

/// Upstream `normalizedImageName`: a reference without a tag means `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as i64);
    let slash = name.rfind('/').map_or(-1, |i| i as i64);
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// Map the summed image scores onto 0–100 (upstream `calculatePriority`).
pub fn priority(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        cx: &Cluster,
        pod: &PodInfo,
        _feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) -> PreScore {
        let mut images = Vec::new();
        let mut containers = 0;
        for list in ["initContainers", "containers"] {
            let cs = pod
                .pod
                .at(&format!("/spec/{list}"))
                .and_then(Value::as_array);
            for c in cs.into_iter().flatten() {
                containers += 1;
                if let Some(image) = c.get("image").and_then(Value::as_str) {
                    let name = normalized_image_name(image);
                    let holders = cx.image_nodes.get(&name).copied().unwrap_or(0);
                    images.push((name, holders));
                }
            }
        }
        // No node holds any of the pod's images: every node scores 0.
        if images.iter().all(|(_, holders)| *holders == 0) {
            return PreScore::Skip;
        }
        state.write(State {
            images,
            total_nodes: cx.nodes.len(),
            containers,
        });
        PreScore::Run
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<State>() else {
            return 0;
        };
        priority(
            sum_scores(&s.images, &node.images, s.total_nodes),
            s.containers,
        )
    }
}

/// Sizes of the images the node holds, each scaled by the share of nodes holding it.
fn sum_scores(images: &[(String, usize)], held: &HashMap<String, i64>, total: usize) -> i64 {
    images
        .iter()
        .filter_map(|(name, holders)| {
            let size = held.get(name)?;
            let spread = *holders as f64 / total.max(1) as f64;
            Some((*size as f64 * spread) as i64)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn names_without_a_tag_mean_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(
            normalized_image_name("reg:5000/nginx"),
            "reg:5000/nginx:latest"
        );
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
    }

    #[test]
    fn nodes_holding_large_images_score_higher() {
        let with = node(json!({"metadata": {"name": "a"}, "status": {"images": [
            {"names": ["big:1"], "sizeBytes": 500 * MB}, {"names": ["small:1"], "sizeBytes": 10 * MB}]}}));
        let without = node(json!({"metadata": {"name": "b"}}));
        let all = [with.clone(), without.clone()];
        let nodes = [&with, &without];
        let image_nodes = HashMap::from([("big:1".to_string(), 1), ("small:1".to_string(), 1)]);
        let none = |_: &str| None;
        let cx = Cluster {
            nodes: &all,
            image_nodes: &image_nodes,
            runtime_class: &none,
        };
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "big:1"}]}}));
        let mut state = CycleState::default();
        ImageLocality.pre_score(&cx, &p, &nodes, &mut state);
        // 500 MiB on 1 of 2 nodes → 250 MiB: 100 * (250 - 23) / (1000 - 23) = 23.
        assert_eq!(ImageLocality.score(&state, &p, &with), 23);
        assert_eq!(ImageLocality.score(&state, &p, &without), 0);
        // A small image stays under the threshold.
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "small:1"}]}}));
        ImageLocality.pre_score(&cx, &p, &nodes, &mut state);
        assert_eq!(ImageLocality.score(&state, &p, &with), 0);
    }
}
