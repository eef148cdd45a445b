//! ask's work as a library, for every caller: the `ask` binary's commands,
//! among them the long-running `ask watch`, `ask serve` and `ask mcp`.
//!
//! [`answer`] finds the passages for a question and streams an answer from
//! a prompt [`prompt`] builds; [`conversation`] keeps the earlier turns a
//! follow-up is read with. [`warm`] keeps the models of a long-running caller loaded; [`json`]
//! holds the shapes of what ask prints as JSON, [`openai`] those of the
//! OpenAI API that `ask serve` speaks.
//!
//! [`index`] keeps an index up to date with a set of folders (walk, read,
//! chunk, embed, commit, incrementally and crash-safely). The binary adds
//! arguments, progress bars and advice; nothing here prints or reads flags.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod answer;
pub mod conversation;
pub mod index;
pub mod json;
pub mod openai;
pub mod prompt;
pub mod summarize;
pub mod warm;

pub use index::{Encoder, Event, IndexError, Options, Progress, Summary, Writer};
