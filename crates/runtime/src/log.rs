//! Container logs in the CRI format kubelet writes (`<RFC 3339 nano> <stream> <P|F> <text>`), one
//! file per container start, so `kubectl logs --timestamps/--since/--tail/--previous` can be
//! answered from the file alone. Runtimes write through [`LogWriter`]; the agent reads with
//! [`parse_line`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};

/// A line longer than this is written in `P` (partial) pieces, as CRI runtimes do.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends a container's output to its log file, line by line.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (append to) the log file at `path`, creating its directory.
    ///
    /// # Errors
    /// The directory or file cannot be created.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                file,
                pending: [Vec::new(), Vec::new()],
            }),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record `bytes` written to `stream`: complete lines are written at once, an unfinished
    /// line waits for its end (or is written as a partial once it reaches [`MAX_LINE`]).
    /// Errors writing the file are logged, never returned: a full disk must not kill a workload.
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = stream as usize;
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut inner.pending[idx]);
            line.extend_from_slice(&rest[..nl]);
            encode(&mut out, stream, &line, true);
            rest = &rest[nl + 1..];
        }
        inner.pending[idx].extend_from_slice(rest);
        while inner.pending[idx].len() >= MAX_LINE {
            let chunk: Vec<u8> = inner.pending[idx].drain(..MAX_LINE).collect();
            encode(&mut out, stream, &chunk, false);
        }
        if !out.is_empty()
            && let Err(e) = inner.file.write_all(&out)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write container log");
        }
    }

    /// Write any unfinished lines (the container has ended).
    pub fn finish(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (idx, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let line = std::mem::take(&mut inner.pending[idx]);
            if !line.is_empty() {
                encode(&mut out, stream, &line, true);
            }
        }
        if !out.is_empty() {
            let _ = inner.file.write_all(&out);
        }
    }

    /// An `io::Write` for one stream of this log.
    pub fn stream(self: &Arc<Self>, stream: Stream) -> StreamWriter {
        StreamWriter {
            log: self.clone(),
            stream,
        }
    }
}

/// One stream of a [`LogWriter`] as `io::Write`.
#[derive(Clone, Debug)]
pub struct StreamWriter {
    log: Arc<LogWriter>,
    stream: Stream,
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.write(self.stream, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn encode(out: &mut Vec<u8>, stream: Stream, text: &[u8], full: bool) {
    let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When it was written.
    pub time: DateTime<Utc>,
    /// The stream.
    pub stream: Stream,
    /// `false` for a piece of a longer line (`P`): no newline follows it.
    pub full: bool,
    /// The text, without the newline.
    pub text: &'a [u8],
}

/// Parse one line of a CRI log file (without its newline); `None` if it is not one.
pub fn parse_line(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        full,
        text: parts.next().unwrap_or(b""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(Stream, bool, String)> {
        let data = std::fs::read(path).unwrap();
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse_line(l).unwrap();
                (
                    r.stream,
                    r.full,
                    String::from_utf8(r.text.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_are_split_and_streams_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogWriter::create(dir.path().join("c/0.log")).unwrap();
        log.write(Stream::Stdout, b"hel");
        log.write(Stream::Stderr, b"oops\n");
        log.write(Stream::Stdout, b"lo\nworld\nta");
        log.finish();
        assert_eq!(
            records(log.path()),
            vec![
                (Stream::Stderr, true, "oops".into()),
                (Stream::Stdout, true, "hello".into()),
                (Stream::Stdout, true, "world".into()),
                (Stream::Stdout, true, "ta".into()),
            ]
        );
    }

    #[test]
    fn long_lines_are_written_in_partial_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogWriter::create(dir.path().join("0.log")).unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        log.write(Stream::Stdout, &long);
        log.write(Stream::Stdout, b"\n");
        let recs = records(log.path());
        assert_eq!(recs.len(), 2);
        assert!(!recs[0].1);
        assert_eq!(recs[0].2.len(), MAX_LINE);
        assert!(recs[1].1);
        assert_eq!(recs[1].2.len(), 10);
    }

    #[test]
    fn foreign_lines_are_not_records() {
        assert!(parse_line(b"hello world").is_none());
        assert!(parse_line(b"2026-01-01T00:00:00Z stdin F x").is_none());
        let r = parse_line(b"2026-01-01T00:00:00.5Z stdout F").unwrap();
        assert_eq!(r.text, b"");
    }
}
