//! Evaluation on judged data: retrieval on BEIR-format datasets with the
//! standard ranking metrics, and answers on question sets with gold
//! strings ([`qa`]). No model and no database: `ask eval` runs the searches
//! and the model and hands the results here to be scored.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod beir;
pub mod metrics;
pub mod qa;

pub use beir::{Dataset, Doc, EvalError, Query};
pub use metrics::{mrr_at_k, ndcg_at_k, recall_at_k, Judged, Scores};
