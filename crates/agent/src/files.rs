//! The agent's credentials on disk: `<data dir>/pki/{ca.crt,node.crt,node.key}`, owner-only
//! (0600, directory 0700), each written atomically (temp file, fsync, rename, fsync of the
//! directory), the certificate last, so a crash mid-join leaves either no credentials or whole ones.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// A failure reading or writing the data dir.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done.
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// The node's TLS identity and the CA it trusts, PEM.
#[derive(Clone)]
pub struct Credentials {
    /// The cluster CA certificate.
    pub ca_pem: String,
    /// The node client certificate (`system:node:<name>`).
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// Where credentials live in a data dir.
pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// Create a directory (and parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> Result<(), FileError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| FileError {
            action: "create",
            path: path.to_path_buf(),
            source,
        })
}

/// Write a file atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let err = |action, source| FileError {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err("create", e))?;
    f.write_all(contents).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err("rename into", e))?;
    if let Some(parent) = path.parent() {
        // The rename is durable only once the directory is.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| err("sync the directory of", e))?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The stored CA, if any (kept even before the node certificate exists).
pub fn load_ca(data_dir: &Path) -> Result<Option<String>, FileError> {
    read_optional(&pki_dir(data_dir).join("ca.crt"))
}

/// The stored credentials, if the node has joined before.
pub fn load(data_dir: &Path) -> Result<Option<Credentials>, FileError> {
    let dir = pki_dir(data_dir);
    let cert = read_optional(&dir.join("node.crt"))?;
    let key = read_optional(&dir.join("node.key"))?;
    let ca = read_optional(&dir.join("ca.crt"))?;
    Ok(match (ca, cert, key) {
        (Some(ca_pem), Some(cert_pem), Some(key_pem)) => Some(Credentials {
            ca_pem,
            cert_pem,
            key_pem,
        }),
        _ => None,
    })
}

/// Store credentials: CA, key, then the certificate that marks them complete.
pub fn store(data_dir: &Path, creds: &Credentials) -> Result<(), FileError> {
    let dir = pki_dir(data_dir);
    create_private_dir(&dir)?;
    write_private(&dir.join("ca.crt"), creds.ca_pem.as_bytes())?;
    write_private(&dir.join("node.key"), creds.key_pem.as_bytes())?;
    write_private(&dir.join("node.crt"), creds.cert_pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn credentials_round_trip_privately() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(load(dir.path())?.is_none());
        let creds = Credentials {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        store(dir.path(), &creds)?;
        let back = load(dir.path())?.ok_or("not stored")?;
        assert_eq!(
            (back.ca_pem, back.cert_pem, back.key_pem),
            ("ca".into(), "cert".into(), "key".into())
        );
        for f in ["ca.crt", "node.crt", "node.key"] {
            let mode = std::fs::metadata(pki_dir(dir.path()).join(f))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(pki_dir(dir.path()))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(!pki_dir(dir.path()).join("node.crt.tmp").exists());
        Ok(())
    }
}
