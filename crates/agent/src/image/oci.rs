//! OCI image archives: an `oci-layout` directory as one tar (`oras copy --to-oci-layout`,
//! `skopeo copy ... oci-archive:`, `docker save` since Docker 25). What ledge can run from one is a
//! WebAssembly artifact — a manifest whose layer is a Wasm module or component (media type
//! `application/wasm`, `application/vnd.wasm.content.layer.v1+wasm`, ...), as `wasm-to-oci`,
//! `oras push` and the Wasm OCI artifact layout produce. [`wasm_payload`] finds that layer and
//! checks every blob it reads against its digest.
//!
//! A container image (layers of files) is refused with a message: running one needs the `oci`
//! runtime, which ledge does not have yet.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use ledge_api::Pointer as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Media types of a layer that holds a Wasm binary.
const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Manifests and indexes are small; a bigger "manifest" is not one.
const MAX_JSON: u64 = 4 << 20;

/// Whether a file's first 512 bytes are a tar header.
pub fn is_tar(head: &[u8]) -> bool {
    head.len() > 262 && &head[257..262] == b"ustar"
}

/// The Wasm binary of the OCI archive at `archive`: the layer of the manifest tagged like
/// `reference` (`org.opencontainers.image.ref.name`, the tag alone or the whole reference), or of
/// the only manifest. Returns the binary and the manifest's digest.
///
/// # Errors
/// A one-line reason: not an OCI layout, no or several manifests to choose from, a container
/// image, a blob missing or not matching its digest.
pub fn wasm_payload(archive: &Path, reference: &str) -> Result<(Vec<u8>, String), String> {
    let index = read_entry(archive, "index.json", MAX_JSON)?.ok_or_else(|| {
        if read_entry(archive, "manifest.json", MAX_JSON)
            .ok()
            .flatten()
            .is_some()
        {
            "a Docker image archive without an OCI index: save it as an OCI archive (docker ≥ 25, or `skopeo copy docker-archive:F oci-archive:G`)".to_string()
        } else {
            "a tar archive without index.json: not an OCI image layout".to_string()
        }
    })?;
    let index: Value =
        serde_json::from_slice(&index).map_err(|e| format!("index.json is not JSON: {e}"))?;
    let descriptor = choose(&index, reference)?;
    let manifest_digest = str_of(&descriptor, "/digest").to_string();
    let mut manifest = blob(archive, &manifest_digest, MAX_JSON)?;
    let mut doc: Value = serde_json::from_slice(&manifest)
        .map_err(|e| format!("manifest {manifest_digest} is not JSON: {e}"))?;
    // A nested index (several platforms): take the wasm platform, else the only entry.
    if doc.at("/manifests").is_some() {
        let inner = doc
            .at("/manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let pick = inner
            .iter()
            .find(|m| {
                str_of(m, "/platform/architecture") == "wasm"
                    || str_of(m, "/platform/os").starts_with("wasi")
            })
            .or_else(|| (inner.len() == 1).then(|| &inner[0]))
            .ok_or("an image index with no wasm platform among several manifests")?;
        let digest = str_of(pick, "/digest").to_string();
        manifest = blob(archive, &digest, MAX_JSON)?;
        doc = serde_json::from_slice(&manifest)
            .map_err(|e| format!("manifest {digest} is not JSON: {e}"))?;
    }
    let layers = doc
        .at("/layers")
        .and_then(Value::as_array)
        .ok_or("the manifest lists no layers")?;
    let wasm: Vec<&Value> = layers
        .iter()
        .filter(|l| WASM_LAYER_TYPES.contains(&str_of(l, "/mediaType")))
        .collect();
    let layer = match wasm.as_slice() {
        [one] => *one,
        [] => {
            return Err(
                "a container image (its layers are file systems, not Wasm): ledge runs Wasm modules and components and native executables; import the Wasm binary or the executable itself".into(),
            );
        }
        _ => {
            return Err(
                "a manifest with several Wasm layers: ledge runs one binary per image".into(),
            );
        }
    };
    let size = layer.at("/size").and_then(Value::as_u64).unwrap_or(0);
    let bytes = blob(archive, str_of(layer, "/digest"), size.max(1))?;
    Ok((bytes, manifest_digest))
}

/// The manifest descriptor to import from the top-level index.
fn choose(index: &Value, reference: &str) -> Result<Value, String> {
    let manifests = index
        .at("/manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if manifests.len() == 1 {
        return Ok(manifests[0].clone());
    }
    if manifests.is_empty() {
        return Err("index.json lists no manifests".into());
    }
    let tag = reference.rsplit_once(':').map_or(reference, |(_, t)| t);
    let named = |m: &&Value| {
        let name = str_of(m, "/annotations/org.opencontainers.image.ref.name");
        name == reference || name == tag
    };
    manifests.iter().find(named).cloned().ok_or_else(|| {
        let names: Vec<&str> = manifests
            .iter()
            .map(|m| str_of(m, "/annotations/org.opencontainers.image.ref.name"))
            .filter(|n| !n.is_empty())
            .collect();
        format!(
            "the archive holds {} manifests and none is named {tag:?}; name one of: {}",
            manifests.len(),
            names.join(", ")
        )
    })
}

/// The blob `digest` (`sha256:<hex>`) of the layout, checked against its digest.
fn blob(archive: &Path, digest: &str, limit: u64) -> Result<Vec<u8>, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("unsupported digest {digest:?} (only sha256 is)"))?;
    let bytes = read_entry(archive, &format!("blobs/sha256/{hex}"), limit)?
        .ok_or_else(|| format!("blob {digest} is missing from the archive"))?;
    let actual = format!("{:x}", Sha256::digest(&bytes));
    if actual != hex {
        return Err(format!(
            "blob {digest} does not match its digest (sha256:{actual}): the archive is damaged"
        ));
    }
    Ok(bytes)
}

