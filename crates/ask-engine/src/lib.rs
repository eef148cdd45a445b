//! ask's generation engine: GGUF decoders (qwen2, llama, gemma3, phi3 …)
//! run on the CPU by candle and by ask's own quantized kernels, which pick
//! the CPU's best instruction set (AVX2, AVX-512, VNNI) at run time.
//!
//! [`Generator`] loads a GGUF file and writes tokens ([`generate`]); the
//! kernels (matrix-vector products for one token, repacked tiles for a
//! prompt) and the quant block layouts are private. This is the one crate of the
//! workspace with `unsafe` code: the SIMD kernels and the GGUF's memory
//! map. [`ModelError`] is the error of every model crate (ask-embed sits on
//! this one), and names the file involved.
//!
//! Models are loaded from files the user already has; nothing here opens a
//! network connection. Families are recognised by the GGUF's architecture,
//! never by model name.
#![deny(missing_docs)]

mod decoder;
pub mod generate;
mod matvec;
pub mod memory;
mod ops;
mod quant;

pub use generate::{Generator, SamplingParams, Stop, Timings, Turn};

pub use decoder::ARCHITECTURES;

/// Measurements of the engine's insides, for the examples in `examples/`;
/// not part of ask's API.
#[doc(hidden)]
pub mod bench {
    pub use crate::decoder::{drift, Drift};
}

/// The models a `--model` value could have named, for
/// [`ModelError::UnknownModel`].
fn known_models(searched: &std::path::Path, known: &[String]) -> String {
    if known.is_empty() {
        format!("none in {} or in the stores of Ollama, Hugging Face, LM Studio and llama.cpp", searched.display())
    } else {
        format!("the names found: {}", known.join(", "))
    }
}

/// Errors loading or running a model. Each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is missing.
    #[error("{path}: not found ({what})")]
    Missing {
        /// The missing file.
        path: std::path::PathBuf,
        /// Which part of the model it is.
        what: &'static str,
    },
    /// A model file exists but cannot be used.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No model file and no model of any store has this name.
    #[error("{spec}: no such model file, and no model of that name ({})", known_models(.searched, .known))]
    UnknownModel {
        /// The name or path given.
        spec: std::path::PathBuf,
        /// ask's own models folder, searched with the other tools' stores.
        searched: std::path::PathBuf,
        /// The names that would have been found, ask's own first.
        known: Vec<String>,
    },
    /// The model's architecture is not one ask can run.
    #[error("{path}: unsupported architecture '{arch}'; {supported}")]
    Unsupported {
        /// The file that names the architecture.
        path: std::path::PathBuf,
        /// The architecture it names.
        arch: String,
        /// What ask supports instead.
        supported: &'static str,
    },
    /// ONNX Runtime's library, which `model.onnx` encoders need, is missing
    /// or cannot be loaded (or is older than the API ask uses).
    #[error("{path}: {message}")]
    Runtime {
        /// The library, or where it was looked for.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed on some input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A prompt longer than the context ask gives the model (room for one
    /// generated token included).
    #[error("a prompt of {tokens} tokens does not fit the model's context of {context} tokens")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The context, in tokens.
        context: usize,
    },
    /// The tensor computation failed (candle's error, kept as a source
    /// rather than a public type of this crate).
    #[error("tensor computation: {0}")]
    Tensor(Box<dyn std::error::Error + Send + Sync>),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Tensor(Box::new(e))
    }
}

/// A model placed by scripts/fetch-models (`ASK_TEST_MODELS` overrides the
/// directory), for tests that run the real models.
#[doc(hidden)]
pub fn fetched_model(name: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    let models = std::env::var_os("ASK_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/share"));
        data.join("ask/models")
    });
    let path = models.join(name);
    assert!(path.exists(), "{} is missing: run scripts/fetch-models", path.display());
    path
}
