//! The framing of streamed sessions (`kubectl exec`) between the API server and a node agent
//! over the agent's tunnel: each message is `[u32 big-endian length][channel][data]`, with
//! Kubernetes' channel numbers (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize, 255
//! close). The server turns WebSocket messages (`v5.channel.k8s.io`: `[channel][data]`) into
//! frames and back, so neither side needs the other's transport.

/// Standard input.
pub const STDIN: u8 = 0;
/// Standard output.
pub const STDOUT: u8 = 1;
/// Standard error.
pub const STDERR: u8 = 2;
/// The final status (a `Status` object as JSON).
pub const ERROR: u8 = 3;
/// Terminal resize.
pub const RESIZE: u8 = 4;
/// v5: close the stream named by the data's first byte.
pub const CLOSE: u8 = 255;

/// Largest frame accepted.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame for `channel`.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `(channel, data)`.
    ///
    /// # Errors
    /// A frame longer than [`MAX_FRAME`] or empty: the stream is corrupt.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(format!("bad stream frame length {len}"));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let channel = self.buf[4];
        let data = self.buf[5..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((channel, data)))
    }
}

/// The status a finished command reports on [`ERROR`], as kubelet writes it: success, or
/// `NonZeroExitCode` with the code as an `ExitCode` cause (kubectl exits with it).
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A failure before the command ran, on [`ERROR`].
pub fn failure(message: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message,
                       "reason": "InternalError", "code": 500})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let mut bytes = encode(STDOUT, b"hello");
        bytes.extend(encode(ERROR, b"{}"));
        bytes.extend(encode(STDIN, b""));
        for split in 0..bytes.len() {
            let mut d = Decoder::default();
            d.push(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&bytes[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(
                got,
                vec![
                    (STDOUT, b"hello".to_vec()),
                    (ERROR, b"{}".to_vec()),
                    (STDIN, vec![])
                ]
            );
        }
    }

    #[test]
    fn exit_codes_become_statuses() {
        assert_eq!(exit_status(0)["status"], "Success");
        let s = exit_status(3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        let mut d = Decoder::default();
        d.push(&[0, 0, 0, 0]);
        assert!(d.next_frame().is_err());
    }
}
