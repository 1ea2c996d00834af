//! The protobuf wire format: varints, field keys and the four payload shapes.
//!
//! This is the only place that reads bytes; it knows nothing about Kubernetes.
//! It follows the gogo-protobuf code that Kubernetes generates
//! (`generated.pb.go`): varints of at most 10 bytes, field numbers above 0,
//! and unknown fields — groups included — skipped rather than rejected.

use crate::error::FieldError;

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// The payload of one field, as the wire type laid it out.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (never used by Kubernetes messages; skipped).
    Fixed64,
    /// Wire type 2: strings, bytes, messages, packed scalars.
    Len(&'a [u8]),
    /// Wire type 3, already skipped up to its end-group marker.
    Group,
    /// Wire type 5 (never used by Kubernetes messages; skipped).
    Fixed32,
}

impl Payload<'_> {
    /// The wire type's name, for error messages.
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Payload::Varint(_) => "varint",
            Payload::Fixed64 => "fixed64",
            Payload::Len(_) => "length-delimited",
            Payload::Group => "group",
            Payload::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over the fields of one encoded message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` as the fields of one message.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads the next field as (field number, payload); `None` at the end.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Payload<'a>)>, FieldError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (number, wire) = self.key()?;
        let payload = match wire {
            0 => Payload::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Payload::Fixed64
            }
            2 => Payload::Len(self.len_delimited()?),
            3 => {
                self.skip_group(number)?;
                Payload::Group
            }
            4 => return Err(FieldError::UnmatchedEndGroup),
            5 => {
                self.take(4)?;
                Payload::Fixed32
            }
            other => return Err(FieldError::IllegalWireType(other)),
        };
        Ok(Some((number, payload)))
    }

    /// Reads one base-128 varint.
    pub(crate) fn varint(&mut self) -> Result<u64, FieldError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate() {
            if i == 10 {
                return Err(FieldError::VarintOverflow);
            }
            // Bits past the 64th are dropped, as gogo's `wire |= uint64(b&0x7F) << shift` does.
            value |= u64::from(byte & 0x7f)
                .checked_shl(7 * i as u32)
                .unwrap_or(0);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            return Err(FieldError::VarintOverflow);
        }
        Err(FieldError::Truncated)
    }

    fn key(&mut self) -> Result<(u32, u8), FieldError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(FieldError::IllegalTag(key));
        }
        // Both casts are lossless: number < 2^29 and the wire type is 3 bits.
        Ok((number as u32, (key & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FieldError> {
        if n > self.buf.len() {
            return Err(FieldError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], FieldError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| FieldError::Truncated)?;
        self.take(len)
    }

    /// Skips a (deprecated) group up to the end-group marker of `number`,
    /// iteratively so that nesting cannot exhaust the stack.
    fn skip_group(&mut self, number: u32) -> Result<(), FieldError> {
        let mut open = vec![number];
        while let Some(&current) = open.last() {
            if self.buf.is_empty() {
                return Err(FieldError::Truncated);
            }
            let (n, wire) = self.key()?;
            match wire {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    self.len_delimited()?;
                }
                3 => open.push(n),
                4 if n == current => {
                    open.pop();
                }
                4 => return Err(FieldError::UnmatchedEndGroup),
                5 => {
                    self.take(4)?;
                }
                other => return Err(FieldError::IllegalWireType(other)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, String)>, FieldError> {
        let mut reader = Reader::new(buf);
        let mut out = Vec::new();
        while let Some((n, p)) = reader.next_field()? {
            out.push((n, format!("{p:?}")));
        }
        Ok(out)
    }

    #[test]
    fn reads_varints_of_every_length() {
        let mut r = Reader::new(&[0x96, 0x01]);
        assert_eq!(r.varint().ok(), Some(150));
        // -1 as a sign-extended 10-byte varint, how Go encodes negative int32/int64.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.varint().ok(), Some(u64::MAX));
    }

    #[test]
    fn rejects_overlong_and_truncated_varints() {
        let mut r = Reader::new(&[0x80; 11]);
        assert!(matches!(r.varint(), Err(FieldError::VarintOverflow)));
        let mut r = Reader::new(&[0x80, 0x80]);
        assert!(matches!(r.varint(), Err(FieldError::Truncated)));
    }

    #[test]
    fn reads_keys_and_payloads() {
        // field 1 varint 5, field 2 "hi", field 3 fixed32, field 4 fixed64
        let buf = [
            0x08, 5, 0x12, 2, b'h', b'i', 0x1d, 1, 2, 3, 4, 0x21, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let got = fields(&buf).unwrap_or_default();
        let numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(got[1].1, "Len([104, 105])");
    }

    #[test]
    fn skips_nested_groups() {
        // group 5 { varint 1; group 6 { } } then field 7 varint 9
        let buf = [0x2b, 0x08, 1, 0x33, 0x34, 0x2c, 0x38, 9];
        let got = fields(&buf).unwrap_or_default();
        assert_eq!(got, [(5, "Group".to_owned()), (7, "Varint(9)".to_owned())]);
    }

    #[test]
    fn rejects_bad_keys_and_lengths() {
        assert!(matches!(fields(&[0x00]), Err(FieldError::IllegalTag(0))));
        assert!(matches!(
            fields(&[0x0e]),
            Err(FieldError::IllegalWireType(6))
        ));
        assert!(matches!(
            fields(&[0x0c]),
            Err(FieldError::UnmatchedEndGroup)
        ));
        assert!(matches!(fields(&[0x12, 5, 1]), Err(FieldError::Truncated)));
        assert!(matches!(fields(&[0x2b, 0x08]), Err(FieldError::Truncated)));
        assert!(matches!(
            fields(&[0x2b, 0x34]),
            Err(FieldError::UnmatchedEndGroup)
        ));
    }
}
