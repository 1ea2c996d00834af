//! `ledge image import|list|rm`: the node's image store, used where the agent runs (air-gapped
//! devices get their Wasm modules and executables this way until registries are supported).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ledge_agent::image::ImageStore;

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
            let bar = Progress::new(&file);
            let rec = store
                .import(&file, &name, |done, total| bar.show(done, total))
                .with_context(|| format!("cannot import {}", file.display()))?;
            bar.finish();
            println!(
                "imported {} as {name} ({}, {}, {} bytes) into {}",
                file.display(),
                rec.digest,
                serde_kind(rec.kind),
                rec.size,
                data_dir.display()
            );
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

fn serde_kind(kind: ledge_agent::image::ImageKind) -> &'static str {
    use ledge_agent::image::ImageKind;
    match kind {
        ImageKind::WasmModule => "wasm-module",
        ImageKind::WasmComponent => "wasm-component",
        ImageKind::Executable => "executable",
    }
}

/// A one-line progress bar on a terminal; silent otherwise.
struct Progress {
    label: String,
    tty: bool,
}

impl Progress {
    fn new(file: &Path) -> Self {
        Self {
            label: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, done: u64, total: u64) {
        if !self.tty || total == 0 {
            return;
        }
        let pct = (done.saturating_mul(100) / total).min(100);
        let filled = (pct / 5) as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\rimporting {} [{}{}] {pct:>3}% {:.1}/{:.1} MB",
            self.label,
            "#".repeat(filled),
            " ".repeat(20 - filled),
            done as f64 / 1e6,
            total as f64 / 1e6
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
