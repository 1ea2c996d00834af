//! apimachinery types whose JSON form is not their protobuf message's shape.
//!
//! Each has a custom `MarshalJSON` upstream, copied here in behaviour:
//! `metav1.Time` / `MicroTime` (protobuf `Timestamp{seconds, nanos}` → RFC 3339
//! string or `null`), `metav1.Duration` (→ `"1h0m0s"`), `resource.Quantity`
//! (→ its string), `intstr.IntOrString` (→ number or string),
//! `runtime.RawExtension` and `metav1.FieldsV1` (→ the embedded JSON), and the
//! `[]string` wrappers go-to-protobuf invents for map values
//! (`authentication/v1 ExtraValue` → a bare list). Zero values render as Go
//! renders a zero struct: `null` times, `"0"`, `0`, `"0s"`.

use serde_json::Value;

use crate::error::FieldError;
use crate::gofmt;
use crate::wire::{Payload, Reader};

/// `time.Time{}` — Go's zero time, 0001-01-01T00:00:00Z, as Unix seconds.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Which custom-marshalled type a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// `metav1.Time`.
    Time,
    /// `metav1.MicroTime`.
    MicroTime,
    /// `metav1.Duration`.
    Duration,
    /// `resource.Quantity`.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `runtime.RawExtension`.
    RawExtension,
    /// `metav1.FieldsV1`.
    FieldsV1,
    /// A named `[]string` wrapped as `message { repeated string items = 1; }`.
    StrList,
}

/// Renders the special value carried by `chunks` (all occurrences of the
/// field, in wire order; empty when the field was absent).
pub(crate) fn render(kind: Special, chunks: &[&[u8]]) -> Result<Value, FieldError> {
    // Time, MicroTime and Quantity have hand-written Unmarshal methods that
    // replace the value on every occurrence; the generated ones merge.
    let last = chunks.last().copied();
    match kind {
        Special::Time => time(last, false),
        Special::MicroTime => time(last, true),
        Special::Quantity => quantity(last),
        Special::Duration => {
            let mut nanos = 0;
            each_field(chunks, |n, p| {
                if n == 1 {
                    nanos = varint(p)? as i64;
                }
                Ok(())
            })?;
            Ok(Value::String(gofmt::duration(nanos)))
        }
        Special::IntOrString => int_or_string(chunks),
        Special::RawExtension => {
            let raw = last_bytes(chunks, 1)?;
            raw.map_or(Ok(Value::Null), |raw| embedded(raw, false))
        }
        Special::FieldsV1 => match last_bytes(chunks, 1)? {
            None | Some([]) => Ok(Value::Null),
            Some(raw) => embedded(raw, true),
        },
        Special::StrList => {
            let mut items = Vec::new();
            each_field(chunks, |n, p| {
                if n == 1 {
                    items.push(Value::String(string(p)?));
                }
                Ok(())
            })?;
            Ok(if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items)
            })
        }
    }
}

/// Calls `f` with every field of every chunk.
fn each_field(
    chunks: &[&[u8]],
    mut f: impl FnMut(u32, Payload<'_>) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        while let Some((number, payload)) = reader.next_field()? {
            f(number, payload)?;
        }
    }
    Ok(())
}

/// The payload of a varint field.
pub(crate) fn varint(p: Payload<'_>) -> Result<u64, FieldError> {
    match p {
        Payload::Varint(v) => Ok(v),
        other => Err(wrong(other, "varint")),
    }
}

/// The payload of a length-delimited field.
pub(crate) fn bytes(p: Payload<'_>) -> Result<&[u8], FieldError> {
    match p {
        Payload::Len(b) => Ok(b),
        other => Err(wrong(other, "length-delimited")),
    }
}

/// A string field; Go does not validate UTF-8 here and its JSON encoder
/// replaces invalid bytes with U+FFFD, which is what a lossy conversion does.
pub(crate) fn string(p: Payload<'_>) -> Result<String, FieldError> {
    Ok(String::from_utf8_lossy(bytes(p)?).into_owned())
}

/// The error for a payload of the wrong wire type.
pub(crate) fn wrong(found: Payload<'_>, expected: &'static str) -> FieldError {
    FieldError::WrongWireType {
        found: found.wire_name(),
        expected,
    }
}

fn last_bytes<'a>(chunks: &[&'a [u8]], field: u32) -> Result<Option<&'a [u8]>, FieldError> {
    let mut out = None;
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        while let Some((number, payload)) = reader.next_field()? {
            if number == field {
                out = Some(bytes(payload)?);
            }
        }
    }
    Ok(out)
}

