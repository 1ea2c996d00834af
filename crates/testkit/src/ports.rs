//! Loopback ports for test processes that outlive one bind: etcd members that are killed and
//! started again on the same ports, servers restarted on their port.
//!
//! A port handed out by the kernel (`bind(0)`) lies in the ephemeral range, the same range the
//! kernel draws the local end of every outgoing connection from. Once its process is killed,
//! such a port can be taken by any client's connection before the process comes back, and the
//! restart fails with "address already in use". [`free_port`] picks below that range instead,
//! where only a listener that asks for the port by number can take it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// The lowest port this module hands out.
const FLOOR: u16 = 10_000;

/// A TCP port free on 127.0.0.1 now and outside the kernel's ephemeral range.
pub fn free_port() -> Result<u16> {
    let (low, _) = ephemeral_range();
    let ceiling = low.max(FLOOR + 1_000);
    let span = u32::from(ceiling - FLOOR);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = seed().wrapping_add(NEXT.fetch_add(7_919, Ordering::Relaxed));
    let mut last = None;
    for step in 0..span {
        let port = FLOOR + ((start.wrapping_add(step)) % span) as u16;
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io {
        what: "no free port below the ephemeral range on",
        path: PathBuf::from("127.0.0.1"),
        source: last.unwrap_or_else(|| std::io::Error::other("empty port range")),
    })
}

/// `ip_local_port_range`, or Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A start point that differs between test processes running side by side.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().wrapping_mul(2_654_435_761)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_and_below_the_ephemeral_range() {
        let (low, _) = ephemeral_range();
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!(port >= FLOOR && port < low.max(FLOOR + 1_000), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
