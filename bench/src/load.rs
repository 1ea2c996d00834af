//! System-independent measurement: closed-loop load from N concurrent clients (each sends its
//! next request when the previous one is answered, like a controller does), latency
//! percentiles, and the watch fan-out clock. The ledge and etcd drivers plug their operations in.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// The longest one operation may take before it counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Latency percentiles of a set of samples (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl Percentiles {
    /// Percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let rank = |q: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
        }
    }
}

/// What one load phase measured.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Operations that succeeded.
    pub ok: usize,
    /// Operations that failed or timed out.
    pub errors: usize,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of the successful operations.
    pub latency: Percentiles,
    /// CPU seconds the server under test used during the phase (set by the caller).
    pub server_cpu: f64,
}

impl LoadStats {
    /// Successful operations per second.
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU microseconds per successful operation.
    pub fn server_cpu_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.ok.max(1) as f64
    }
}

/// How long and how hard one phase runs.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Concurrent clients.
    pub clients: usize,
    /// Operations in total (the phase ends earlier at `duration`).
    pub max_ops: usize,
    /// Time limit, if any.
    pub duration: Option<Duration>,
}

/// Run `op(i)` for i = 0, 1, 2, ... from `phase.clients` concurrent clients until `max_ops`
/// operations were issued or `duration` passed.
///
/// # Errors
/// When more than 1% of the operations failed (the first failure is quoted): a benchmark of
/// failing requests measures nothing.
pub async fn run<F, Fut>(phase: Phase, op: F) -> anyhow::Result<LoadStats>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = phase.duration.map(|d| start + d);
    let mut workers = Vec::with_capacity(phase.clients);
    for _ in 0..phase.clients {
        let op = op.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= phase.max_ops || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout(OP_TIMEOUT, op(i)).await {
                    Ok(Ok(())) => samples.push(t0.elapsed()),
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| "timed out".to_string());
                    }
                }
            }
            (samples, errors, first_error)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for w in workers {
        let (s, e, f) = w.await.context("load worker panicked")?;
        samples.extend(s);
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = start.elapsed();
    let ok = samples.len();
    if errors * 100 > ok + errors {
        bail!(
            "{errors} of {} operations failed; first: {}",
            ok + errors,
            first_error.unwrap_or_default()
        );
    }
    Ok(LoadStats {
        ok,
        errors,
        elapsed,
        latency: Percentiles::of(&mut samples),
        server_cpu: 0.0,
    })
}

/// One watcher saw the event of one write.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// Which write (0 is the unmeasured synchronising write).
    pub write: usize,
    /// When the bytes carrying the event reached the watcher.
    pub at: Instant,
}

/// What the watch fan-out measured.
#[derive(Debug, Clone, Default)]
pub struct WatchStats {
    /// (watcher, write) deliveries expected but not seen within the wait.
    pub missed: usize,
    /// Deliveries that reached the watcher before the writer had its acknowledgement.
    pub before_ack: usize,
    /// Per (watcher, write): from the write's acknowledgement to delivery (0 if before it).
    pub from_ack: Percentiles,
    /// Per (watcher, write): from sending the write to delivery.
    pub from_send: Percentiles,
    /// Per write: from the acknowledgement to delivery at the last of the watchers.
    pub to_all: Percentiles,
}

/// Measure fan-out: `write(k)` makes one change every watcher must see and returns once it is
/// acknowledged; watchers report through `rx`. Write 0 only proves every watcher is live.
///
/// # Errors
/// When a write fails or the synchronising write does not reach every watcher in 60 s.
pub async fn fan_out<W, WF>(
    watchers: usize,
    writes: usize,
    mut rx: mpsc::UnboundedReceiver<Receipt>,
    mut write: W,
) -> anyhow::Result<WatchStats>
where
    W: FnMut(usize) -> WF,
    WF: Future<Output = anyhow::Result<()>>,
{
    // Per write: (sent, acknowledged, delivery times).
    let mut log: Vec<(Instant, Instant, Vec<Instant>)> = Vec::with_capacity(writes + 1);
    for k in 0..=writes {
        let sent = Instant::now();
        tokio::time::timeout(OP_TIMEOUT, write(k))
            .await
            .context("watch write timed out")??;
        log.push((sent, Instant::now(), Vec::with_capacity(watchers)));
        let wait = if k == 0 { 60 } else { 5 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        while log[k].2.len() < watchers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) if r.write <= k => log[r.write].2.push(r.at),
                Ok(Some(_)) => {}
                Ok(None) => bail!("all watchers ended"),
                Err(_) => break,
            }
        }
        if k == 0 && log[0].2.len() < watchers {
            bail!(
                "only {} of {watchers} watchers saw the first write",
                log[0].2.len()
            );
        }
        // Let the watchers' read loops go idle so writes do not overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while let Ok(r) = rx.try_recv() {
        if r.write <= writes {
            log[r.write].2.push(r.at);
        }
    }
    let mut stats = WatchStats::default();
    let (mut from_ack, mut from_send, mut to_all) = (Vec::new(), Vec::new(), Vec::new());
    for (sent, acked, deliveries) in &log[1..] {
        stats.missed += watchers.saturating_sub(deliveries.len());
        for at in deliveries {
            stats.before_ack += usize::from(at < acked);
            from_ack.push(at.saturating_duration_since(*acked));
            from_send.push(at.saturating_duration_since(*sent));
        }
        if let Some(last) = deliveries.iter().max() {
            to_all.push(last.saturating_duration_since(*acked));
        }
    }
    stats.from_ack = Percentiles::of(&mut from_ack);
    stats.from_send = Percentiles::of(&mut from_send);
    stats.to_all = Percentiles::of(&mut to_all);
    Ok(stats)
}

/// A deterministic spread of indices in `0..n` (a multiplicative hash), so gets do not walk
/// the keys in insertion order.
pub fn spread(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761)) % n.max(1)
}

/// `len` bytes of printable filler, different per `seed`, for 1 KB values.
pub fn filler(len: usize, seed: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = (seed as u64).wrapping_mul(6_364_136_223_846_793_005) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
    }

    #[test]
    fn filler_has_requested_length_and_varies() {
        assert_eq!(filler(1024, 1).len(), 1024);
        assert_ne!(filler(64, 1), filler(64, 2));
    }
}
