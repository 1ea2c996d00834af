//! The baseline: a single-member Debian `etcd` on loopback (plaintext gRPC, its own temporary
//! data directory) driven with raw put/get/range/watch through the `etcd-client` crate, under
//! the keys kube-apiserver would use (`/registry/configmaps/<ns>/<name>`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, GetOptions, WatchOptions};
use tokio::sync::mpsc;

use crate::load::{self, Percentiles, Phase, Receipt};
use crate::plan::{Figures, Plan};
use crate::proc::{self, Server};

fn key(ns: &str, name: &str) -> String {
    format!("/registry/configmaps/{ns}/{name}")
}

/// Run every scenario against a fresh `etcd` started from `bin`; the disk-write phase puts
/// values of `update_bytes` (the size of the object ledge stored in the same phase).
pub async fn bench(
    bin: &Path,
    work: &Path,
    plan: &Plan,
    update_bytes: usize,
) -> anyhow::Result<Figures> {
    let data = work.join("etcd-data");
    let (mut server, client_url) = spawn_cluster(bin, work, "etcd", 1)?
        .pop()
        .context("no etcd member started")?;
    let pid = server.pid();
    let cpu = proc::CpuSample::take(pid);
    let mut fig = Figures {
        version: proc::version_line(bin),
        ..Default::default()
    };

    wait_ready(&mut server, &client_url).await?;
    tokio::time::sleep(plan.settle()).await;
    fig.idle_rss = proc::rss_bytes(pid)?;
    println!("etcd: idle RSS {} kB", fig.idle_rss / 1024);

    let pool = Pool::connect(&client_url, plan.connections).await?;
    let p = pool.clone();
    load::run(phase(plan, 500, None), move |i| {
        let mut c = p.pick(i);
        async move {
            c.get("/registry/namespaces/default", None)
                .await
                .map(drop)
                .map_err(Into::into)
        }
    })
    .await?;

    let cpu0 = proc::cpu_seconds(pid);

    fig.create = put_many(&pool, plan, "bench", plan.objects).await?;
    fig.create.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("etcd: put {:.0}/s", fig.create.per_sec());
    tokio::time::sleep(plan.settle()).await;
    fig.loaded_rss = proc::rss_bytes(pid)?;
    fig.disk_bytes = proc::dir_size(&data);

    let (p, n) = (pool.clone(), plan.objects);
    let cpu0 = proc::cpu_seconds(pid);
    fig.get = load::run(phase(plan, usize::MAX, Some(plan.get_secs)), move |i| {
        let mut c = p.pick(i);
        async move {
            let resp = c
                .get(key("bench", &format!("cm-{:05}", load::spread(i, n))), None)
                .await?;
            if resp.kvs().len() != 1 {
                bail!("get found {} keys", resp.kvs().len());
            }
            Ok(())
        }
    })
    .await?;
    fig.get.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("etcd: get {:.0}/s", fig.get.per_sec());

    put_many(&pool, plan, "bench-list", plan.list_items).await?;
    let prefix = key("bench-list", "");
    let first = pool
        .pick(0)
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    fig.list_response_bytes = first
        .kvs()
        .iter()
        .map(|kv| kv.key().len() + kv.value().len())
        .sum();
    let (p, want) = (pool.clone(), plan.list_items);
    let cpu0 = proc::cpu_seconds(pid);
    fig.list = load::run(phase(plan, usize::MAX, Some(plan.list_secs)), move |i| {
        let (mut c, prefix) = (p.pick(i), prefix.clone());
        async move {
            let resp = c.get(prefix, Some(GetOptions::new().with_prefix())).await?;
            if resp.kvs().len() != want {
                bail!("range found {} keys, want {want}", resp.kvs().len());
            }
            Ok(())
        }
    })
    .await?;
    fig.list.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("etcd: range {:.0}/s", fig.list.per_sec());

    fig.watch = watch_fan_out(&client_url, &pool, plan).await?;
    println!("etcd: watch p99 {:?}", fig.watch.from_ack.p99);

    updates(&pool, plan, pid, update_bytes, &mut fig).await?;
    fig.peak_rss = proc::peak_rss_bytes(pid)?;
    fig.cpu = cpu.since(pid);
    server.check_alive()?;
    drop(pool);
    server.stop();
    Ok(fig)
}

