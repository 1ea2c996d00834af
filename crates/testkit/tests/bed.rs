//! The test bed itself: hosts reach each other until a link is cut, processes live and die as
//! told, and nothing is left behind; and a real server with two agents notices a cut link.
//!
//! They need root, `ip netns` and a built `ledge` (`LEDGE_BIN`), so they are ignored by plain
//! `cargo test`; `test.sh`'s e2e stage runs them with `--run-ignored ignored-only`.

use std::process::Command;
use std::time::Duration;

use ledge_testkit::{Bed, Cluster, ClusterOptions, Error, Host, wait_for};

/// Condition waits, not timing assertions: how long a broken bed is waited for.
const EVENTUAL: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// One ping from `from` to `to` (busybox, which test.sh installs), answered within a second.
fn ping(from: &Host, to: &Host) -> bool {
    let mut cmd = Command::new("busybox");
    cmd.args(["ping", "-c", "1", "-W", "1", &to.ip().to_string()]);
    let out = from.exec(&cmd).expect("run busybox ping");
    // nsenter's "cannot execute": not an unreachable host but a missing tool.
    assert_ne!(
        out.status.code(),
        Some(127),
        "busybox is missing (test.sh installs busybox-static): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

/// The round-trip time in ms of one ping, from busybox's `time=12.345 ms`.
fn rtt_ms(from: &Host, to: &Host) -> f64 {
    let mut cmd = Command::new("busybox");
    cmd.args(["ping", "-c", "1", "-W", "5", &to.ip().to_string()]);
    let out = from.exec_ok(&cmd).expect("ping through the delayed link");
    let text = String::from_utf8_lossy(&out.stdout);
    let time = text
        .split("time=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no time= in {text}"));
    time.parse().expect("a number of ms")
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pids_in(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Whether `pid` exists and is not a zombie (an orphan waits for init to reap it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn hosts_reach_each_other_until_cut_and_nothing_is_left() {
    let bed = Bed::new("basics").unwrap();
    let a = bed.add_host("a").unwrap();
    let b = bed.add_host("b").unwrap();
    let namespaces = bed.namespaces();
    assert_eq!(namespaces.len(), 3, "hub, a, b: {namespaces:?}");
    let listed = netns_list();
    for ns in &namespaces {
        assert!(
            listed.contains(ns.as_str()),
            "{ns} not in `ip netns list`:\n{listed}"
        );
    }

    wait_for("a to reach b", EVENTUAL, POLL, || {
        Ok::<_, Error>(ping(&a, &b).then_some(()))
    })
    .unwrap();
    let before = a.link_counters().unwrap();
    assert!(ping(&a, &b));
    let after = a.link_counters().unwrap();
    assert!(
        after.bytes.sent > before.bytes.sent && after.bytes.received > before.bytes.received,
        "a ping shows on the link's byte counters: {before:?} -> {after:?}"
    );
    assert!(
        after.packets.sent > before.packets.sent
            && after.packets.received > before.packets.received,
        "and on its packet counters: {before:?} -> {after:?}"
    );

    b.cut().unwrap();
    assert!(!ping(&a, &b), "a reached b through a cut link");
    assert!(!ping(&b, &a), "b reached a through its cut link");
    b.restore().unwrap();
    wait_for("a to reach b again", EVENTUAL, POLL, || {
        Ok::<_, Error>(ping(&a, &b).then_some(()))
    })
    .unwrap();

    // A process inside b: crash, restart, clean stop.
    let mut sleep = Command::new("sleep");
    sleep.arg("1000");
    let proc = b.spawn("sleep", &sleep).unwrap();
    let first = proc.pid();
    assert!(proc.is_running());
    assert!(
        pids_in(b.netns()).contains(&first),
        "sleep runs in b's namespace"
    );
    assert!(!pids_in(a.netns()).contains(&first));
    let status = proc.kill().unwrap();
    assert!(!status.success(), "SIGKILL is not a success: {status}");
    assert!(!proc.is_running());
    proc.restart().unwrap();
    assert!(proc.is_running());
    assert_ne!(proc.pid(), first, "restart started a new process");
    proc.stop(Duration::from_secs(5)).unwrap();
    assert!(!proc.is_running());
    let log = std::fs::read_to_string(proc.log_path()).unwrap();
    assert!(
        log.contains("==> run 2: $ nsenter"),
        "each run is headed in the log:\n{log}"
    );

    // Left running on purpose: teardown must end it, and the processes it started.
    let mut tree = Command::new("sh");
    tree.args(["-c", "sleep 1000 & sleep 1000 & wait"]);
    let left = a.spawn("tree", &tree).unwrap();
    wait_for("the tree's children", EVENTUAL, POLL, || {
        Ok::<_, Error>((pids_in(a.netns()).len() >= 3).then_some(()))
    })
    .unwrap();
    let tree_pids = pids_in(a.netns());
    drop(bed);

    assert!(!left.is_running());
    for pid in tree_pids {
        assert!(!alive(pid), "process {pid} outlived the bed");
    }
    let listed = netns_list();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "{ns} left behind:\n{listed}");
    }
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn a_bed_made_in_a_directory_keeps_its_files_there_until_dropped() {
    // Benchmarks put the data dirs on a disk this way when /tmp is a tmpfs.
    let parent = std::env::temp_dir().join(format!("ledgetk-parent-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    let bed = Bed::new_in(&parent, "inside").unwrap();
    let dir = bed.dir().to_path_buf();
    let host = bed.add_host("a").unwrap();
    assert!(
        dir.starts_with(&parent),
        "{} is under {}",
        dir.display(),
        parent.display()
    );
    assert!(host.dir().unwrap().starts_with(&dir));
    drop(bed);
    assert!(!dir.exists(), "{} removed with the bed", dir.display());
    std::fs::remove_dir(&parent).unwrap();
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn a_failing_test_still_tears_the_bed_down() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bed = Bed::new("panics").unwrap();
        let host = bed.add_host("a").unwrap();
        let mut sleep = Command::new("sleep");
        sleep.arg("1000");
        let proc = host.spawn("sleep", &sleep).unwrap();
        seen = Some((bed.namespaces(), proc.pid(), bed.dir().to_path_buf()));
        panic!("the test fails with the bed up");
    }));
    assert!(result.is_err());
    let (namespaces, pid, dir) = seen.unwrap();
    assert!(!alive(pid), "process {pid} outlived the panic");
    assert!(
        dir.join("logs/a-sleep.log").is_file(),
        "the logs are kept for a look after a panic"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let listed = netns_list();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "{ns} left behind:\n{listed}");
    }
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn a_new_bed_removes_namespaces_of_dead_test_processes() {
    // A pid that is certainly dead: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let stale = format!("ledgetk-{}-0-crashed.hub", child.id());
    let out = Command::new("ip")
        .args(["netns", "add", &stale])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let bed = Bed::new("fresh").unwrap();
    let listed = netns_list();
    // Clean up by hand should the bed have failed to, before asserting.
    if listed.contains(&stale) {
        let _ = Command::new("ip").args(["netns", "del", &stale]).output();
    }
    assert!(!listed.contains(&stale), "{stale} survived:\n{listed}");
    assert!(listed.contains(bed.namespaces()[0].as_str()));
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn netem_delays_the_link_or_says_it_cannot() {
    let bed = Bed::new("netem").unwrap();
    let a = bed.add_host("a").unwrap();
    let b = bed.add_host("b").unwrap();
    wait_for("a to reach b", EVENTUAL, POLL, || {
        Ok::<_, Error>(ping(&a, &b).then_some(()))
    })
    .unwrap();
    if !bed.netem_available() {
        match b.netem("delay 100ms") {
            Err(Error::NetemUnavailable { .. }) => {
                eprintln!("tc netem is not available on this kernel: delay/loss not tested");
                return;
            }
            other => panic!("netem_available() said no, netem() said {other:?}"),
        }
    }
    b.netem("delay 100ms").unwrap();
    // 100 ms each way: a round trip cannot be shorter than 200 ms.
    let rtt = rtt_ms(&a, &b);
    assert!(
        rtt >= 200.0,
        "round trip {rtt} ms through a 2 x 100 ms delay"
    );
    b.clear_netem().unwrap();
    b.clear_netem().unwrap();
    let rtt = rtt_ms(&a, &b);
    assert!(rtt < 200.0, "round trip {rtt} ms after clear_netem");
}

#[test]
#[ignore = "needs root, ip netns and LEDGE_BIN: run by test.sh's e2e stage"]
fn a_cut_agent_becomes_unknown_and_returns_when_restored() {
    let opts = ClusterOptions {
        lease_interval: Duration::from_secs(4),
        node_monitor_grace_period: Duration::from_secs(10),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(Bed::new("smoke").unwrap(), 2, opts).unwrap();
    let namespaces = cluster.bed().namespaces();
    let procs = cluster.bed().procs();

    let nodes = cluster.kubectl_json(&["get", "nodes"]).unwrap();
    let mut seen: Vec<(String, String)> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ip = n["status"]["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["type"] == "InternalIP")
                .map(|a| a["address"].as_str().unwrap().to_string())
                .unwrap_or_default();
            (n["metadata"]["name"].as_str().unwrap().to_string(), ip)
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String)> = cluster
        .agents()
        .iter()
        .map(|a| (a.name().to_string(), a.host().ip().to_string()))
        .collect();
    assert_eq!(seen, want, "each agent is a Node at its host's address");

    // Partition edge-1: within the 10 s grace (waited for generously) it is Unknown.
    let edge1 = cluster.agent("edge-1").unwrap();
    let phase = std::time::Instant::now();
    edge1.host().cut().unwrap();
    cluster
        .wait_node_ready("edge-1", "Unknown", Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        cluster.node_ready("edge-2").unwrap().as_deref(),
        Some("True"),
        "the other node is not affected"
    );
    assert!(
        edge1.proc().is_running(),
        "the agent rides out the partition"
    );
    eprintln!("edge-1 Unknown {:?} after the cut", phase.elapsed());

    let phase = std::time::Instant::now();
    edge1.host().restore().unwrap();
    cluster
        .wait_node_ready("edge-1", "True", Duration::from_secs(120))
        .unwrap();
    eprintln!("edge-1 Ready {:?} after the restore", phase.elapsed());

    // A crashed agent goes Unknown too; restarted, it comes back with its stored credentials.
    let edge2 = cluster.agent("edge-2").unwrap();
    edge2.proc().kill().unwrap();
    cluster
        .wait_node_ready("edge-2", "Unknown", Duration::from_secs(60))
        .unwrap();
    let phase = std::time::Instant::now();
    edge2.proc().restart().unwrap();
    cluster
        .wait_node_ready("edge-2", "True", Duration::from_secs(120))
        .unwrap();
    eprintln!("edge-2 Ready {:?} after its restart", phase.elapsed());

    drop(cluster);
    for proc in &procs {
        assert!(!proc.is_running(), "{} outlived the cluster", proc.name());
    }
    let listed = netns_list();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "{ns} left behind:\n{listed}");
    }
}
