//! What an encoder is, apart from running it: its pooling, what computes
//! its vectors and what an index records of it. Both ways of running one
//! ([`crate::embed`]'s candle model, [`crate::onnx`]) read these, and
//! neither needs the other for them.

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the non-padding token vectors (sentence-transformers default).
    Mean,
    /// The first ([CLS]) token's vector (bge).
    Cls,
}

/// What computes an encoder's vectors; an index records it (as `candle` or
/// `onnx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ask's own BERT/MPNet model on candle, from `model.safetensors`.
    Candle,
    /// ONNX Runtime through fastembed, from `model.onnx`.
    Onnx,
}

impl Backend {
    /// `candle` or `onnx`, as the index records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Candle => "candle",
            Backend::Onnx => "onnx",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What ask records about an encoder: enough to refuse mixing vectors from
/// different models in one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInfo {
    /// The model directory's name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// What computes the vectors: a folder with `model.safetensors` goes
    /// to candle, one with only `model.onnx` to ONNX Runtime.
    pub backend: Backend,
    /// Vector dimension.
    pub dim: usize,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_tokens: usize,
    /// Pooling method.
    pub pooling: Pooling,
    /// Text put before a query (e5's `query: `), often empty.
    pub query_prefix: String,
    /// Text put before a passage (e5's `passage: `), often empty.
    pub passage_prefix: String,
}
