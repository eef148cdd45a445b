//! Retrieval evaluation on BEIR-format data: reading a dataset and the
//! standard ranking metrics. No model and no database: `ask eval` runs the
//! searches and hands the ranked document ids to [`Judged::score`].
#![deny(missing_docs)]

pub mod beir;
pub mod metrics;

pub use beir::{Dataset, Doc, EvalError, Query};
pub use metrics::{mrr_at_k, ndcg_at_k, recall_at_k, Judged, Scores};
