//! What the agent learns about its machine for the Node object: CPUs, memory
//! (`/proc/meminfo`), the size of the filesystem under the data dir (statvfs), kernel and OS
//! (`/proc/sys/kernel/osrelease`, `/etc/os-release`), machine and boot ids, the host name, and
//! the node's address. The parsers are pure functions over file text, tested on samples; only
//! [`gather`] touches the system (blocking: call it from `spawn_blocking`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

/// Facts about this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// Usable CPUs.
    pub cpus: usize,
    /// `MemTotal`, KiB.
    pub memory_kib: Option<u64>,
    /// Size of the filesystem holding the data dir, bytes.
    pub storage_bytes: Option<u64>,
    /// `MemAvailable`, KiB: kubelet's `memory.available` eviction signal.
    pub memory_available_kib: Option<u64>,
    /// Bytes of the data dir's filesystem an unprivileged writer may still use
    /// (kubelet's `nodefs.available`).
    pub storage_available_bytes: Option<u64>,
    /// Tasks alive and the kernel's `pid_max` (kubelet's `pid.available` is their difference).
    pub pids: Option<(u64, u64)>,
    /// Kernel release.
    pub kernel_version: String,
    /// `PRETTY_NAME` of os-release.
    pub os_image: String,
    /// Kubernetes architecture name (`amd64`, `arm64`, ...).
    pub architecture: &'static str,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

/// The Kubernetes (Go) name of a Rust architecture.
pub fn kube_arch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
pub fn parse_meminfo_total_kib(text: &str) -> Option<u64> {
    meminfo_field_kib(text, "MemTotal:")
}

/// `MemAvailable` of `/proc/meminfo`, in KiB.
pub fn parse_meminfo_available_kib(text: &str) -> Option<u64> {
    meminfo_field_kib(text, "MemAvailable:")
}

fn meminfo_field_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// `PRETTY_NAME` of an os-release file (quotes and backslash escapes removed).
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let raw = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?;
    let unquoted = match raw.as_bytes().first() {
        Some(q @ (b'"' | b'\'')) => raw
            .strip_prefix(char::from(*q))?
            .strip_suffix(char::from(*q))
            .unwrap_or(raw),
        _ => raw,
    };
    let mut out = String::with_capacity(unquoted.len());
    let mut chars = unquoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Some(out).filter(|s| !s.is_empty())
}

/// The interface and gateway of the default IPv4 route in `/proc/net/route` (the one with the
/// lowest metric). Addresses there are hex of the in-memory (network order) bytes.
pub fn parse_default_route(text: &str) -> Option<(String, Ipv4Addr)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u16::from_str_radix(f[3], 16).ok()?;
            // RTF_UP
            if flags & 0x1 == 0 {
                return None;
            }
            let gateway = u32::from_str_radix(f[2], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            Some((
                metric,
                f[0].to_string(),
                Ipv4Addr::from(gateway.to_ne_bytes()),
            ))
        })
        .min_by_key(|(metric, _, _)| *metric)
        .map(|(_, iface, gw)| (iface, gw))
}

/// This machine's source address towards the default gateway: a UDP socket "connected" to it
/// makes the kernel pick the route and address, and sends nothing.
fn default_route_source() -> Option<IpAddr> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    let (_, gateway) = parse_default_route(&text)?;
    if gateway.is_unspecified() {
        return None;
    }
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    sock.connect((gateway, 9)).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The node's InternalIP: `--node-ip`, else the local address of the connection to the server
/// (what the control plane sees), else — when that is loopback — the address of the default
/// route's interface, else loopback.
pub fn internal_ip(explicit: Option<IpAddr>, connection: Option<SocketAddr>) -> Option<IpAddr> {
    if explicit.is_some() {
        return explicit;
    }
    let local = connection.map(|a| a.ip());
    match local {
        Some(ip) if !ip.is_loopback() => Some(ip),
        _ => default_route_source().or(local),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Bytes of the filesystem holding `dir`.
pub fn filesystem_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    st.f_blocks.checked_mul(st.f_frsize)
}

/// Bytes of the filesystem holding `dir` available to unprivileged writers.
fn filesystem_available_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

/// Tasks alive, from the fourth field of `/proc/loadavg` (`running/total`).
pub fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    let field = text.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

fn pids() -> Option<(u64, u64)> {
    let alive = parse_loadavg_tasks(&std::fs::read_to_string("/proc/loadavg").ok()?)?;
    let max = read_trimmed("/proc/sys/kernel/pid_max")?.parse().ok()?;
    Some((alive, max))
}

/// The host name the kernel reports.
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".to_string())
}