/// Start a fresh etcd cluster of `size` members from `bin` on free loopback ports (plaintext,
/// etcd's default timings) and return each member with its client URL, without waiting for
/// them: call [`wait_ready`] on each. A lone member keeps its data in `work/<name>-data` and logs
/// to `work/<name>.log`; member i of a larger cluster uses `<name>-<i>` instead.
pub fn spawn_cluster(
    bin: &Path,
    work: &Path,
    name: &str,
    size: usize,
) -> anyhow::Result<Vec<(Server, String)>> {
    let members: Vec<(String, u16, u16)> = (0..size)
        .map(|i| {
            let member = if size == 1 {
                name.to_string()
            } else {
                format!("{name}-{i}")
            };
            Ok((member, proc::free_port()?, proc::free_port()?))
        })
        .collect::<anyhow::Result<_>>()?;
    let initial = members
        .iter()
        .map(|(m, _, peer)| format!("{m}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut started = Vec::with_capacity(size);
    for (member, client_port, peer_port) in &members {
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin);
        cmd.args(["--name", member])
            .arg("--data-dir")
            .arg(work.join(format!("{member}-data")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"]);
        let log = work.join(format!("{member}.log"));
        let server = Server::spawn("etcd", cmd, &log, &work.join("pids"))?;
        started.push((server, client_url));
    }
    Ok(started)
}

fn phase(plan: &Plan, max_ops: usize, secs: Option<u64>) -> Phase {
    Phase {
        clients: plan.clients,
        max_ops,
        duration: secs.map(Duration::from_secs),
    }
}

/// A fixed set of gRPC channels (each `Client` is one HTTP/2 connection) shared round-robin.
#[derive(Clone)]
struct Pool(Vec<Client>);

impl Pool {
    async fn connect(url: &str, connections: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            clients.push(
                Client::connect([url], None)
                    .await
                    .context("connect to etcd")?,
            );
        }
        Ok(Self(clients))
    }

    fn pick(&self, i: usize) -> Client {
        self.0[i % self.0.len()].clone()
    }
}

/// Wait (at most 60 s) for etcd to answer a read (a member of a cluster answers only once the
/// cluster has a leader).
pub async fn wait_ready(server: &mut Server, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_error = String::new();
    while Instant::now() < deadline {
        server.check_alive()?;
        let attempt = async {
            let mut c = Client::connect([url], None).await?;
            c.get("ready", None).await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "etcd not ready in 60 s ({last_error}); log:\n{}",
        server.log_tail()
    )
}

async fn put_many(
    pool: &Pool,
    plan: &Plan,
    ns: &'static str,
    count: usize,
) -> anyhow::Result<load::LoadStats> {
    let (p, bytes) = (pool.clone(), plan.value_bytes);
    load::run(phase(plan, count, None), move |i| {
        let mut c = p.pick(i);
        async move {
            c.put(key(ns, &format!("cm-{i:05}")), load::filler(bytes, i), None)
                .await?;
            Ok(())
        }
    })
    .await
}

/// The write number in a watched key `.../w-<k>`.
fn write_index(key: &[u8]) -> Option<usize> {
    let key = std::str::from_utf8(key).ok()?;
    key.rsplit_once("/w-")?.1.parse().ok()
}

async fn watch_fan_out(url: &str, pool: &Pool, plan: &Plan) -> anyhow::Result<load::WatchStats> {
    let watch_pool = Pool::connect(url, plan.watch_connections).await?;
    let prefix = key("bench-watch", "");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut opening = Vec::with_capacity(plan.watchers);
    for w in 0..plan.watchers {
        let (mut c, prefix) = (watch_pool.pick(w), prefix.clone());
        opening.push(tokio::spawn(async move {
            let mut stream = c
                .watch(prefix, Some(WatchOptions::new().with_prefix()))
                .await?;
            // etcd confirms a watch with a `created` message before any event.
            match stream.message().await? {
                Some(m) if m.created() => Ok(stream),
                _ => bail!("watch was not created"),
            }
        }));
    }
    let mut tasks = Vec::with_capacity(plan.watchers);
    for open in opening {
        let mut stream = open.await??;
        let tx: mpsc::UnboundedSender<Receipt> = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.message().await {
                let at = Instant::now();
                for event in msg.events() {
                    if let Some(write) = event.kv().and_then(|kv| write_index(kv.key())) {
                        let _ = tx.send(Receipt { write, at });
                    }
                }
            }
        }));
    }
    drop(tx);
    let bytes = plan.value_bytes;
    let stats = load::fan_out(plan.watchers, plan.watch_writes, rx, |k| {
        let mut c = pool.pick(k);
        async move {
            c.put(
                key("bench-watch", &format!("w-{k}")),
                load::filler(bytes, k),
                None,
            )
            .await?;
            Ok(())
        }
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    stats
}

/// Sequential puts of one small value of `size` bytes, counting the bytes etcd wrote to disk
/// meanwhile.
async fn updates(
    pool: &Pool,
    plan: &Plan,
    pid: u32,
    size: usize,
    fig: &mut Figures,
) -> anyhow::Result<()> {
    let mut c = pool.pick(0);
    let k = key("default", "wear");
    c.put(k.as_str(), load::filler(size, 0), None).await?;
    tokio::time::sleep(plan.settle()).await;
    let before = proc::write_bytes(pid)?;
    let mut samples = Vec::with_capacity(plan.updates);
    for i in 1..=plan.updates {
        let t0 = Instant::now();
        c.put(k.as_str(), load::filler(size, i), None).await?;
        samples.push(t0.elapsed());
    }
    tokio::time::sleep(plan.settle()).await;
    fig.update_write_bytes = proc::write_bytes(pid)?.saturating_sub(before);
    fig.updates = plan.updates;
    fig.update_object_bytes = size;
    fig.update_latency = Percentiles::of(&mut samples);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_write_in_a_key() {
        assert_eq!(
            write_index(b"/registry/configmaps/bench-watch/w-3"),
            Some(3)
        );
        assert_eq!(write_index(b"/registry/configmaps/bench-watch/cm-3"), None);
    }
}