/// `Timestamp{seconds = 1, nanos = 2}` → RFC 3339, or `null` for the zero time.
fn time(chunk: Option<&[u8]>, micro: bool) -> Result<Value, FieldError> {
    // An empty message is how Go encodes the zero time (Time.Marshal → nil).
    let Some(chunk) = chunk.filter(|c| !c.is_empty()) else {
        return Ok(Value::Null);
    };
    let (mut secs, mut nanos) = (0i64, 0i32);
    each_field(&[chunk], |n, p| {
        match n {
            1 => secs = varint(p)? as i64,
            2 => nanos = varint(p)? as i32,
            _ => {}
        }
        Ok(())
    })?;
    if !micro {
        // metav1.Time.Unmarshal drops nanos: the JSON form has whole seconds.
        return Ok(if secs == GO_ZERO_TIME {
            Value::Null
        } else {
            Value::String(gofmt::rfc3339(secs, None))
        });
    }
    // MicroTime truncates nanos toward zero to microseconds, then time.Unix
    // normalises a negative or oversized remainder into the seconds.
    let micros = i64::from(nanos / 1000);
    let secs = secs.saturating_add(micros.div_euclid(1_000_000));
    let micros = micros.rem_euclid(1_000_000);
    if secs == GO_ZERO_TIME && micros == 0 {
        return Ok(Value::Null);
    }
    // rem_euclid(1_000_000) is in [0, 999_999].
    Ok(Value::String(gofmt::rfc3339(secs, Some(micros as u32))))
}

/// `Quantity{string = 1}` → the string, checked with Go's quantity grammar.
///
/// Go clients always send the canonical form (`Quantity.String()`), which is
/// also what upstream would print, so the string is kept as sent.
fn quantity(chunk: Option<&[u8]>) -> Result<Value, FieldError> {
    let mut text = None;
    each_field(chunk.as_slice(), |n, p| {
        if n == 1 {
            text = Some(string(p)?);
        }
        Ok(())
    })?;
    match text {
        None => Ok(Value::String("0".to_owned())),
        Some(s) if is_quantity(&s) => Ok(Value::String(s)),
        Some(s) => Err(FieldError::Quantity(s)),
    }
}

/// Whether `resource.ParseQuantity` accepts `s`: an optionally signed
/// decimal number (either side of the point may be empty) and a suffix that
/// is a binary-SI, decimal-SI or `e<int>` exponent.
fn is_quantity(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut pos = usize::from(matches!(b[0], b'+' | b'-'));
    let skip_digits = |pos: &mut usize| {
        while b.get(*pos).is_some_and(u8::is_ascii_digit) {
            *pos += 1;
        }
    };
    skip_digits(&mut pos);
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        skip_digits(&mut pos);
    }
    match &s[pos..] {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        suffix => suffix
            .strip_prefix(['e', 'E'])
            .is_some_and(|exp| exp.parse::<i64>().is_ok()),
    }
}

/// `IntOrString{type = 1, intVal = 2, strVal = 3}` → number or string.
fn int_or_string(chunks: &[&[u8]]) -> Result<Value, FieldError> {
    let (mut ty, mut int_val, mut str_val) = (0i64, 0i32, String::new());
    each_field(chunks, |n, p| {
        match n {
            1 => ty = varint(p)? as i64,
            2 => int_val = varint(p)? as i32,
            3 => str_val = string(p)?,
            _ => {}
        }
        Ok(())
    })?;
    match ty {
        0 => Ok(Value::from(int_val)),
        1 => Ok(Value::String(str_val)),
        other => Err(FieldError::IntOrStringType(other)),
    }
}

