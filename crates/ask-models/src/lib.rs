//! Which model a name means: ask's own models folder and the stores of the
//! tools people already have (Ollama, Hugging Face, LM Studio, llama.cpp)
//! ([`stores`]), and the short names `--model` takes for the files
//! `scripts/fetch-models` places ([`catalog`]).
//!
//! Finding a model reads headers only (a GGUF's metadata, an encoder's
//! `config.json`); loading and running it is ask-engine's and ask-embed's
//! job. Models are recognised by architecture, never by name.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod catalog;
pub mod stores;
