//! A one-line progress bar on a terminal for long commands (`ledge image import`, `ledge
//! datastore migrate`); silent when stderr is not a terminal, so logs and CI output stay clean.

use std::io::{IsTerminal as _, Write as _};

/// A progress line: `<verb> <label> [####      ]  40% <detail>`.
pub(crate) struct Progress {
    verb: &'static str,
    label: String,
    tty: bool,
}

impl Progress {
    /// A bar for `verb`ing `label`.
    pub(crate) fn new(verb: &'static str, label: impl Into<String>) -> Self {
        Self {
            verb,
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Redraw at `done` of `total`, with `detail` after the percentage.
    pub(crate) fn show(&self, done: u64, total: u64, detail: &str) {
        if !self.tty || total == 0 {
            return;
        }
        let pct = (done.saturating_mul(100) / total).min(100);
        let filled = (pct / 5) as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{} {} [{}{}] {pct:>3}% {detail}",
            self.verb,
            self.label,
            "#".repeat(filled),
            " ".repeat(20 - filled),
        );
        let _ = err.flush();
    }

    /// End the line.
    pub(crate) fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
