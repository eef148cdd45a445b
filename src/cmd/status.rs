//! `ask status`: what an index holds and which models built it.

use std::io::Write;

use anyhow::Result;
use ask_store::{disk_usage, Store};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::{rfc3339, Run};
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::exit::Exit;

#[derive(Serialize)]
struct Status {
    index: String,
    path: String,
    home: String,
    files: usize,
    failed: usize,
    chunks: usize,
    bytes: u64,
    encoder: String,
    backend: String,
    dim: usize,
    chunk_tokens: usize,
    chunk_overlap: usize,
    created_at: String,
    indexed_at: Option<String>,
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

impl Run for StatusArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let meta = super::index_meta(cfg)?;
        let store = rt.block_on(Store::open(&cfg.index_dir))?;
        let counts = rt.block_on(store.counts())?;
        let status = Status {
            index: cfg.index_name.clone(),
            path: cfg.index_dir.display().to_string(),
            home: cfg.home.display().to_string(),
            files: counts.files,
            failed: counts.failed,
            chunks: counts.chunks,
            bytes: disk_usage(&cfg.index_dir),
            encoder: meta.encoder.clone(),
            backend: meta.backend.clone(),
            dim: meta.dim,
            chunk_tokens: meta.chunk_tokens,
            chunk_overlap: meta.chunk_overlap,
            created_at: rfc3339(meta.created_at_s),
            indexed_at: meta.indexed_at_s.map(rfc3339),
        };
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, &status)?;
            writeln!(out)?;
        } else {
            writeln!(out, "index:        {} ({})", status.index, status.path)?;
            writeln!(out, "files:        {} indexed, {} failed", status.files, status.failed)?;
            writeln!(out, "chunks:       {}", status.chunks)?;
            writeln!(out, "size on disk: {}", human_bytes(status.bytes))?;
            writeln!(
                out,
                "encoder:      {} ({}, {} dims, chunks of {} tokens, {} overlap)",
                status.encoder, status.backend, status.dim, status.chunk_tokens, status.chunk_overlap
            )?;
            writeln!(out, "created:      {}", status.created_at)?;
            writeln!(out, "last indexed: {}", status.indexed_at.as_deref().unwrap_or("never"))?;
        }
        Ok(Exit::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
