//! `kubectl exec` on the node: a command run beside a running container — in its mount
//! namespace (entered with `nsenter`), with its environment and working directory — its stdin,
//! stdout and stderr carried as frames ([`ledge_api::stream`]) over the tunnel, and its exit
//! code sent last as a `Status` on channel 3, as kubelet does. Only runtimes whose containers
//! are host processes can do this; others are refused with a message saying so.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use ledge_api::stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A container commands can be run beside.
#[derive(Clone, Debug)]
pub struct Target {
    /// The container's name.
    pub name: String,
    /// The container's process, if the runtime has one.
    pub pid: Option<u32>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub working_dir: Option<String>,
    /// The runtime's name.
    pub runtime: &'static str,
}

/// Running containers by (pod uid, container name).
#[derive(Debug, Default)]
pub struct Targets {
    by_key: Mutex<HashMap<(String, String), Target>>,
}

impl Targets {
    /// A container started.
    pub fn insert(&self, uid: &str, container: &str, target: Target) {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((uid.to_string(), container.to_string()), target);
    }

    /// A container ended.
    pub fn remove(&self, uid: &str, container: &str) {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(uid.to_string(), container.to_string()));
    }

    /// The running container, or the upstream-style reason there is none to exec in.
    ///
    /// # Errors
    /// The message to answer with (400).
    pub fn find(&self, uid: &str, container: &str) -> Result<Target, String> {
        let found = self
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(uid.to_string(), container.to_string()))
            .cloned();
        match found {
            None => Err(format!(
                "container not found ({container:?}): it is not running"
            )),
            Some(t) if t.pid.is_none() => Err(t.cannot_exec()),
            Some(t) => Ok(t),
        }
    }
}

impl Target {
    /// Why no command can run beside a container of a runtime without processes.
    fn cannot_exec(&self) -> String {
        format!(
            "the {} runtime cannot run commands in container {:?}: exec needs a process-based runtime (runtimeClassName: process)",
            self.runtime, self.name
        )
    }

    /// `argv` as a command run beside the container: in its mount namespace when it has its
    /// own, with its environment and working directory.
    ///
    /// # Errors
    /// The runtime has no process to run beside, or `argv` is empty.
    pub fn command(&self, argv: &[String]) -> Result<tokio::process::Command, String> {
        let Some(pid) = self.pid else {
            return Err(self.cannot_exec());
        };
        let Some((program, args)) = argv.split_first() else {
            return Err("no command given".into());
        };
        let own_ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let our_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
        let mut cmd = if own_ns.is_some() && own_ns != our_ns {
            let mut c = tokio::process::Command::new("nsenter");
            c.arg("--target")
                .arg(pid.to_string())
                .arg("--mount")
                .arg("--")
                .arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        };
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.working_dir.as_deref().unwrap_or("/"))
            .kill_on_drop(true);
        if !self.env.iter().any(|(k, _)| k == "PATH") {
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        Ok(cmd)
    }
}

/// Run `command` beside `target`: stdin data arrives on `input` (an empty chunk closes it),
/// output frames and the final status go to `output`.
pub async fn run(
    target: Target,
    command: Vec<String>,
    with_stdin: bool,
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) {
    let send_status = |code: i32| {
        let status = stream::exit_status(code).to_string();
        Bytes::from(stream::encode(stream::ERROR, status.as_bytes()))
    };
    let spawned = target.command(&command).and_then(|mut cmd| {
        cmd.stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec: {:?}: {e}", command[0]))
    });
    let mut child = match spawned {
        Ok(c) => c,
        Err(msg) => {
            let _ = output
                .send(Bytes::from(stream::encode(
                    stream::STDERR,
                    format!("{msg}\n").as_bytes(),
                )))
                .await;
            let _ = output.send(send_status(126)).await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let feed = async {
        while let Some(bytes) = input.recv().await {
            if bytes.is_empty() {
                // stdin closed by the client.
                stdin = None;
                continue;
            }
            if let Some(s) = stdin.as_mut()
                && s.write_all(&bytes).await.is_err()
            {
                stdin = None;
            }
        }
    };
    let out = pump(child.stdout.take(), stream::STDOUT, output.clone());
    let err = pump(child.stderr.take(), stream::STDERR, output.clone());
    let waited = async {
        let (_, _, status) = tokio::join!(out, err, child.wait());
        status
    };
    tokio::pin!(feed);
    tokio::pin!(waited);
    let status = tokio::select! {
        s = &mut waited => s,
        _ = &mut feed => waited.await,
    };
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + s.signal().unwrap_or(0)
        }),
        Err(_) => 1,
    };
    let _ = output.send(send_status(code)).await;
}

async fn pump(src: Option<impl AsyncRead + Unpin>, channel: u8, out: mpsc::Sender<Bytes>) {
    let Some(mut src) = src else { return };
    let mut buf = vec![0u8; 8192];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out
                    .send(Bytes::from(stream::encode(channel, &buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
