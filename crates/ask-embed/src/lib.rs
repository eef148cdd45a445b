//! Sentence encoders: text in, unit vectors out, for indexing passages and
//! embedding questions.
//!
//! A BERT-family encoder (all-MiniLM-L6-v2, bge, e5, gte, …) or an MPNet
//! one (all-mpnet-base-v2) from `model.safetensors` + `tokenizer.json` +
//! `config.json` runs on ask's own candle model; any encoder exported to
//! ONNX (`model.onnx`, int8 or f32, of any architecture) runs on ONNX
//! Runtime through fastembed ([`onnx`]); a nomic-bert GGUF file
//! (nomic-embed-text, as llama.cpp and Ollama keep it) runs on
//! candle-transformers' model of it. [`probe`] reads what an encoder
//! folder holds without loading it; [`Embedder`] loads and runs it.
//!
//! Errors are ask-engine's [`ModelError`], shared by every model crate.
//! Models are loaded from files the user already has; nothing here opens a
//! network connection. Families are recognised by architecture (the
//! encoder's `config.json`), never by model name.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bert;
mod embed;
mod encoder;
mod gguf;
pub mod onnx;

pub use ask_engine::ModelError;
pub use embed::{load_tokenizer, probe, Embedder};
pub use gguf::ARCHITECTURES as GGUF_ARCHITECTURES;
pub use encoder::{Backend, EncoderInfo, Pooling};