/// Gather the facts (blocking).
pub fn gather(data_dir: &Path) -> Facts {
    let os_image = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| parse_os_release_pretty_name(&t))
        .unwrap_or_else(|| "Linux".to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Facts {
        hostname: hostname(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_kib: parse_meminfo_total_kib(&meminfo),
        storage_bytes: filesystem_bytes(data_dir),
        memory_available_kib: parse_meminfo_available_kib(&meminfo),
        storage_available_bytes: filesystem_available_bytes(data_dir),
        pids: pids(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        os_image,
        architecture: kube_arch(std::env::consts::ARCH),
        machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str =
        "MemTotal:        8040044 kB\nMemFree:          315364 kB\nMemAvailable:    5151100 kB\n";

    const OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"#;

    // A host with a default route via 192.168.1.1 on wlan0 (metric 600) and another via
    // 10.0.0.1 on eth0 (metric 100), plus a link route.
    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn meminfo_total_is_read_in_kib() {
        assert_eq!(parse_meminfo_total_kib(MEMINFO), Some(8_040_044));
        assert_eq!(parse_meminfo_available_kib(MEMINFO), Some(5_151_100));
        assert_eq!(parse_meminfo_total_kib("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total_kib("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        assert_eq!(
            parse_os_release_pretty_name(OS_RELEASE).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME=Alpine\n").as_deref(),
            Some("Alpine")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME='Say \\\"hi\\\"'\n").as_deref(),
            Some("Say \"hi\"")
        );
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        assert_eq!(
            parse_default_route(ROUTE),
            Some(("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(parse_default_route("Iface\tDestination\n"), None);
    }

    #[test]
    fn architectures_use_kubernetes_names() {
        assert_eq!(kube_arch("x86_64"), "amd64");
        assert_eq!(kube_arch("aarch64"), "arm64");
        assert_eq!(kube_arch("riscv64"), "riscv64");
    }

    #[test]
    fn an_explicit_or_routable_address_is_used_as_is() {
        let ip: IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(internal_ip(Some(ip), None), Some(ip));
        let conn = SocketAddr::new(ip, 40000);
        assert_eq!(internal_ip(None, Some(conn)), Some(ip));
    }

    #[test]
    fn facts_of_this_machine_are_plausible() {
        let facts = gather(Path::new("/"));
        assert!(facts.cpus >= 1);
        assert!(facts.memory_kib.is_some_and(|m| m > 0));
        assert!(facts.storage_bytes.is_some_and(|s| s > 0));
        assert!(
            facts
                .memory_available_kib
                .zip(facts.memory_kib)
                .is_some_and(|(a, t)| a <= t)
        );
        assert!(
            facts
                .storage_available_bytes
                .zip(facts.storage_bytes)
                .is_some_and(|(a, t)| a <= t)
        );
        assert!(
            facts
                .pids
                .is_some_and(|(alive, max)| alive > 0 && alive < max)
        );
        assert!(!facts.hostname.is_empty());
    }

    #[test]
    fn loadavg_names_the_tasks_alive() {
        assert_eq!(
            parse_loadavg_tasks("0.52 0.58 0.59 3/1024 4242\n"),
            Some(1024)
        );
        assert_eq!(parse_loadavg_tasks("0.52 0.58\n"), None);
    }
}
