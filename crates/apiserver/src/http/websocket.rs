//! The server side of WebSocket (RFC 6455), as much as Kubernetes' streaming subprotocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`) need: the handshake key, binary messages in and
//! out, ping/pong and close. Clients mask their frames; the server does not.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 16 << 20;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A binary (or text) message.
    Data(Vec<u8>),
    /// A ping to answer.
    Ping(Vec<u8>),
    /// The client is closing.
    Close,
}

/// Read the next message; `None` at end of stream.
///
/// # Errors
/// A protocol violation or an I/O error.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Message>> {
    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 2];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            len = u64::from_be_bytes(b);
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_MESSAGE || data.len() + len > MAX_MESSAGE {
            return Err(std::io::Error::other("websocket message too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => return Ok(Some(Message::Close)),
            0x9 => return Ok(Some(Message::Ping(payload))),
            0xA => continue,
            0x0..=0x2 => {
                data.extend_from_slice(&payload);
                if fin {
                    return Ok(Some(Message::Data(data)));
                }
            }
            _ => {
                return Err(std::io::Error::other(format!(
                    "unknown websocket opcode {opcode}"
                )));
            }
        }
    }
}

/// Write one unmasked frame.
///
/// # Errors
/// An I/O error.
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut head = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => head.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            head.push(126);
            head.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            head.push(127);
            head.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Opcode of a binary message.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a pong.
pub const PONG: u8 = 0xA;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn masked_fragments_are_joined() {
        let mask = [1u8, 2, 3, 4];
        let frame = |fin: bool, op: u8, data: &[u8]| {
            let mut f = vec![if fin { 0x80 } else { 0 } | op, 0x80 | data.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            f
        };
        let mut bytes = frame(false, 0x2, b"\x01hel");
        bytes.extend(frame(true, 0x0, b"lo"));
        bytes.extend(frame(true, 0x9, b"p"));
        bytes.extend(frame(true, 0x8, b""));
        let mut r = &bytes[..];
        assert_eq!(
            read(&mut r).await.unwrap(),
            Some(Message::Data(b"\x01hello".to_vec()))
        );
        assert_eq!(
            read(&mut r).await.unwrap(),
            Some(Message::Ping(b"p".to_vec()))
        );
        assert_eq!(read(&mut r).await.unwrap(), Some(Message::Close));
        assert_eq!(read(&mut r).await.unwrap(), None);
    }
}