/// Embedded JSON of a RawExtension (`fields_v1`: of a FieldsV1), following
/// upstream's content sniffing: CBOR is recognised and refused, JSON parsed.
fn embedded(raw: &[u8], fields_v1: bool) -> Result<Value, FieldError> {
    let first = raw.first().copied().unwrap_or(0);
    let cbor = if fields_v1 {
        matches!(first, 0xf6 | 0xa0..=0xbf | 0xc6..=0xdb)
    } else {
        raw.starts_with(&[0xd9, 0xd9, 0xf7])
    };
    if cbor {
        return Err(FieldError::Cbor);
    }
    let json_start = b"\t\r\n {[nft\"-0123456789";
    if !fields_v1 && !json_start.contains(&first) {
        return Err(FieldError::UnknownEmbedding);
    }
    serde_json::from_slice(raw).map_err(FieldError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(kind: Special, chunks: &[&[u8]]) -> Value {
        render(kind, chunks).unwrap_or_else(|e| panic!("{kind:?}: {e}"))
    }

    #[test]
    fn times_render_as_go_does() {
        assert_eq!(ok(Special::Time, &[]), Value::Null);
        assert_eq!(ok(Special::Time, &[&[]]), Value::Null);
        // seconds = 1704067200, nanos = 5 (dropped for Time)
        let ts: &[u8] = &[0x08, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x10, 0x05];
        assert_eq!(ok(Special::Time, &[ts]), json!("2024-01-01T00:00:00Z"));
        // nanos = 1_234_567 → 1234 µs
        let ts: &[u8] = &[0x08, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x10, 0x87, 0xad, 0x4b];
        assert_eq!(
            ok(Special::MicroTime, &[ts]),
            json!("2024-01-01T00:00:00.001234Z")
        );
        // seconds = Go's zero time → null
        let zero: &[u8] = &[
            0x08, 0x80, 0x92, 0xb8, 0xc3, 0x98, 0xfe, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(ok(Special::Time, &[zero]), Value::Null);
    }

    #[test]
    fn zero_values_match_go_zero_structs() {
        assert_eq!(ok(Special::Duration, &[]), json!("0s"));
        assert_eq!(ok(Special::Quantity, &[]), json!("0"));
        assert_eq!(ok(Special::IntOrString, &[]), json!(0));
        assert_eq!(ok(Special::RawExtension, &[]), Value::Null);
        assert_eq!(ok(Special::FieldsV1, &[]), Value::Null);
        assert_eq!(ok(Special::StrList, &[]), Value::Null);
    }

    #[test]
    fn int_or_string_picks_by_type() {
        assert_eq!(ok(Special::IntOrString, &[&[0x10, 80]]), json!(80));
        let named: &[u8] = &[0x08, 1, 0x1a, 4, b'h', b't', b't', b'p'];
        assert_eq!(ok(Special::IntOrString, &[named]), json!("http"));
        assert!(matches!(
            render(Special::IntOrString, &[&[0x08, 2]]),
            Err(FieldError::IntOrStringType(2))
        ));
    }

    #[test]
    fn quantities_follow_go_grammar() {
        for good in [
            "0", "1", "500m", "1Gi", "1.5", ".5", "1.", "+1", "-1", "1e3", "1E-3",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "abc", "1Q", "1 Gi", "1e", "1e+", "1KiB", "Gi1", "1e3.5"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        let q: &[u8] = &[0x0a, 3, b'1', b'G', b'i'];
        assert_eq!(ok(Special::Quantity, &[q]), json!("1Gi"));
        assert!(matches!(
            render(Special::Quantity, &[&[0x0a, 1, b'x']]),
            Err(FieldError::Quantity(_))
        ));
    }

    #[test]
    fn embedded_json_is_parsed_and_cbor_refused() {
        let raw: &[u8] = &[0x0a, 7, b'{', b'"', b'a', b'"', b':', b'1', b'}'];
        assert_eq!(ok(Special::RawExtension, &[raw]), json!({"a": 1}));
        assert_eq!(ok(Special::FieldsV1, &[raw]), json!({"a": 1}));
        let cbor: &[u8] = &[0x0a, 4, 0xd9, 0xd9, 0xf7, 0xa0];
        assert!(matches!(
            render(Special::RawExtension, &[cbor]),
            Err(FieldError::Cbor)
        ));
        assert!(matches!(
            render(Special::RawExtension, &[&[0x0a, 0]]),
            Err(FieldError::UnknownEmbedding)
        ));
        assert!(matches!(
            render(Special::RawExtension, &[&[0x0a, 1, b'{']]),
            Err(FieldError::Json(_))
        ));
    }

    #[test]
    fn durations_and_string_lists() {
        // 90 s
        let d: &[u8] = &[0x08, 0x80, 0x88, 0xac, 0xa3, 0xcf, 0x02];
        assert_eq!(ok(Special::Duration, &[d]), json!("1m30s"));
        let list: &[u8] = &[0x0a, 1, b'a', 0x0a, 1, b'b'];
        assert_eq!(ok(Special::StrList, &[list]), json!(["a", "b"]));
    }
}
