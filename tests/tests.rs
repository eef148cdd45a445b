//! Integration tests: the real `ask` binary, real models from
//! scripts/fetch-models, real files. One test binary holds them all.

mod util;

mod chat;
mod documents;
mod eval;
mod index;
mod mail;
mod mcp;
mod models;
mod offline;
mod onnx;
mod query;
mod robust;
mod search;
mod serve;
mod shell;
mod summarize;
mod watch;
