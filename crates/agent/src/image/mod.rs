//! The node's content-addressed image store, under `<data dir>/images`: blobs named by their
//! sha256 digest (`blobs/sha256/<hex>`) and `refs.json` mapping references (`hello:1`) to a
//! digest and what the blob is (a Wasm module, a Wasm component, a native executable).
//! `ledge image import` writes it; the agent resolves a pod's `image` through it. Writers take
//! an exclusive lock on `refs.lock`, and every file is replaced atomically (write, fsync,
//! rename), so a crash never leaves a half-written reference.

pub mod oci;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an image blob is.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// A WebAssembly core module (WASI preview 1).
    WasmModule,
    /// A WebAssembly component (WASI preview 2, `wasi:http`).
    WasmComponent,
    /// A native executable (ELF or a `#!` script), for the `process` runtime.
    Executable,
}

impl ImageKind {
    /// The runtime that can run this kind.
    pub fn runtime(self) -> &'static str {
        match self {
            ImageKind::WasmModule | ImageKind::WasmComponent => "wasm",
            ImageKind::Executable => "process",
        }
    }

    /// Recognise a blob from its first bytes.
    ///
    /// # Errors
    /// A one-line description of what the file is not.
    pub fn sniff(head: &[u8]) -> Result<Self, String> {
        if head.starts_with(b"\0asm") {
            return match head.get(4..8) {
                Some([1, 0, 0, 0]) => Ok(ImageKind::WasmModule),
                Some([0x0d, 0, 1, 0]) => Ok(ImageKind::WasmComponent),
                _ => Err("a WebAssembly binary of an unknown version".into()),
            };
        }
        if head.starts_with(b"\x7fELF") || head.starts_with(b"#!") {
            return Ok(ImageKind::Executable);
        }
        if oci::is_tar(head) {
            return Err("a tar archive: `ledge image import` takes the Wasm binary out of an OCI image archive first".into());
        }
        Err("neither a WebAssembly module or component nor a native executable".into())
    }
}

/// One stored reference.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:<hex>`.
    pub digest: String,
    /// What the blob is.
    pub kind: ImageKind,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct RefsFile {
    refs: BTreeMap<String, ImageRecord>,
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing the store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be an image.
    #[error("{path} is {reason}")]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// What it is not.
        reason: String,
    },
    /// The reference is not well formed.
    #[error(
        "invalid image reference {0:?}: use name[:tag], e.g. hello:1 or registry.example/app/hello:1"
    )]
    BadReference(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The store of one node.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// Normalise a reference the way users expect `hello` and `hello:latest` to be one image.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    let r = reference.trim();
    let bad = || ImageError::BadReference(reference.to_string());
    if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    if r.contains('@') {
        return Ok(r.to_string());
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.is_empty() {
        return Err(bad());
    }
    Ok(if last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    })
}

