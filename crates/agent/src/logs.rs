//! Container logs served to the API server (`kubectl logs`), read from the CRI log files the
//! runtimes write: `<logs>/<namespace>_<pod>_<uid>/<container>/<restart>.log`. Supports
//! kubelet's `PodLogOptions`: `follow`, `previous`, `sinceSeconds`, `sinceTime`, `timestamps`,
//! `tailLines`, `limitBytes`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ledge_runtime::log::parse_line;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// How often a followed log is checked for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Which log files are still being written.
#[derive(Debug)]
pub struct Logs {
    dir: PathBuf,
    running: Mutex<HashSet<PathBuf>>,
}

/// `PodLogOptions`, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `sinceSeconds` / `sinceTime`, as an instant.
    pub since: Option<DateTime<Utc>>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `tailLines`.
    pub tail: Option<usize>,
    /// `limitBytes`.
    pub limit: Option<usize>,
}

impl Options {
    /// Parse the query string.
    ///
    /// # Errors
    /// A value that is not a number, boolean or time.
    pub fn parse(query: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Self, String> {
        let flag = |k: &str| query.get(k).is_some_and(|v| v == "true" || v == "1");
        let num = |k: &str| -> Result<Option<i64>, String> {
            query
                .get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}: {v:?} is not a number"))
                })
                .transpose()
        };
        let mut since = None;
        if let Some(s) = num("sinceSeconds")? {
            since = Some(now - chrono::Duration::seconds(s.max(0)));
        }
        if let Some(t) = query.get("sinceTime") {
            let t = DateTime::parse_from_rfc3339(t)
                .map_err(|_| format!("sinceTime: {t:?} is not an RFC 3339 time"))?;
            since = Some(t.with_timezone(&Utc));
        }
        let to_usize = |v: Option<i64>| v.map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX));
        Ok(Self {
            follow: flag("follow"),
            previous: flag("previous"),
            since,
            timestamps: flag("timestamps"),
            tail: to_usize(num("tailLines")?),
            limit: to_usize(num("limitBytes")?),
        })
    }
}

/// A log request that cannot be answered.
#[derive(Debug, PartialEq)]
pub struct LogError {
    /// HTTP status (400, 404).
    pub code: u16,
    /// Upstream-style message.
    pub message: String,
}

impl LogError {
    /// The error as a Kubernetes `Status` body.
    pub fn status(&self) -> serde_json::Value {
        let reason = if self.code == 404 {
            "NotFound"
        } else {
            "BadRequest"
        };
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": reason, "code": self.code})
    }
}

