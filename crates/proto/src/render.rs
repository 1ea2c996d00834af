//! Table-driven decoding of one protobuf message into the JSON object that
//! Go's `encoding/json` prints for the same decoded Go struct.
//!
//! Decoding runs in two passes per message. The first walks the wire and
//! files every known field into a slot (scalars: last one wins; messages: all
//! occurrences kept, since protobuf merges repeated occurrences of a message;
//! lists and maps: appended). The second walks the fields in Go declaration
//! order and prints each slot the way Go would: absent value fields as their
//! zero value, absent pointers/slices/maps as `null` or nothing depending on
//! `omitempty`, map keys sorted, embedded structs inlined. Unknown field
//! numbers are skipped, as Go's generated code does, so newer clients that
//! send fields this table does not know still decode.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::error::{FieldError, PathError, Seg};
use crate::schema::{Field, Message, Omit, Shape, Type};
use crate::special::{self, bytes, string, varint};
use crate::wire::{Payload, Reader};

/// Deeper than any Kubernetes type nests (a CronJob's containers sit at
/// about 10); bounds recursion on hostile input.
pub(crate) const MAX_DEPTH: usize = 64;

/// What the first pass collected for one field.
enum Slot<'a> {
    Absent,
    Scalar(Value),
    Chunks(Vec<&'a [u8]>),
    List(Vec<Value>),
    Entries(BTreeMap<String, Value>),
}

/// Decodes the concatenation of `chunks` as one `msg` and returns its JSON
/// members in Go's order.
pub(crate) fn object(
    msg: &'static Message,
    chunks: &[&[u8]],
    depth: usize,
) -> Result<Map<String, Value>, PathError> {
    if depth > MAX_DEPTH {
        return Err(FieldError::TooDeep(MAX_DEPTH).into());
    }
    let mut slots: Vec<Slot<'_>> = msg.fields.iter().map(|_| Slot::Absent).collect();
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        while let Some((number, payload)) = reader.next_field()? {
            let Some(i) = msg.fields.iter().position(|f| f.number == number) else {
                continue;
            };
            let field = &msg.fields[i];
            absorb(field, &mut slots[i], payload, depth)
                .map_err(|e| e.within(Seg::Field(field.json)))?;
        }
    }
    let mut out = Map::new();
    for (field, slot) in msg.fields.iter().zip(slots) {
        emit(field, slot, depth, &mut out).map_err(|e| e.within(Seg::Field(field.json)))?;
    }
    Ok(out)
}

/// First pass: files one wire occurrence of `field` into its slot.
fn absorb<'a>(
    field: &Field,
    slot: &mut Slot<'a>,
    payload: Payload<'a>,
    depth: usize,
) -> Result<(), PathError> {
    match field.shape {
        Shape::Rep => {
            if !matches!(slot, Slot::List(_)) {
                *slot = Slot::List(Vec::new());
            }
            let Slot::List(list) = slot else {
                return Ok(());
            };
            match (field.ty, payload) {
                // Packed encoding of repeated varints, which gogo also accepts.
                (Type::Bool | Type::I32 | Type::I64, Payload::Len(packed)) => {
                    let mut reader = Reader::new(packed);
                    while !reader.is_empty() {
                        let v = reader.varint().map_err(|e| at_index(e, list.len()))?;
                        list.push(scalar(field.ty, Payload::Varint(v)).unwrap_or(Value::Null));
                    }
                }
                (ty, payload) => {
                    let index = list.len();
                    list.push(
                        element(ty, payload, depth).map_err(|e| e.within(Seg::Index(index)))?,
                    );
                }
            }
        }
        Shape::Map => {
            if !matches!(slot, Slot::Entries(_)) {
                *slot = Slot::Entries(BTreeMap::new());
            }
            let Slot::Entries(entries) = slot else {
                return Ok(());
            };
            let (key, value) = map_entry(field.ty, bytes(payload)?, depth)?;
            // Go map assignment: a repeated key keeps the last value.
            entries.insert(key, value);
        }
        Shape::Val | Shape::Ptr | Shape::Inline => {
            if is_scalar(field.ty) {
                *slot = Slot::Scalar(scalar(field.ty, payload)?);
            } else {
                let chunk = bytes(payload)?;
                match slot {
                    Slot::Chunks(chunks) => chunks.push(chunk),
                    _ => *slot = Slot::Chunks(vec![chunk]),
                }
            }
        }
    }
    Ok(())
}

