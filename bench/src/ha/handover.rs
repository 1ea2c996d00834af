//! The leader hand-over scenario: a 3-member etcd on loopback, two `ledge server`s on it (the
//! second joins with the first's cluster token), and a Deployment. Each round SIGKILLs the
//! server holding the `kube-system/ledge-controller-manager` Lease, at once scales the
//! Deployment through the survivor, and times, from the kill:
//!
//! - when the survivor's scale request was accepted (the API never depended on the leader);
//! - when the Lease names the survivor;
//! - when the ReplicaSet's `spec.replicas` carries the new scale — the first reconcile the
//!   survivor's Deployment controller completed as leader.
//!
//! The killed server is then started again on its data dir, port and flags, and becomes the
//! standby of the next round. No agents run: the Deployment's pods stay Pending, which the
//! Deployment controller does not care about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::RETRY_PERIOD;
use crate::kube::Kube;
use crate::proc::{self, Server};
use crate::{etcd, ledge};

/// The controller Lease (`crates/app/src/leader.rs`).
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ledge-controller-manager";
const DEPLOYMENT: &str = "ha-probe";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const REPLICASETS: &str = "/apis/apps/v1/namespaces/default/replicasets";
/// How often the Lease and the ReplicaSet are read while waiting for the hand-over.
const POLL: Duration = Duration::from_millis(25);
/// Bounds on waits for a working system (not measurements).
const HANDOVER_LIMIT: Duration = Duration::from_secs(60);
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// Pause after a restarted server is ready, so it has read the Lease (every 2 s retry period)
/// and campaigns as a standby before its peer is killed.
const STANDBY_SETTLE: Duration = Duration::from_secs(5);

/// What one round measured, each from the moment the SIGKILL was sent.
#[derive(Debug, Clone)]
pub struct Round {
    /// Which server was killed (`a` or `b`).
    pub killed: &'static str,
    /// The scale the survivor accepted.
    pub replicas: u64,
    /// Until the survivor accepted the scale.
    pub scale_accepted: Duration,
    /// Until the Lease named the survivor.
    pub lease_moved: Duration,
    /// Until the ReplicaSet's `spec.replicas` was the new scale.
    pub reconciled: Duration,
}

/// One `ledge server` of the pair: its files, its flags and, while it runs, its process and
/// an API connection to it.
struct Peer {
    name: &'static str,
    data: PathBuf,
    port: u16,
    extra: Vec<String>,
    starts: usize,
    identity: String,
    running: Option<(Server, Arc<Kube>)>,
}

impl Peer {
    fn new(work: &Path, name: &'static str, extra: Vec<String>) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            data: work.join(format!("ha-{name}-data")),
            port: proc::free_port()?,
            extra,
            starts: 0,
            identity: String::new(),
            running: None,
        })
    }

    /// Start (or start again, on the same data dir, port and flags) and wait until ready.
    async fn start(&mut self, bin: &Path, work: &Path) -> anyhow::Result<()> {
        self.starts += 1;
        let log = format!("ha-{}.{}.log", self.name, self.starts);
        let mut server = ledge::spawn_server(bin, work, &self.data, &log, self.port, &self.extra)?;
        let config = ledge::wait_ready(&mut server, &self.data).await?;
        let path = self.data.join("identity");
        self.identity = std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_string();
        let kube = Arc::new(Kube::connect(&config, 1).await?);
        self.running = Some((server, kube));
        Ok(())
    }

    fn kube(&self) -> anyhow::Result<Arc<Kube>> {
        match &self.running {
            Some((_, kube)) => Ok(kube.clone()),
            None => bail!("server {} is not running", self.name),
        }
    }

    /// SIGKILL; returns when the signal was sent.
    fn kill(&mut self) -> anyhow::Result<Instant> {
        let (server, kube) = self
            .running
            .take()
            .with_context(|| format!("server {} is not running", self.name))?;
        drop(kube);
        Ok(server.kill())
    }

    fn stop(&mut self) {
        if let Some((server, kube)) = self.running.take() {
            drop(kube);
            server.stop();
        }
    }
}

