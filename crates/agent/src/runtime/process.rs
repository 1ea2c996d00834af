//! The `process` runtime: a container is a native process on the node. Its program is the
//! image's executable (imported with `ledge image import`) or `command[0]` on the host; its
//! output goes to the container log; `resources.limits` become a cgroup (v1 or v2); volumes are
//! bind-mounted at their `mountPath` in a private mount namespace (root only). Processes share
//! the node's network, as `hostNetwork` pods do.
//!
//! The process leads its own process group, so stopping it (SIGTERM, then SIGKILL after the
//! grace period) reaches whatever it started.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ledge_runtime::log::{LogWriter, Stream};
use ledge_runtime::{BoxFuture, Container, ContainerSpec, Exit, Runtime, RuntimeError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::cgroup::Group;

/// `PATH` when the pod sets none, as container runtimes default it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `process` runtime.
#[derive(Debug, Default)]
pub struct ProcessRuntime;

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(
        &self,
        spec: ContainerSpec,
    ) -> BoxFuture<'_, Result<Box<dyn Container>, RuntimeError>> {
        Box::pin(async move { start(spec).map(|c| Box::new(c) as Box<dyn Container>) })
    }

    fn supports_exec(&self) -> bool {
        true
    }
}

/// The program and its arguments: `command` wins over the image's entrypoint, as upstream.
fn program(spec: &ContainerSpec) -> Result<(PathBuf, Vec<String>), RuntimeError> {
    if let Some((first, rest)) = spec.command.split_first() {
        let mut args = rest.to_vec();
        args.extend(spec.args.iter().cloned());
        let path = Path::new(first);
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            lookup(first, &spec.env).ok_or_else(|| {
                RuntimeError::Create(format!(
                    "exec: {first:?}: executable file not found in $PATH"
                ))
            })?
        };
        if !resolved.exists() {
            return Err(RuntimeError::Create(format!(
                "exec: {first:?}: no such file or directory"
            )));
        }
        return Ok((resolved, args));
    }
    match &spec.artifact {
        Some(a) if a.is_file() => Ok((a.clone(), spec.args.clone())),
        Some(a) => Err(RuntimeError::InvalidImage(format!(
            "image {:?} ({}) has no executable entrypoint: set command",
            spec.image,
            a.display()
        ))),
        None => Err(RuntimeError::ImageNotFound(spec.image.clone())),
    }
}

fn lookup(name: &str, env: &[(String, String)]) -> Option<PathBuf> {
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Bind mounts prepared before fork, so the child does no allocation.
struct BindMount {
    source: CString,
    target: CString,
    read_only: bool,
}

fn bind_mounts(spec: &ContainerSpec) -> Result<Vec<BindMount>, RuntimeError> {
    if spec.mounts.is_empty() {
        return Ok(Vec::new());
    }
    if !rustix::process::geteuid().is_root() {
        return Err(RuntimeError::Config(
            "the process runtime mounts volumes only when the agent runs as root".into(),
        ));
    }
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| RuntimeError::Config(format!("path {} contains NUL", p.display())))
    };
    spec.mounts
        .iter()
        .map(|m| {
            let target = Path::new(&m.container_path);
            if !target.is_absolute() {
                return Err(RuntimeError::Config(format!(
                    "mountPath {:?} must be absolute",
                    m.container_path
                )));
            }
            // The mount point must exist; create it like a container runtime would.
            if !target.exists() {
                let made = if m.host_path.is_dir() {
                    std::fs::create_dir_all(target)
                } else {
                    target
                        .parent()
                        .map(std::fs::create_dir_all)
                        .unwrap_or(Ok(()))
                        .and_then(|_| std::fs::write(target, b""))
                };
                made.map_err(|e| {
                    RuntimeError::Create(format!(
                        "cannot create mount point {}: {e}",
                        target.display()
                    ))
                })?;
            }
            Ok(BindMount {
                source: cstr(&m.host_path)?,
                target: cstr(target)?,
                read_only: m.read_only,
            })
        })
        .collect()
}

fn start(spec: ContainerSpec) -> Result<ProcessContainer, RuntimeError> {
    let (program, args) = program(&spec)?;
    let mounts = bind_mounts(&spec)?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.env("HOSTNAME", &spec.pod_name);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let cwd = spec.working_dir.clone().unwrap_or_else(|| "/".into());
    cmd.current_dir(&cwd);
    if !mounts.is_empty() {
        // SAFETY: between fork and exec the closure only makes raw system calls (unshare,
        // mount) on memory prepared before the fork; it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                use rustix::mount::{MountFlags, MountPropagationFlags};
                rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
                rustix::mount::mount_change(
                    c"/",
                    MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                )?;
                for m in &mounts {
                    rustix::mount::mount_bind(m.source.as_c_str(), m.target.as_c_str())?;
                    if m.read_only {
                        rustix::mount::mount_remount(
                            m.target.as_c_str(),
                            MountFlags::BIND | MountFlags::RDONLY,
                            c"",
                        )?;
                    }
                }
                Ok(())
            });
        }
    }
    let group_name = format!("{}_{}", spec.pod_uid, spec.name);
    let group = Group::create(&group_name, &spec.limits);
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::Create(format!("cannot start {}: {e}", program.display())))?;
    let pid = child.id().unwrap_or(0);
    if let Some(g) = &group {
        g.add(pid);
    }
    let log = spec.log.clone();
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(s, log.clone(), Stream::Stdout)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(pump(s, log.clone(), Stream::Stderr)));
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await;
        for pump in [out, err].into_iter().flatten() {
            let _ = pump.await;
        }
        log.finish();
        let oom = group.as_ref().is_some_and(Group::oom_killed);
        if let Some(g) = &group {
            g.remove();
        }
        let exit = match status {
            Ok(s) => exit_of(s, oom),
            Err(e) => Exit::with_reason(-1, "Error", format!("cannot wait for the process: {e}")),
        };
        let _ = tx.send(Some(exit));
    });
    Ok(ProcessContainer { pid, exit: rx })
}