impl Logs {
    /// Logs under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            running: Mutex::default(),
        }
    }

    /// The directory of one pod's logs.
    pub fn pod_dir(&self, namespace: &str, pod: &str, uid: &str) -> PathBuf {
        self.dir.join(format!("{namespace}_{pod}_{uid}"))
    }

    /// A container started writing `path`.
    pub fn started(&self, path: &Path) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_path_buf());
    }

    /// A container stopped writing `path`.
    pub fn ended(&self, path: &Path) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(path);
    }

    fn is_running(&self, path: &Path) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(path)
    }

    /// The file to read for `container` of the pod: the current run, or the one before.
    ///
    /// # Errors
    /// The upstream messages when the container has not started, or has no previous run.
    pub fn file(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
        previous: bool,
    ) -> Result<PathBuf, LogError> {
        let dir = self.pod_dir(namespace, pod, uid).join(container);
        let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
                (p.extension()? == "log").then_some((n, p))
            })
            .collect();
        runs.sort();
        let pick = if previous {
            runs.len().checked_sub(2)
        } else {
            runs.len().checked_sub(1)
        };
        match pick.and_then(|i| runs.get(i)) {
            Some((_, p)) => Ok(p.clone()),
            None if previous => Err(LogError {
                code: 400,
                message: format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ),
            }),
            None => Err(LogError {
                code: 400,
                message: format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                ),
            }),
        }
    }

    /// Stream the log at `path` into `out` as `opts` says, until done (or `out` is closed).
    pub async fn stream(&self, path: PathBuf, opts: Options, out: mpsc::Sender<Bytes>) {
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return;
        };
        let mut budget = opts.limit.unwrap_or(usize::MAX);
        let mut data = Vec::new();
        if file.read_to_end(&mut data).await.is_err() {
            return;
        }
        // Whole lines only; a trailing partial line waits for its end.
        let complete = data
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let mut pos = complete as u64;
        let mut lines = render(&data[..complete], &opts);
        if let Some(n) = opts.tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        if !send(&out, lines.concat(), &mut budget).await || !opts.follow || opts.previous {
            return;
        }
        let live_opts = Options { tail: None, ..opts };
        loop {
            let still_running = self.is_running(&path);
            let mut more = Vec::new();
            if file.seek(std::io::SeekFrom::Start(pos)).await.is_err()
                || file.read_to_end(&mut more).await.is_err()
            {
                return;
            }
            let complete = more
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            if complete > 0 {
                pos += complete as u64;
                if !send(
                    &out,
                    render(&more[..complete], &live_opts).concat(),
                    &mut budget,
                )
                .await
                {
                    return;
                }
            } else if !still_running || !path.exists() {
                return;
            }
            if out.is_closed() {
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

/// Send `bytes` within the byte budget; `false` when the stream should end.
async fn send(out: &mpsc::Sender<Bytes>, mut bytes: Vec<u8>, budget: &mut usize) -> bool {
    if bytes.is_empty() {
        return *budget > 0;
    }
    if bytes.len() > *budget {
        bytes.truncate(*budget);
    }
    *budget -= bytes.len();
    out.send(Bytes::from(bytes)).await.is_ok() && *budget > 0
}

/// CRI records → the text lines `kubectl logs` prints (partial records joined to their line).
fn render(data: &[u8], opts: &Options) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for raw in data.split(|b| *b == b'\n') {
        let Some(rec) = parse_line(raw) else { continue };
        if opts.since.is_some_and(|s| rec.time < s) {
            continue;
        }
        let line = current.get_or_insert_with(|| {
            if opts.timestamps {
                let mut l = rec
                    .time
                    .to_rfc3339_opts(SecondsFormat::Nanos, true)
                    .into_bytes();
                l.push(b' ');
                l
            } else {
                Vec::new()
            }
        });
        line.extend_from_slice(rec.text);
        if rec.full {
            let mut l = current.take().unwrap_or_default();
            l.push(b'\n');
            lines.push(l);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use ledge_runtime::log::{LogWriter, Stream};

    use super::*;

    async fn collect(logs: &Logs, path: PathBuf, opts: Options) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        logs.stream(path, opts, tx).await;
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn tail_limit_timestamps_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = Logs::new(tmp.path().to_path_buf());
        let dir = logs.pod_dir("ns", "p", "u").join("c");
        for (run, text) in [(0, "old\n"), (1, "a\nb\nc\n")] {
            let w = LogWriter::create(dir.join(format!("{run}.log"))).unwrap();
            w.write(Stream::Stdout, text.as_bytes());
        }
        let current = logs.file("ns", "p", "u", "c", false).unwrap();
        assert_eq!(
            collect(&logs, current.clone(), Options::default()).await,
            "a\nb\nc\n"
        );
        let tail = Options {
            tail: Some(2),
            ..Options::default()
        };
        assert_eq!(collect(&logs, current.clone(), tail).await, "b\nc\n");
        let limit = Options {
            limit: Some(3),
            ..Options::default()
        };
        assert_eq!(collect(&logs, current.clone(), limit).await, "a\nb");
        let ts = collect(
            &logs,
            current,
            Options {
                timestamps: true,
                ..Options::default()
            },
        )
        .await;
        assert!(ts.lines().all(|l| l.len() > 30 && l.contains('T')), "{ts}");
        let prev = logs.file("ns", "p", "u", "c", true).unwrap();
        assert_eq!(collect(&logs, prev, Options::default()).await, "old\n");
        let err = logs.file("ns", "p", "u", "other", false).unwrap_err();
        assert_eq!(
            err.message,
            "container \"other\" in pod \"p\" is waiting to start: ContainerCreating"
        );
    }

    #[test]
    fn options_parse() {
        let now = Utc::now();
        let q: HashMap<String, String> = [
            ("follow", "true"),
            ("tailLines", "5"),
            ("sinceSeconds", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = Options::parse(&q, now).unwrap();
        assert!(o.follow);
        assert_eq!(o.tail, Some(5));
        assert_eq!(o.since, Some(now - chrono::Duration::seconds(10)));
        let bad: HashMap<String, String> = [("tailLines".to_string(), "x".to_string())].into();
        assert!(Options::parse(&bad, now).is_err());
    }
}