/// Run `rounds` hand-overs on a fresh 3-member etcd started from `etcd_bin`.
pub async fn run(
    bin: &Path,
    etcd_bin: &Path,
    work: &Path,
    rounds: usize,
) -> anyhow::Result<Vec<Round>> {
    let mut members = etcd::spawn_cluster(etcd_bin, work, "ha-etcd", 3)?;
    for (member, url) in &mut members {
        etcd::wait_ready(member, url).await?;
    }
    let endpoint = format!(
        "etcd://{}",
        members
            .iter()
            .map(|(_, url)| url.trim_start_matches("http://"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut flags = vec!["--datastore-endpoint".to_string(), endpoint];
    let mut a = Peer::new(work, "a", flags.clone())?;
    a.start(bin, work).await?;
    let token_path = a.data.join("token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("read {}", token_path.display()))?;
    flags.extend(["--token".to_string(), token.trim().to_string()]);
    // The first server's restarts pass the token too, as an operator's unit file would.
    a.extra = flags.clone();
    let mut b = Peer::new(work, "b", flags)?;
    b.start(bin, work).await?;
    let mut peers = [a, b];

    let kube = peers[0].kube()?;
    create_deployment(&kube).await?;
    wait_until("the first ReplicaSet", || async {
        Ok(replicas(&kube).await? == Some(1))
    })
    .await?;
    tokio::time::sleep(STANDBY_SETTLE).await;

    let mut measured = Vec::with_capacity(rounds);
    for r in 0..rounds {
        // Each round restarts a server and waits a fixed time, which would put every kill at
        // the same point of the leader's renew cycle; spread them over the cycle instead.
        tokio::time::sleep(RETRY_PERIOD.mul_f64(r as f64 / rounds as f64)).await;
        let want = r as u64 + 2;
        let holder = lease_holder(&*peers[0].kube()?).await?;
        let k = peers
            .iter()
            .position(|p| Some(&p.identity) == holder.as_ref())
            .with_context(|| format!("the Lease names neither server: {holder:?}"))?;
        let s = 1 - k;
        let survivor = peers[s].kube()?;
        let survivor_id = peers[s].identity.clone();

        let killed_at = peers[k].kill()?;
        scale(&survivor, want).await?;
        let scale_accepted = killed_at.elapsed();
        let (mut lease_moved, mut reconciled) = (None, None);
        while lease_moved.is_none() || reconciled.is_none() {
            if killed_at.elapsed() > HANDOVER_LIMIT {
                bail!(
                    "no hand-over in {HANDOVER_LIMIT:?} (Lease moved: {lease_moved:?}, \
                     ReplicaSet scaled: {reconciled:?})"
                );
            }
            if lease_moved.is_none()
                && lease_holder(&survivor).await.ok().flatten().as_ref() == Some(&survivor_id)
            {
                lease_moved = Some(killed_at.elapsed());
            }
            if reconciled.is_none() && replicas(&survivor).await.ok().flatten() == Some(want) {
                reconciled = Some(killed_at.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
        let round = Round {
            killed: peers[k].name,
            replicas: want,
            scale_accepted,
            lease_moved: lease_moved.unwrap_or_default(),
            reconciled: reconciled.unwrap_or_default(),
        };
        println!(
            "hand-over {}: killed {}; scale accepted {:.3} s, Lease moved {:.2} s, ReplicaSet \
             scaled {:.2} s",
            r + 1,
            round.killed,
            round.scale_accepted.as_secs_f64(),
            round.lease_moved.as_secs_f64(),
            round.reconciled.as_secs_f64()
        );
        measured.push(round);

        peers[k].start(bin, work).await?;
        tokio::time::sleep(STANDBY_SETTLE).await;
    }
    for peer in &mut peers {
        peer.stop();
    }
    for (member, _) in members {
        member.stop();
    }
    Ok(measured)
}

async fn create_deployment(kube: &Kube) -> anyhow::Result<()> {
    let labels = json!({"app": DEPLOYMENT});
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "probe", "image": "busybox"}]},
            },
        },
    });
    kube.expect(
        StatusCode::CREATED,
        Method::POST,
        DEPLOYMENTS,
        Some(Bytes::from(body.to_string())),
    )
    .await
    .map(drop)
}

/// Set the Deployment's `spec.replicas` (read, then a PUT carrying the resourceVersion read),
/// retrying until the server accepts it.
async fn scale(kube: &Kube, replicas: u64) -> anyhow::Result<()> {
    let path = format!("{DEPLOYMENTS}/{DEPLOYMENT}");
    let deadline = Instant::now() + SETUP_LIMIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut object: Value = serde_json::from_slice(
                &kube
                    .expect(StatusCode::OK, Method::GET, &path, None)
                    .await?,
            )?;
            object["spec"]["replicas"] = json!(replicas);
            let body = Bytes::from(object.to_string());
            kube.expect(StatusCode::OK, Method::PUT, &path, Some(body))
                .await
                .map(drop)
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the survivor did not accept the scale in {SETUP_LIMIT:?}: {last}")
}

/// The Lease's `spec.holderIdentity`, if any.
async fn lease_holder(kube: &Kube) -> anyhow::Result<Option<String>> {
    let lease: Value = serde_json::from_slice(
        &kube
            .expect(StatusCode::OK, Method::GET, LEASE, None)
            .await?,
    )?;
    Ok(lease["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// The sum of `spec.replicas` over the ReplicaSets the Deployment owns, or `None` while it
/// owns none.
async fn replicas(kube: &Kube) -> anyhow::Result<Option<u64>> {
    let list: Value = serde_json::from_slice(
        &kube
            .expect(StatusCode::OK, Method::GET, REPLICASETS, None)
            .await?,
    )?;
    Ok(owned_replicas(&list))
}

fn owned_replicas(list: &Value) -> Option<u64> {
    let owned: Vec<&Value> = list["items"]
        .as_array()?
        .iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|o| o["kind"] == "Deployment" && o["name"] == DEPLOYMENT)
                })
        })
        .collect();
    if owned.is_empty() {
        return None;
    }
    Some(
        owned
            .iter()
            .map(|rs| rs["spec"]["replicas"].as_u64().unwrap_or(1))
            .sum(),
    )
}

/// Wait (at most [`SETUP_LIMIT`]) until `check` says yes; errors count as "not yet".
async fn wait_until<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + SETUP_LIMIT;
    let mut last = String::from("not yet");
    while Instant::now() < deadline {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: not there in {SETUP_LIMIT:?} ({last})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_deployments_replicasets() {
        let owner = |kind: &str, name: &str| json!([{"kind": kind, "name": name}]);
        let list = json!({"items": [
            {"metadata": {"ownerReferences": owner("Deployment", DEPLOYMENT)},
             "spec": {"replicas": 3}},
            {"metadata": {"ownerReferences": owner("Deployment", "other")},
             "spec": {"replicas": 7}},
            {"metadata": {}, "spec": {"replicas": 5}},
        ]});
        assert_eq!(owned_replicas(&list), Some(3));
        assert_eq!(owned_replicas(&json!({"items": []})), None);
    }
}
