//! `ledge image import|list|rm`: the node's image store, used where the agent runs (air-gapped
//! devices get their Wasm modules and executables this way until registries are supported).
//!
//! Importing a Wasm module or component also compiles it for this node into the agent's
//! compiled-code cache (`<data dir>/wasm-cache`, the engine settings of the agent's `wasm`
//! runtime), so that no pod start pays for compiling it, and a binary that does not compile is
//! refused before it is stored.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ledge_agent::image::{ImageKind, ImageStore};
use ledge_wasm::Prepared;

use crate::progress::Progress;

/// What `ledge image` was asked to do.
#[derive(Clone, Debug)]
pub enum ImageCommand {
    /// Import `file` as `name`.
    Import {
        /// The file.
        file: PathBuf,
        /// The reference pods use in `image:`.
        name: String,
    },
    /// List references.
    List,
    /// Remove a reference.
    Remove {
        /// The reference.
        name: String,
    },
}

/// Run one `ledge image` command against the agent data dir `data_dir`.
pub fn run_image(data_dir: &Path, command: ImageCommand) -> anyhow::Result<()> {
    let store = ImageStore::new(data_dir);
    match command {
        ImageCommand::Import { file, name } => {
            // An OCI image archive: its Wasm layer is what gets imported.
            let extracted = from_oci_archive(data_dir, &file, &name)?;
            let source = file.clone();
            let file = extracted.as_ref().map_or(file, |t| t.path().to_path_buf());
            // Compiled first: a Wasm binary that does not compile is not stored at all.
            let compiled = match sniff(&file) {
                Some(ImageKind::WasmModule | ImageKind::WasmComponent) => Some(
                    precompile(data_dir, &file, &name)
                        .with_context(|| format!("cannot import {}", source.display()))?,
                ),
                _ => None,
            };
            let bar = Progress::new("importing", file_label(&source));
            let rec = store
                .import(&file, &name, |done, total| {
                    let mb = |b: u64| b as f64 / 1e6;
                    bar.show(done, total, &format!("{:.1}/{:.1} MB", mb(done), mb(total)))
                })
                .with_context(|| format!("cannot import {}", source.display()))?;
            bar.finish();
            println!(
                "imported {} as {name} ({}, {}, {} bytes) into {}",
                source.display(),
                rec.digest,
                serde_kind(rec.kind),
                rec.size,
                data_dir.display()
            );
            match compiled {
                Some((Prepared::Compiled, took)) => {
                    println!("compiled for this node in {:.2} s", took.as_secs_f64())
                }
                Some((Prepared::AlreadyPrepared, _)) => println!("already compiled for this node"),
                Some((Prepared::NotNeeded, _)) | None => {}
            }
            Ok(())
        }
        ImageCommand::List => {
            let refs = store.list()?;
            println!(
                "{:<40} {:<16} {:<20} {:>12}",
                "IMAGE", "KIND", "DIGEST", "SIZE"
            );
            for (name, rec) in refs {
                let short = rec.digest.get(..19).unwrap_or(&rec.digest);
                println!(
                    "{name:<40} {:<16} {short:<20} {:>12}",
                    serde_kind(rec.kind),
                    rec.size
                );
            }
            Ok(())
        }
        ImageCommand::Remove { name } => {
            if store.remove(&name)? {
                println!("removed {name}");
                Ok(())
            } else {
                anyhow::bail!("no image {name} on this node: see `ledge image list`")
            }
        }
    }
}

