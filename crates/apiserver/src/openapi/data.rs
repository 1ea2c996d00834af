//! The upstream schemas of the built-in kinds (Kubernetes v1.32), embedded in the binary as one
//! gzip-compressed JSON file written by `crates/apiserver/openapi/generate.py` (see the README
//! there). Nothing is decoded until a request needs it, and nothing decoded is kept here: an
//! idle server holds only the ~110 KB of compressed bytes in its (file-backed) text segment.
//! Callers that need a part of it on every request (field validation's field table) cache the
//! small decoded form themselves.
//!
//! The file holds `{"version", "source", "kinds", "fields", "schemas"}`: `kinds` maps
//! `apiVersion/Kind` to an upstream definition name, `schemas` is upstream's OpenAPI v3
//! `components.schemas` for those kinds and everything they reference, and `fields` is the
//! compact field table `crate::fieldcheck` walks.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The gzip-compressed data file.
const DATA: &[u8] = include_bytes!("../../openapi/k8s-v1.32.json.gz");

/// The Kubernetes version the schemas describe.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// The embedded data could not be decoded (a build with a corrupt data file).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Decompression failed.
    #[error("embedded openapi data is not valid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// The decompressed bytes are not the expected JSON.
    #[error("embedded openapi data is not valid json: {0}")]
    Json(#[source] serde_json::Error),
}

/// The decompressed JSON text of the data file.
pub fn text() -> Result<String, DataError> {
    let mut out = String::new();
    flate2::read::GzDecoder::new(DATA)
        .read_to_string(&mut out)
        .map_err(DataError::Gzip)?;
    Ok(out)
}

/// Decode the named sections of the data file into `T`; serde skips the other sections
/// without building them.
pub fn sections<T: DeserializeOwned>() -> Result<T, DataError> {
    serde_json::from_str(&text()?).map_err(DataError::Json)
}

/// `schemas` and `kinds`, borrowed from a decompressed [`text`]: each definition stays raw
/// JSON until a document picks it.
#[derive(Deserialize)]
pub struct Schemas<'a> {
    /// `apiVersion/Kind` → definition name.
    pub kinds: BTreeMap<String, String>,
    /// Definition name → its OpenAPI v3 schema.
    #[serde(borrow)]
    pub schemas: BTreeMap<&'a str, &'a RawValue>,
}

impl<'a> Schemas<'a> {
    /// Parse the schema sections of a decompressed data file.
    pub fn parse(text: &'a str) -> Result<Self, DataError> {
        serde_json::from_str(text).map_err(DataError::Json)
    }
}

/// The names a definition's raw JSON refers to (`#/components/schemas/<name>`).
pub fn references(raw: &RawValue) -> impl Iterator<Item = &str> {
    const PREFIX: &str = "\"#/components/schemas/";
    raw.get().split(PREFIX).skip(1).filter_map(|rest| {
        let end = rest.find('"')?;
        Some(&rest[..end])
    })
}

/// The definition name of a built-in kind: `apiVersion` (`v1`, `apps/v1`) and kind.
pub fn kind_key(api_version: &str, kind: &str) -> String {
    format!("{api_version}/{kind}")
}

/// A digest of the embedded data, for document hashes (computed once, 32 bytes).
pub fn digest() -> &'static [u8; 32] {
    static DIGEST: OnceLock<[u8; 32]> = OnceLock::new();
    DIGEST.get_or_init(|| Sha256::digest(DATA).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_decodes_and_names_served_kinds() {
        let text = text().expect("embedded data decompresses");
        let s = Schemas::parse(&text).expect("embedded data parses");
        let cm = &s.kinds["v1/ConfigMap"];
        assert_eq!(cm, "io.k8s.api.core.v1.ConfigMap");
        assert!(s.schemas.contains_key(cm.as_str()));
        assert!(s.kinds.contains_key("apps/v1/Deployment"));
        assert!(s.kinds.contains_key("autoscaling/v1/Scale"));
        let pod_spec = s.schemas["io.k8s.api.core.v1.PodSpec"];
        let refs: Vec<&str> = references(pod_spec).collect();
        assert!(refs.contains(&"io.k8s.api.core.v1.Container"), "{refs:?}");
        // Every reference resolves inside the file.
        for raw in s.schemas.values() {
            for r in references(raw) {
                assert!(s.schemas.contains_key(r), "dangling reference {r}");
            }
        }
    }
}
