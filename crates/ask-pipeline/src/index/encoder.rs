//! The sentence encoder an update embeds with, loaded on first use.

use super::*;

/// The sentence encoder an index is built with: its identity, the
/// tokenizer that measures chunks, and the embedding of passages.
pub trait Encoder {
    /// Name, dimensions and token limit, recorded in the index.
    fn info(&self) -> &EncoderInfo;
    /// The tokenizer chunks are measured with.
    fn tokenizer(&self) -> Result<Tokenizer, ModelError>;
    /// Makes ready to embed (loads the weights); called once, before the
    /// first [`Encoder::embed_passages`], and only when something needs
    /// embedding.
    fn load(&mut self) -> Result<(), ModelError> {
        Ok(())
    }
    /// One unit vector per text, and the tokens read.
    fn embed_passages(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError>;
}

/// The encoder in a model directory, loaded on first use.
pub struct LazyEncoder {
    dir: PathBuf,
    info: EncoderInfo,
    model: Option<ask_embed::Embedder>,
}

impl LazyEncoder {
    /// Reads the encoder's configuration in `dir` (cheap: no weights).
    pub fn new(dir: &Path) -> Result<LazyEncoder, ModelError> {
        let info = ask_embed::probe(dir)?;
        Ok(LazyEncoder { dir: dir.to_path_buf(), info, model: None })
    }

    /// Whether the weights are in memory.
    pub fn is_loaded(&self) -> bool {
        self.model.is_some()
    }

    /// Frees the weights, if loaded; the next text to embed loads them
    /// again. Returns whether there was anything to free.
    pub fn unload(&mut self) -> bool {
        self.model.take().is_some()
    }
}

impl Encoder for LazyEncoder {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        ask_embed::load_tokenizer(&self.dir)
    }

    fn load(&mut self) -> Result<(), ModelError> {
        if self.model.is_none() {
            self.model = Some(ask_embed::Embedder::load(&self.dir)?);
        }
        Ok(())
    }

    fn embed_passages(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        self.load()?;
        self.model.as_ref().expect("loaded above").embed_passages(texts)
    }
}