/// The contents of the archive entry at `name` (a leading `./` is ignored), if present and no
/// larger than `limit`.
fn read_entry(archive: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a readable tar archive: {e}"))?;
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("damaged tar archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("damaged tar archive: {e}"))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        sizes.insert(path.clone(), size);
        if path != name {
            continue;
        }
        if size > limit {
            return Err(format!(
                "{name} is {size} bytes, more than the {limit} expected"
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {name} from the archive: {e}"))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.at(pointer).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// The smallest valid Wasm module.
    pub(crate) const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    /// An OCI layout tar with one manifest per `(tag, layer media type, layer bytes)`.
    pub(crate) fn archive(dir: &Path, images: &[(&str, &str, &[u8])]) -> std::path::PathBuf {
        let path = dir.join("image.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let mut manifests = Vec::new();
        for (tag, media_type, layer) in images {
            let config = br#"{}"#;
            add(&format!("blobs/sha256/{}", &digest(config)[7..]), config);
            add(&format!("blobs/sha256/{}", &digest(layer)[7..]), layer);
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                           "digest": digest(config), "size": config.len()},
                "layers": [{"mediaType": media_type, "digest": digest(layer), "size": layer.len()}],
            }))
            .unwrap();
            add(
                &format!("blobs/sha256/{}", &digest(&manifest)[7..]),
                &manifest,
            );
            manifests.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }));
        }
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
        add("index.json", &index);
        tar.finish().unwrap();
        path
    }

    #[test]
    fn finds_the_wasm_layer_of_the_named_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let other = b"\0asm\x01\0\0\0\0\x04\x01\x00\x00\x00";
        let path = archive(
            dir.path(),
            &[
                (
                    "v1",
                    "application/vnd.wasm.content.layer.v1+wasm",
                    EMPTY_MODULE,
                ),
                ("v2", "application/wasm", other),
            ],
        );
        let head = std::fs::read(&path).unwrap();
        assert!(is_tar(&head[..512]));
        let (bytes, _) = wasm_payload(&path, "hello:v1").unwrap();
        assert_eq!(bytes, EMPTY_MODULE);
        let (bytes, _) = wasm_payload(&path, "v2").unwrap();
        assert_eq!(bytes, other);
        let err = wasm_payload(&path, "hello:v3").unwrap_err();
        assert!(
            err.contains("none is named \"v3\"") && err.contains("v1, v2"),
            "{err}"
        );
    }

    #[test]
    fn container_images_and_damaged_blobs_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = archive(
            dir.path(),
            &[(
                "latest",
                "application/vnd.oci.image.layer.v1.tar+gzip",
                b"not wasm",
            )],
        );
        let err = wasm_payload(&path, "app:latest").unwrap_err();
        assert!(err.starts_with("a container image"), "{err}");

        // The layer's bytes changed after the manifest was written.
        let good = archive(dir.path(), &[("v1", "application/wasm", EMPTY_MODULE)]);
        let mut bytes = std::fs::read(&good).unwrap();
        let at = bytes
            .windows(EMPTY_MODULE.len())
            .position(|w| w == EMPTY_MODULE)
            .unwrap();
        bytes[at + 7] = 9;
        std::fs::write(&good, bytes).unwrap();
        let err = wasm_payload(&good, "v1").unwrap_err();
        assert!(err.contains("does not match its digest"), "{err}");

        let plain = dir.path().join("plain.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&plain).unwrap());
        let mut header = tar::Header::new_ustar();
        header.set_size(2);
        header.set_cksum();
        tar.append_data(&mut header, "x.txt", &b"hi"[..]).unwrap();
        tar.finish().unwrap();
        drop(tar);
        let err = wasm_payload(&plain, "x").unwrap_err();
        assert!(err.contains("not an OCI image layout"), "{err}");
    }
}
