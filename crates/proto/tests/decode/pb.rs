//! A tiny protobuf encoder for hand-built test bodies.

/// One encoded field.
pub struct F(Vec<u8>);

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(number: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(number) << 3 | u64::from(wire), &mut out);
    out
}

/// A varint field (ints are sign-extended like Go's `uint64(int32)`).
pub fn v(number: u32, value: i64) -> F {
    let mut out = key(number, 0);
    varint(value as u64, &mut out);
    F(out)
}

/// A length-delimited field with raw bytes.
pub fn b(number: u32, bytes: &[u8]) -> F {
    let mut out = key(number, 2);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    F(out)
}

/// A string field.
pub fn s(number: u32, text: &str) -> F {
    b(number, text.as_bytes())
}

/// A nested message field.
pub fn m(number: u32, fields: Vec<F>) -> F {
    b(number, &msg(fields))
}

/// A map entry field `{key = 1; value = 2}` with a string value.
pub fn kv(number: u32, k: &str, value: &str) -> F {
    m(number, vec![s(1, k), s(2, value)])
}

/// Concatenates fields into a message.
pub fn msg(fields: Vec<F>) -> Vec<u8> {
    fields.into_iter().flat_map(|F(bytes)| bytes).collect()
}

/// Wraps an object's message in the `k8s\0` + runtime.Unknown envelope.
pub fn body(api_version: &str, kind: &str, fields: Vec<F>) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    out.extend(msg(vec![
        m(1, vec![s(1, api_version), s(2, kind)]),
        b(2, &msg(fields)),
    ]));
    out
}

/// `metadata` (field 1) with a name and namespace.
pub fn meta(name: &str, namespace: &str) -> F {
    m(1, vec![s(1, name), s(3, namespace)])
}

/// Already-encoded bytes, used as they are.
pub fn raw(bytes: Vec<u8>) -> F {
    F(bytes)
}

impl F {
    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}
