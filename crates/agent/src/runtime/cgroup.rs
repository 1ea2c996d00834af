//! Resource limits for the `process` runtime through cgroups, v2 (unified) or v1 (the
//! `memory` and `cpu` controllers of a hybrid host). One group per container under `ledge/`;
//! a host where groups cannot be created (no root, read-only cgroupfs) runs the process without
//! limits and says so once in the log.

use std::fs;
use std::path::{Path, PathBuf};

use ledge_runtime::Limits;

const ROOT: &str = "/sys/fs/cgroup";
/// The CFS period ledge uses, as upstream (100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup layout the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 mounted at /sys/fs/cgroup.
    Unified,
    /// cgroup v1 controllers at /sys/fs/cgroup/<controller>.
    Legacy,
    /// Neither usable.
    None,
}

/// Find the host's layout.
pub fn detect() -> Layout {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Layout::Unified
    } else if Path::new(ROOT).join("memory").is_dir() {
        Layout::Legacy
    } else {
        Layout::None
    }
}

/// The cgroup(s) of one container.
#[derive(Debug)]
pub struct Group {
    dirs: Vec<PathBuf>,
    memory_dir: Option<PathBuf>,
    layout: Layout,
}

impl Group {
    /// Create the group for `name` with `limits`; `None` if there is nothing to limit or the
    /// host does not let us.
    pub fn create(name: &str, limits: &Limits) -> Option<Group> {
        if limits.memory_bytes.is_none() && limits.cpu_millis.is_none() {
            return None;
        }
        let layout = detect();
        let result = match layout {
            Layout::Unified => Self::create_v2(name, limits),
            Layout::Legacy => Self::create_v1(name, limits),
            Layout::None => return None,
        };
        match result {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a cgroup; running without resource limits");
                None
            }
        }
    }

    fn create_v2(name: &str, limits: &Limits) -> std::io::Result<Group> {
        let parent = Path::new(ROOT).join("ledge");
        if !parent.exists() {
            fs::create_dir_all(&parent)?;
        }
        // Delegate the controllers to ledge's subtree (ignore errors: they may already be on).
        let _ = fs::write(
            Path::new(ROOT).join("cgroup.subtree_control"),
            "+memory +cpu",
        );
        let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu");
        let dir = parent.join(name);
        fs::create_dir_all(&dir)?;
        if let Some(m) = limits.memory_bytes {
            fs::write(dir.join("memory.max"), m.to_string())?;
            let _ = fs::write(dir.join("memory.swap.max"), "0");
        }
        if let Some(c) = limits.cpu_millis {
            fs::write(
                dir.join("cpu.max"),
                format!("{} {CPU_PERIOD_US}", quota_us(c)),
            )?;
        }
        Ok(Group {
            memory_dir: limits.memory_bytes.map(|_| dir.clone()),
            dirs: vec![dir],
            layout: Layout::Unified,
        })
    }

    fn create_v1(name: &str, limits: &Limits) -> std::io::Result<Group> {
        let mut dirs = Vec::new();
        let mut memory_dir = None;
        if let Some(m) = limits.memory_bytes {
            let dir = Path::new(ROOT).join("memory/ledge").join(name);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("memory.limit_in_bytes"), m.to_string())?;
            let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), m.to_string());
            memory_dir = Some(dir.clone());
            dirs.push(dir);
        }
        if let Some(c) = limits.cpu_millis {
            let base = ["cpu,cpuacct", "cpu"]
                .iter()
                .map(|d| Path::new(ROOT).join(d))
                .find(|p| p.is_dir())
                .ok_or_else(|| std::io::Error::other("no cpu controller"))?;
            let dir = base.join("ledge").join(name);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
            fs::write(dir.join("cpu.cfs_quota_us"), quota_us(c).to_string())?;
            dirs.push(dir);
        }
        Ok(Group {
            dirs,
            memory_dir,
            layout: Layout::Legacy,
        })
    }

    /// Move process `pid` into the group.
    pub fn add(&self, pid: u32) {
        for d in &self.dirs {
            if let Err(e) = fs::write(d.join("cgroup.procs"), pid.to_string()) {
                tracing::warn!(group = %d.display(), error = %e, "cannot move the process into its cgroup");
            }
        }
    }

    /// Whether the kernel's OOM killer has acted in this group.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory_dir else {
            return false;
        };
        let (file, key) = match self.layout {
            Layout::Unified => ("memory.events", "oom_kill"),
            _ => ("memory.oom_control", "oom_kill"),
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .map(|n| n.trim().parse::<u64>().unwrap_or(0))
                })
            })
            .is_some_and(|n| n > 0)
    }

    /// Remove the group (its processes have ended).
    pub fn remove(&self) {
        for d in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

/// CFS quota for `millis` of CPU, at least 1 ms per period as the kernel requires.
fn quota_us(millis: u64) -> u64 {
    (millis * CPU_PERIOD_US / 1000).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_follows_millicores() {
        assert_eq!(quota_us(500), 50_000);
        assert_eq!(quota_us(2000), 200_000);
        assert_eq!(quota_us(1), 1000);
    }
}
