//! State a long-running caller keeps between requests (`ask mcp`, and a
//! local server): the encoder and the answer model, each loaded once and
//! kept warm while requests keep naming the same ones.

use std::path::{Path, PathBuf};

use ask_model::{Embedder, EncoderInfo, Generator, ModelError};
use ask_store::{EncoderMismatch, IndexMeta};

/// Whether an index built as `meta` says may be searched with vectors of
/// the encoder `info` describes: the one rule for every caller.
pub fn check_encoder(meta: &IndexMeta, info: &EncoderInfo) -> Result<(), EncoderMismatch> {
    meta.check_encoder(&info.name, info.backend.as_str(), info.dim)
}

/// At most one encoder and one answer model in memory, by path.
#[derive(Default)]
pub struct Warm {
    encoder: Option<(PathBuf, Embedder)>,
    generator: Option<(PathBuf, Generator)>,
}

impl Warm {
    /// The encoder in `dir`, loaded on first use and again only when
    /// another directory is asked for.
    pub fn encoder(&mut self, dir: &Path) -> Result<&Embedder, ModelError> {
        if self.encoder.as_ref().is_none_or(|(d, _)| d != dir) {
            self.encoder = None;
            self.encoder = Some((dir.to_path_buf(), Embedder::load(dir)?));
        }
        Ok(&self.encoder.as_ref().expect("loaded above").1)
    }

    /// The answer model at `path`, loaded on first use; asking for another
    /// drops the one loaded first, so two never share the memory.
    pub fn generator(&mut self, path: &Path) -> Result<&mut Generator, ModelError> {
        if self.generator.as_ref().is_none_or(|(p, _)| p != path) {
            self.generator = None;
            self.generator = Some((path.to_path_buf(), Generator::load(path)?));
        }
        Ok(&mut self.generator.as_mut().expect("loaded above").1)
    }
}