/// The Wasm layer of an OCI image archive, in a temporary file under the data dir; `None` when
/// `file` is not a tar archive.
fn from_oci_archive(
    data_dir: &Path,
    file: &Path,
    name: &str,
) -> anyhow::Result<Option<tempfile::NamedTempFile>> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(file)
        .with_context(|| format!("cannot import {}", file.display()))?
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot import {}", file.display()))?;
    if !ledge_agent::image::oci::is_tar(&head) {
        return Ok(None);
    }
    let (wasm, manifest) = ledge_agent::image::oci::wasm_payload(file, name)
        .map_err(|reason| anyhow::anyhow!("cannot import {}: {reason}", file.display()))?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".oci-import-")
        .tempfile_in(data_dir)
        .with_context(|| format!("cannot write under {}", data_dir.display()))?;
    tmp.write_all(&wasm)
        .with_context(|| format!("cannot write under {}", data_dir.display()))?;
    println!(
        "{}: OCI image archive, Wasm layer of manifest {manifest} ({} bytes)",
        file.display(),
        wasm.len()
    );
    Ok(Some(tmp))
}

/// What the file is, from its first bytes; `None` when it cannot be read or is not an image
/// (the import then says why).
fn sniff(file: &Path) -> Option<ImageKind> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(file)
        .ok()?
        .take(512)
        .read_to_end(&mut head)
        .ok()?;
    ImageKind::sniff(&head).ok()
}

/// Compile the Wasm binary `file` into the agent's compiled-code cache under `data_dir`,
/// showing the time spent on a terminal (a large component takes seconds).
fn precompile(data_dir: &Path, file: &Path, name: &str) -> anyhow::Result<(Prepared, Duration)> {
    let wasm = crate::agent::wasm_runtime(data_dir)?;
    let label = file_label(file);
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut shown = false;
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = tx.send(wasm.precompile(name, file));
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(result) => return result.map_err(anyhow::Error::from),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Only a compile one notices gets a line.
                    if tty && started.elapsed() >= Duration::from_millis(300) {
                        shown = true;
                        let mut err = std::io::stderr();
                        let _ = write!(
                            err,
                            "\rcompiling {label} for this node ... {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                        let _ = err.flush();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(anyhow::anyhow!("the compiler thread of {label} ended"));
                }
            }
        }
    });
    if shown {
        eprintln!();
    }
    Ok((result?, started.elapsed()))
}

fn file_label(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn serde_kind(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::WasmModule => "wasm-module",
        ImageKind::WasmComponent => "wasm-component",
        ImageKind::Executable => "executable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled files of the agent's Wasm cache under `data_dir`.
    fn cached(data_dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for engine in std::fs::read_dir(data_dir.join("wasm-cache")).unwrap() {
            for f in std::fs::read_dir(engine.unwrap().path()).unwrap() {
                names.push(f.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        names
    }

    #[test]
    fn importing_wasm_compiles_it_into_the_agents_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("agent");
        let file = tmp.path().join("empty.wasm");
        // The smallest valid core module: the header alone.
        std::fs::write(&file, b"\0asm\x01\0\0\0").unwrap();
        let import = |name: &str| ImageCommand::Import {
            file: file.clone(),
            name: name.into(),
        };
        run_image(&data_dir, import("empty:1")).unwrap();
        let (_, record) = ImageStore::new(&data_dir)
            .resolve("empty:1")
            .unwrap()
            .unwrap();
        let hex = record.digest.strip_prefix("sha256:").unwrap();
        assert_eq!(cached(&data_dir), vec![format!("{hex}.cwasm")]);
        // Importing it again under another name compiles nothing new.
        run_image(&data_dir, import("empty:2")).unwrap();
        assert_eq!(cached(&data_dir), vec![format!("{hex}.cwasm")]);
    }

    #[test]
    fn wasm_that_does_not_compile_is_refused_and_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("agent");
        let file = tmp.path().join("broken.wasm");
        // A valid header, then a type section that claims more than there is.
        std::fs::write(&file, b"\0asm\x01\0\0\0\x01\x05\x01\x60").unwrap();
        let err = run_image(
            &data_dir,
            ImageCommand::Import {
                file,
                name: "broken:1".into(),
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("does not compile"), "{err:#}");
        assert!(ImageStore::new(&data_dir).list().unwrap().is_empty());
    }
}