impl ImageStore {
    /// The store in `data_dir/images`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("images"),
        }
    }

    /// Where the blob with `digest` (`sha256:<hex>`) is kept.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn read_refs(&self) -> Result<RefsFile, ImageError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RefsFile::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Every reference, sorted.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn list(&self) -> Result<Vec<(String, ImageRecord)>, ImageError> {
        Ok(self.read_refs()?.refs.into_iter().collect())
    }

    /// Where the image `reference` is, and what it is; `None` if it was never imported.
    ///
    /// # Errors
    /// The store cannot be read, or the reference is malformed.
    pub fn resolve(&self, reference: &str) -> Result<Option<(PathBuf, ImageRecord)>, ImageError> {
        let key = normalize(reference)?;
        let refs = self.read_refs()?;
        Ok(refs
            .refs
            .get(&key)
            .map(|r| (self.blob_path(&r.digest), r.clone()))
            .filter(|(p, _)| p.is_file()))
    }

    /// Import the file at `src` as `reference`, calling `progress(done, total)` as bytes are
    /// copied. Returns the record.
    ///
    /// # Errors
    /// The file cannot be read or is not an image; the store cannot be written.
    pub fn import(
        &self,
        src: &Path,
        reference: &str,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ImageRecord, ImageError> {
        let key = normalize(reference)?;
        let mut file = File::open(src).map_err(io(src))?;
        let total = file.metadata().map_err(io(src))?.len();
        let mut head = vec![0u8; 512];
        let n = read_full(&mut file, &mut head).map_err(io(src))?;
        head.truncate(n);
        let kind = ImageKind::sniff(&head).map_err(|reason| ImageError::NotAnImage {
            path: src.to_path_buf(),
            reason,
        })?;
        let blobs = self.root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        let tmp = blobs.join(format!(".import-{}", std::process::id()));
        let mut out = File::create(&tmp).map_err(io(&tmp))?;
        let mut hasher = Sha256::new();
        hasher.update(&head);
        out.write_all(&head).map_err(io(&tmp))?;
        let mut done = head.len() as u64;
        progress(done, total);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io(src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(&tmp))?;
            done += n as u64;
            progress(done, total);
        }
        if kind == ImageKind::Executable {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(fs::Permissions::from_mode(0o755))
                .map_err(io(&tmp))?;
        }
        out.sync_all().map_err(io(&tmp))?;
        drop(out);
        let digest = format!("sha256:{:x}", hasher.finalize());
        let blob = self.blob_path(&digest);
        fs::rename(&tmp, &blob).map_err(io(&blob))?;
        let record = ImageRecord {
            digest,
            kind,
            size: done,
        };
        self.update_refs(|refs| {
            refs.refs.insert(key.clone(), record.clone());
        })?;
        Ok(record)
    }

    /// Forget `reference` (the blob stays while another reference uses it).
    ///
    /// # Errors
    /// The store cannot be written. Returns whether it existed.
    pub fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        let key = normalize(reference)?;
        let mut removed = None;
        self.update_refs(|refs| removed = refs.refs.remove(&key))?;
        let Some(old) = removed else {
            return Ok(false);
        };
        let still_used = self
            .read_refs()?
            .refs
            .values()
            .any(|r| r.digest == old.digest);
        if !still_used {
            let _ = fs::remove_file(self.blob_path(&old.digest));
        }
        Ok(true)
    }

    fn update_refs(&self, change: impl FnOnce(&mut RefsFile)) -> Result<(), ImageError> {
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let lock_path = self.root.join("refs.lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(&lock_path)(e.into()))?;
        let mut refs = self.read_refs()?;
        change(&mut refs);
        let path = self.refs_path();
        let tmp = self.root.join("refs.json.tmp");
        let bytes =
            serde_json::to_vec_pretty(&refs).map_err(|e| io(&tmp)(std::io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised() {
        assert_eq!(normalize("hello").unwrap(), "hello:latest");
        assert_eq!(
            normalize("reg:5000/app/hello").unwrap(),
            "reg:5000/app/hello:latest"
        );
        assert_eq!(normalize("hello:1").unwrap(), "hello:1");
        assert!(normalize("he llo").is_err());
        assert!(normalize("").is_err());
    }

    #[test]
    fn import_resolve_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let src = tmp.path().join("m.wasm");
        fs::write(&src, b"\0asm\x01\0\0\0").unwrap();
        let mut calls = 0;
        let rec = store.import(&src, "hello", |_, _| calls += 1).unwrap();
        assert!(calls > 0);
        assert_eq!(rec.kind, ImageKind::WasmModule);
        let (path, found) = store.resolve("hello:latest").unwrap().unwrap();
        assert_eq!(found, rec);
        assert_eq!(fs::read(path).unwrap(), b"\0asm\x01\0\0\0");
        store.import(&src, "other:2", |_, _| {}).unwrap();
        assert!(store.remove("hello").unwrap());
        assert!(store.resolve("hello").unwrap().is_none());
        // The blob is still used by other:2.
        assert!(store.resolve("other:2").unwrap().is_some());
        assert!(!store.remove("hello").unwrap());
    }

    #[test]
    fn rejects_what_is_not_an_image() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let src = tmp.path().join("notes.txt");
        fs::write(&src, b"hello").unwrap();
        let err = store.import(&src, "x", |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("neither a WebAssembly module"), "{err}");
        assert!(store.list().unwrap().is_empty());
    }
}
