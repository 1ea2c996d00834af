//! HTTP probes from inside a bed host's network namespace, without a process per request: each
//! probing thread enters the namespace itself (`setns` moves only the calling thread), then
//! connects with plain `std::net`. One thread per port, so a port that accepts but has nobody
//! answering yet cannot hold up the others.
//!
//! What does not live here: deciding what to probe or when (`autonomy`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Stop;

/// Pause between two connection attempts to a port that refused: short enough for a resolution
/// far below the 2 s goal, long enough that 50 probing threads cost a few % of one core
/// (a refused connect is a few tens of µs).
const RETRY: Duration = Duration::from_millis(20);
/// How long a connect may take (the namespace is local: only a SYN nobody answers waits).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an accepted request may take to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The network namespace file of a bed host.
pub fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .with_context(|| format!("setns into {}", path.display()))?;
    Ok(())
}

/// One `GET /` answered `200` (HTTP/1.1, `Connection: close`), from the current thread's
/// namespace.
fn answers_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

/// For each port, whether `ip:port` answers `GET /` with 200 right now, asked from inside the
/// namespace at `netns` (all ports at once).
pub fn answering(netns: &Path, ip: IpAddr, ports: &[u16]) -> anyhow::Result<Vec<bool>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .map(|&port| {
                s.spawn(move || -> anyhow::Result<bool> {
                    enter(netns)?;
                    Ok(answers_ok(SocketAddr::new(ip, port)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
            })
            .collect()
    })
}

/// Starts one probing thread per port inside `netns`; once every thread is in the namespace it
/// calls `start` (which returns the instant to measure from), and then returns, for each port,
/// how long after that instant it first answered `GET /` with 200 (`None`: not within
/// `timeout`, or the run was stopped).
pub fn time_to_answer(
    netns: &Path,
    ip: IpAddr,
    ports: &[u16],
    timeout: Duration,
    stop: &Stop,
    start: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let ready = Barrier::new(ports.len() + 1);
    let go = Barrier::new(ports.len() + 1);
    // Set when `start` failed: nothing will answer, the threads need not wait for the timeout.
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .map(|&port| {
                let (ready, go, failed) = (&ready, &go, &failed);
                s.spawn(move || -> anyhow::Result<Option<Instant>> {
                    let entered = enter(netns);
                    // Wait at the barriers even on error: the others are waiting too.
                    ready.wait();
                    go.wait();
                    entered?;
                    let addr = SocketAddr::new(ip, port);
                    let deadline = Instant::now() + timeout;
                    while Instant::now() < deadline
                        && !stop.is_set()
                        && !failed.load(Ordering::Relaxed)
                    {
                        if answers_ok(addr) {
                            return Ok(Some(Instant::now()));
                        }
                        std::thread::sleep(RETRY);
                    }
                    Ok(None)
                })
            })
            .collect();
        ready.wait();
        let started = start();
        failed.store(started.is_err(), Ordering::Relaxed);
        go.wait();
        let answered: Vec<Option<Instant>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
            })
            .collect::<anyhow::Result<_>>()?;
        let t0 = started?;
        Ok(answered
            .into_iter()
            .map(|at| at.map(|at| at.saturating_duration_since(t0)))
            .collect())
    })
}
