//! Malformed input never panics and never hangs: every truncation and
//! byte mutation of every captured body, random bytes behind a valid
//! envelope, and deep nesting all end in `Ok` or a `DecodeError`.

use std::path::Path;

use crate::pb::{b, body, m};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn captured_bodies() -> Vec<Vec<u8>> {
    let dir = Path::new(&crate::manifest_dir()).join("tests/data");
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "pb").then(|| std::fs::read(&path).ok())?
        })
        .collect();
    bodies.sort();
    assert!(!bodies.is_empty());
    bodies
}

/// Decodes and, when it succeeds, checks the result is an object with a kind.
fn survive(input: &[u8]) {
    if let Ok(value) = ledge_proto::decode(input) {
        assert!(value.get("kind").is_some_and(|k| k.is_string()), "{value}");
    }
}

#[test]
fn every_truncation_of_every_capture() {
    for body in captured_bodies() {
        for len in 0..body.len() {
            survive(&body[..len]);
        }
    }
}

#[test]
fn byte_mutations_of_every_capture() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for body in captured_bodies() {
        for pos in 4..body.len() {
            for value in [
                0x00,
                0x01,
                0x7f,
                0x80,
                0xff,
                body[pos] ^ 0x07,
                body[pos] ^ 0x80,
            ] {
                let mut mutated = body.clone();
                mutated[pos] = value;
                survive(&mutated);
            }
        }
        // A few multi-byte mutations, insertions and deletions too.
        for _ in 0..300 {
            let mut mutated = body.clone();
            for _ in 0..1 + rng.below(4) {
                let pos = 4 + rng.below(mutated.len() - 4);
                match rng.below(3) {
                    0 => mutated[pos] = rng.next() as u8,
                    1 => mutated.insert(pos, rng.next() as u8),
                    _ if mutated.len() > 5 => {
                        mutated.remove(pos);
                    }
                    _ => {}
                }
            }
            survive(&mutated);
        }
    }
}

#[test]
fn random_objects_behind_valid_envelopes() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let kinds: Vec<(&str, &str)> = ledge_proto::supported_kinds().collect();
    for _ in 0..20_000 {
        let (api_version, kind) = kinds[rng.below(kinds.len())];
        let len = rng.below(64);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut input = body(api_version, kind, Vec::new());
        // body() ends with an empty raw field; append the random one instead.
        input.extend(b(2, &raw).into_bytes());
        survive(&input);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // RawExtension JSON nested far deeper than serde_json's limit.
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let raw = m(2, vec![b(1, json.as_bytes())]);
    assert!(ledge_proto::decode(&body("apps/v1", "ControllerRevision", vec![raw])).is_err());
    // Deeply nested unknown groups are skipped iteratively.
    let mut groups = vec![0x2b_u8; 100_000];
    groups.extend(vec![0x2c_u8; 100_000]);
    let input = body("v1", "ConfigMap", vec![crate::pb::raw(groups)]);
    assert!(ledge_proto::decode(&input).is_ok());
}