/// Second pass: prints one field's slot into `out`, or leaves it out.
fn emit(
    field: &Field,
    slot: Slot<'_>,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), PathError> {
    let nil = || (field.omit == Omit::Never).then_some(Value::Null);
    let value = match (field.shape, slot) {
        (Shape::Inline, slot) => {
            let chunks = match slot {
                Slot::Chunks(chunks) => chunks,
                _ => Vec::new(),
            };
            if let Value::Object(members) = aggregate(field.ty, &chunks, depth)? {
                out.extend(members);
            }
            return Ok(());
        }
        (Shape::Rep, Slot::List(list)) if !list.is_empty() => Some(Value::Array(list)),
        (Shape::Map, Slot::Entries(map)) if !map.is_empty() => {
            Some(Value::Object(map.into_iter().collect()))
        }
        (Shape::Rep | Shape::Map, _) => nil(),
        (Shape::Ptr, Slot::Scalar(v)) => Some(v),
        (Shape::Ptr, Slot::Chunks(chunks)) => Some(aggregate(field.ty, &chunks, depth)?),
        (Shape::Ptr, _) => nil(),
        (Shape::Val, slot) => {
            let (value, has_bytes) = match slot {
                Slot::Scalar(v) => (v, true),
                Slot::Chunks(chunks) => {
                    let has_bytes = chunks.iter().any(|c| !c.is_empty());
                    (aggregate(field.ty, &chunks, depth)?, has_bytes)
                }
                _ => (aggregate(field.ty, &[], depth)?, false),
            };
            (!omitted(field, &value, has_bytes)).then_some(value)
        }
    };
    if let Some(value) = value {
        out.insert(field.json.to_owned(), value);
    }
    Ok(())
}

/// Whether Go drops a value (not pointer) field with this rendered value.
fn omitted(field: &Field, value: &Value, has_bytes: bool) -> bool {
    let empty = match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    };
    match field.omit {
        Omit::Never => false,
        // omitempty never drops a struct value, however empty.
        Omit::Empty => is_scalar(field.ty) && empty,
        Omit::Zero => match field.ty {
            Type::Msg(_) => !has_bytes,
            // Time/MicroTime have IsZero; a zero time renders as null.
            Type::Time | Type::MicroTime => value.is_null(),
            _ => empty,
        },
    }
}

/// Renders a singular non-scalar field from all its occurrences (none: its
/// zero value); for scalar types, their zero value.
fn aggregate(ty: Type, chunks: &[&[u8]], depth: usize) -> Result<Value, PathError> {
    if let Type::Msg(msg) = ty {
        return Ok(Value::Object(object(msg, chunks, depth + 1)?));
    }
    if let Some(kind) = ty.special() {
        return Ok(special::render(kind, chunks)?);
    }
    Ok(match ty {
        Type::Str => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::I32 | Type::I64 => Value::from(0),
        // A nil []byte.
        _ => Value::Null,
    })
}

/// Renders one list element or map value from its single occurrence.
fn element(ty: Type, payload: Payload<'_>, depth: usize) -> Result<Value, PathError> {
    if is_scalar(ty) {
        Ok(scalar(ty, payload)?)
    } else {
        aggregate(ty, &[bytes(payload)?], depth)
    }
}

/// Decodes a map entry message `{key = 1; value = 2}`.
fn map_entry(ty: Type, entry: &[u8], depth: usize) -> Result<(String, Value), PathError> {
    let (mut key, mut value) = (String::new(), None);
    let mut reader = Reader::new(entry);
    while let Some((number, payload)) = reader.next_field()? {
        match number {
            1 => key = string(payload)?,
            2 => value = Some(payload),
            _ => {}
        }
    }
    let value = match value {
        Some(payload) => element(ty, payload, depth),
        // gogo initialises a missing []byte map value to []byte{}, not nil.
        None if matches!(ty, Type::Bytes) => Ok(Value::String(String::new())),
        None => aggregate(ty, &[], depth),
    };
    let value = value.map_err(|e| e.within(Seg::Key(key.clone())))?;
    Ok((key, value))
}

fn is_scalar(ty: Type) -> bool {
    matches!(
        ty,
        Type::Str | Type::Bytes | Type::Bool | Type::I32 | Type::I64
    )
}

/// Decodes a scalar; integers are truncated like gogo's `int32(v)`.
fn scalar(ty: Type, payload: Payload<'_>) -> Result<Value, FieldError> {
    Ok(match ty {
        Type::Str => Value::String(string(payload)?),
        Type::Bytes => Value::String(BASE64.encode(bytes(payload)?)),
        Type::Bool => Value::Bool(varint(payload)? != 0),
        Type::I32 => Value::from(varint(payload)? as i32),
        Type::I64 => Value::from(varint(payload)? as i64),
        _ => Value::Null,
    })
}

fn at_index(err: FieldError, index: usize) -> PathError {
    PathError::from(err).within(Seg::Index(index))
}