fn exit_of(status: std::process::ExitStatus, oom: bool) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let mut exit = Exit::code(128 + sig);
        exit.signal = Some(sig);
        if oom {
            exit.reason = "OOMKilled".into();
        }
        return exit;
    }
    let mut exit = Exit::code(status.code().unwrap_or(-1));
    if oom {
        exit.reason = "OOMKilled".into();
    }
    exit
}

async fn pump(mut src: impl AsyncRead + Unpin, log: Arc<LogWriter>, stream: Stream) {
    let mut buf = vec![0u8; 8192];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => log.write(stream, &buf[..n]),
        }
    }
}

/// A running process.
#[derive(Debug)]
pub struct ProcessContainer {
    pid: u32,
    exit: watch::Receiver<Option<Exit>>,
}

impl ProcessContainer {
    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            // The group may be gone already; that is the goal.
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }

    async fn wait_exit(&self) -> Exit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return Exit::with_reason(-1, "Error", "the process supervisor ended");
            }
        }
    }
}

impl Container for ProcessContainer {
    fn wait(&self) -> BoxFuture<'_, Exit> {
        Box::pin(self.wait_exit())
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, Exit> {
        Box::pin(async move {
            if let Some(exit) = self.exit.borrow().clone() {
                return exit;
            }
            self.signal(rustix::process::Signal::TERM);
            match tokio::time::timeout(grace, self.wait_exit()).await {
                Ok(exit) => exit,
                Err(_) => {
                    self.signal(rustix::process::Signal::KILL);
                    self.wait_exit().await
                }
            }
        })
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
}

#[cfg(test)]
mod tests {
    use ledge_runtime::Limits;

    use super::*;

    fn spec(dir: &Path, command: &[&str]) -> ContainerSpec {
        ContainerSpec {
            namespace: "ns".into(),
            pod_name: "p".into(),
            pod_uid: "uid".into(),
            name: "c".into(),
            image: "host".into(),
            artifact: None,
            command: command.iter().map(|s| s.to_string()).collect(),
            args: vec![],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: None,
            mounts: vec![],
            ports: vec![],
            limits: Limits::default(),
            log: Arc::new(LogWriter::create(dir.join("0.log")).unwrap()),
        }
    }

    fn log_text(dir: &Path) -> String {
        let data = std::fs::read(dir.join("0.log")).unwrap();
        data.split(|b| *b == b'\n')
            .filter_map(ledge_runtime::log::parse_line)
            .map(|r| String::from_utf8_lossy(r.text).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn runs_logs_and_exits_with_its_code() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ProcessRuntime
            .start(spec(
                tmp.path(),
                &["sh", "-c", "echo $GREETING; echo err >&2; exit 3"],
            ))
            .await
            .unwrap();
        let exit = c.wait().await;
        assert_eq!(exit.code, 3);
        assert_eq!(exit.reason, "Error");
        assert_eq!(c.wait().await, exit);
        let text = log_text(tmp.path());
        assert!(text.contains("hi") && text.contains("err"), "{text}");
    }

    #[tokio::test]
    async fn stop_sends_term_then_kill() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ProcessRuntime
            .start(spec(
                tmp.path(),
                &["sh", "-c", "trap '' TERM; echo ready; sleep 100 & wait"],
            ))
            .await
            .unwrap();
        // Signal only once the trap is in place.
        while !log_text(tmp.path()).contains("ready") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let exit = c.stop(Duration::from_millis(300)).await;
        assert_eq!(exit.signal, Some(9));
        assert_eq!(exit.code, 137);
        let c = ProcessRuntime
            .start(spec(tmp.path(), &["sleep", "100"]))
            .await
            .unwrap();
        let exit = c.stop(Duration::from_secs(10)).await;
        assert_eq!(exit.signal, Some(15));
    }

    #[tokio::test]
    async fn missing_programs_are_create_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ProcessRuntime
            .start(spec(tmp.path(), &["no-such-program-here"]))
            .await
            .err()
            .unwrap();
        assert_eq!(err.reason(), "CreateContainerError");
        let err = ProcessRuntime
            .start(spec(tmp.path(), &[]))
            .await
            .err()
            .unwrap();
        assert_eq!(err.reason(), "ErrImageNeverPull");
    }
}
