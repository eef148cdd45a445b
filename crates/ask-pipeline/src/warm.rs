//! State a long-running caller keeps between requests (`ask mcp`, `ask
//! serve`): the encoder and the answer model, each loaded once and kept
//! warm while requests keep naming the same ones.

use std::path::{Path, PathBuf};

use ask_embed::{Embedder, EncoderInfo};
use ask_engine::{Generator, ModelError};
use ask_store::{EncoderMismatch, IndexMeta};

/// Whether an index built as `meta` says may be searched with vectors of
/// the encoder `info` describes: the one rule for every caller.
pub fn check_encoder(meta: &IndexMeta, info: &EncoderInfo) -> Result<(), EncoderMismatch> {
    meta.check_encoder(&info.name, info.backend, info.dim)
}

/// One model kept in memory, with the path it was loaded from.
pub struct Kept<T> {
    held: Option<(PathBuf, T)>,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept { held: None }
    }
}

impl<T> Kept<T> {
    /// The model at `path`, loaded by `load` on first use and again only
    /// when another path is asked for; the one loaded before is dropped
    /// first, so two never share the memory.
    pub fn get(&mut self, path: &Path, load: impl FnOnce(&Path) -> Result<T, ModelError>) -> Result<&mut T, ModelError> {
        if self.held.as_ref().is_none_or(|(p, _)| p != path) {
            self.held = None;
            self.held = Some((path.to_path_buf(), load(path)?));
        }
        Ok(&mut self.held.as_mut().expect("loaded above").1)
    }
}

/// At most one encoder and one answer model in memory, by path.
#[derive(Default)]
pub struct Warm {
    encoder: Kept<Embedder>,
    generator: Kept<Generator>,
}

impl Warm {
    /// The encoder in `dir`, loaded on first use and again only when
    /// another directory is asked for.
    pub fn encoder(&mut self, dir: &Path) -> Result<&Embedder, ModelError> {
        self.encoder.get(dir, Embedder::load).map(|e| &*e)
    }

    /// The answer model at `path`, loaded on first use; asking for another
    /// drops the one loaded first.
    pub fn generator(&mut self, path: &Path) -> Result<&mut Generator, ModelError> {
        self.generator.get(path, Generator::load)
    }
}
