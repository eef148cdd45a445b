//! The chunks table's secondary indexes: a full-text (BM25) index on
//! `text`, always, an approximate-nearest-neighbour index on `vector`
//! once the table is large enough that a flat scan gets slow, and B-tree
//! indexes on `path` and `doc_hash`, always, for what an incremental run
//! looks up by them (a changed file's chunks to delete, a mailbox's stored
//! messages, the chunks of documents seen before): without them each
//! lookup scans the whole table, and a run's cost grew with the index
//! rather than with what changed.
//!
//! All are kept current by [`Store::ensure_indexes`], which `ask index`
//! calls after every run: it creates a missing index, folds new rows into
//! existing ones (LanceDB's optimize), and retrains the vector index when
//! the table has doubled since it was trained, so its partitions keep
//! fitting the data. Rows not yet in an index are still searched (by a flat
//! scan of just those rows), so a search never misses fresh chunks.

use std::sync::atomic::Ordering;

use lancedb::index::scalar::{BTreeIndexBuilder, FtsIndexBuilder};
use lancedb::index::vector::IvfPqIndexBuilder;
use lancedb::index::{Index, IndexType};
use lancedb::table::{OptimizeAction, OptimizeOptions};
use lancedb::DistanceType;

use crate::search::ANN_THRESHOLD;
use crate::{Result, Store};

/// Name of the full-text index.
const TEXT_INDEX: &str = "text_idx";
/// Columns that incremental runs look rows up by, and their B-tree
/// indexes' names.
const KEY_INDEXES: [(&str, &str); 2] = [("path", "path_idx"), ("doc_hash", "doc_hash_idx")];
/// Vector indexes are named `vector_ivfpq_<rows trained on>`.
const VECTOR_INDEX_PREFIX: &str = "vector_ivfpq_";

/// What [`Store::ensure_indexes`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexWork {
    /// The full-text index was created.
    pub text_created: bool,
    /// B-tree indexes created on lookup columns.
    pub keys_created: usize,
    /// The vector index was (re)trained, on this many rows.
    pub vector_trained: Option<usize>,
}

/// Text analysis for the full-text index, the same for documents and
/// queries: ICU word segmentation (so Chinese, Japanese and Thai text,
/// which has no spaces, splits into words), then split again at
/// punctuation, lower-cased, English stop words dropped, English Snowball
/// stemming, accents folded to ASCII. Words of other Latin-script languages
/// pass through stemming mostly unchanged and still match exactly.
pub(crate) fn text_analysis() -> FtsIndexBuilder {
    FtsIndexBuilder::default()
        .base_tokenizer("icu/split".into())
        .stem(true)
        .remove_stop_words(true)
        .lower_case(true)
        .ascii_folding(true)
        .with_position(false)
}

impl Store {
    /// Re-reads which indexes the chunks table has.
    pub(crate) async fn refresh_index_flags(&self) -> Result<()> {
        let indices = self.chunks.list_indices().await.map_err(|e| self.lance(e))?;
        let text = indices.iter().any(|i| i.index_type == IndexType::FTS);
        let vector = indices.iter().any(|i| i.columns.iter().any(|c| c == "vector"));
        self.text_index.store(text, Ordering::Relaxed);
        self.vector_index.store(vector, Ordering::Relaxed);
        Ok(())
    }

    /// Whether BM25 search is available.
    pub fn has_text_index(&self) -> bool {
        self.text_index.load(Ordering::Relaxed)
    }

    /// Whether dense search goes through an ANN index (else it is exact).
    pub fn has_vector_index(&self) -> bool {
        self.vector_index.load(Ordering::Relaxed)
    }

    /// Creates missing indexes, retrains a stale vector index and folds
    /// unindexed rows into the rest. Callers hold the index lock.
    pub async fn ensure_indexes(&self) -> Result<IndexWork> {
        self.ensure_indexes_with(ANN_THRESHOLD).await
    }

    /// [`Store::ensure_indexes`] with another row threshold for the vector
    /// index (benchmarks and tests).
    pub async fn ensure_indexes_with(&self, ann_threshold: usize) -> Result<IndexWork> {
        let mut work = IndexWork::default();
        let rows = self.chunks.count_rows(None).await.map_err(|e| self.lance(e))?;
        let indices = self.chunks.list_indices().await.map_err(|e| self.lance(e))?;
        if rows > 0 && !indices.iter().any(|i| i.index_type == IndexType::FTS) {
            self.chunks
                .create_index(&["text"], Index::FTS(text_analysis()))
                .name(TEXT_INDEX.into())
                .execute()
                .await
                .map_err(|e| self.lance(e))?;
            work.text_created = true;
        }
        for (column, name) in KEY_INDEXES {
            // An index made before ask stored document hashes has no such column.
            let present = self.doc_columns || !crate::arrow::DOC_COLUMNS.contains(&column);
            let indexed = indices.iter().any(|i| i.index_type == IndexType::BTree && i.columns.iter().any(|c| c == column));
            if rows > 0 && present && !indexed {
                self.chunks
                    .create_index(&[column], Index::BTree(BTreeIndexBuilder::default()))
                    .name(name.into())
                    .execute()
                    .await
                    .map_err(|e| self.lance(e))?;
                work.keys_created += 1;
            }
        }
        let trained: Option<(String, usize)> = indices.iter().find_map(|i| {
            let rows = i.name.strip_prefix(VECTOR_INDEX_PREFIX)?.parse().ok()?;
            Some((i.name.clone(), rows))
        });
        let retrain = match &trained {
            None => rows >= ann_threshold,
            Some((_, trained_on)) => rows >= 2 * trained_on.max(&1),
        };
        if retrain {
            self.train_vector_index(rows, trained.as_ref().map(|(name, _)| name.as_str())).await?;
            work.vector_trained = Some(rows);
        }
        // Fold rows added since the indexes were built into them.
        self.chunks
            .optimize(OptimizeAction::Index(OptimizeOptions::default()))
            .await
            .map_err(|e| self.lance(e))?;
        self.refresh_index_flags().await?;
        Ok(work)
    }

    /// IVF-PQ on cosine distance. Partitions: about √rows (so a probe reads
    /// a few hundred vectors); PQ with 8 dimensions per sub-vector. Search
    /// probes [`crate::search::ANN_NPROBES`] partitions and re-ranks
    /// [`crate::search::ANN_REFINE_FACTOR`]×k candidates on full vectors,
    /// which is what keeps recall@10 at 0.95 or more (benches/ann-recall).
    async fn train_vector_index(&self, rows: usize, old: Option<&str>) -> Result<()> {
        let partitions = ((rows as f64).sqrt() as u32).clamp(16, 4096);
        let sub_vectors = if self.dim % 8 == 0 { self.dim / 8 } else { 1 } as u32;
        let builder = IvfPqIndexBuilder::default()
            .distance_type(DistanceType::Cosine)
            .num_partitions(partitions)
            .num_sub_vectors(sub_vectors);
        if let Some(old) = old {
            self.chunks.drop_index(old).await.map_err(|e| self.lance(e))?;
        }
        self.chunks
            .create_index(&["vector"], Index::IvfPq(builder))
            .name(format!("{VECTOR_INDEX_PREFIX}{rows}"))
            .execute()
            .await
            .map_err(|e| self.lance(e))
    }
}
