//! `ask forget PATH...`: files and folders out of the index, the files
//! themselves untouched.

use std::io::Write;

use anyhow::Result;
use ask_pipeline::index::{self, IndexError};
use ask_store::{LockError, WhenBusy};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::index::waiting_notice;
use super::Run;
use crate::cli::ForgetArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

#[derive(Serialize)]
struct Report<'a> {
    index: &'a str,
    #[serde(flatten)]
    forgotten: &'a index::Forgotten,
}

impl Run for ForgetArgs {
    fn run(&self, cfg: &Config, _: &Runtime) -> Result<Exit> {
        // The usual message for an index that does not exist.
        super::index_meta(cfg)?;
        let ui = Ui::new(cfg.quiet, false);
        let mut waiting = waiting_notice(cfg);
        let busy = if self.wait { WhenBusy::Wait(&mut waiting) } else { WhenBusy::Fail };
        let forgotten = match index::forget(&cfg.index_dir, &self.paths, busy) {
            Ok(f) => f,
            Err(IndexError::Lock(e @ LockError::Busy { .. })) => return Ok(super::index::held_elsewhere(&e, &ui)),
            Err(e @ IndexError::NotIndexed(_)) => {
                anyhow::bail!("{e}; nothing was removed (`ask status` lists the recorded folders)")
            }
            Err(e) => return Err(super::index::advise(e, cfg)),
        };
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &Report { index: &cfg.index_name, forgotten: &forgotten })?;
            writeln!(out)?;
        }
        let f = &forgotten;
        let files = if f.files == 1 { "1 file".to_owned() } else { format!("{} files", f.files) };
        let chunks = if f.chunks == 1 { "1 chunk".to_owned() } else { format!("{} chunks", f.chunks) };
        ui.info(&format!("{}: {files} ({chunks}) removed from the index", cfg.index_name));
        for root in &f.roots {
            ui.info(&format!("{}: no longer recorded (`ask index` with no path leaves it alone)", root));
        }
        for path in &f.passed_over {
            ui.info(&format!("{}: passed over from now on, until `ask index {}` names it again", path, path));
        }
        Ok(Exit::Success)
    }
}
