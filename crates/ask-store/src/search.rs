//! Retrieval: dense (vector), BM25 (LanceDB's native full-text index) and
//! hybrid, which fuses the two ranked lists by reciprocal rank fusion.
//! Filters are SQL predicates that LanceDB applies *before* ranking
//! (prefiltering), so `-k 10` with a filter returns 10 hits when 10 match.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use lancedb::index::scalar::FullTextSearchQuery;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::DistanceType;

use crate::arrow::{self, Ranked};
use crate::{Hit, Result, Store, StoreError};

/// Which ranking to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Nearest vectors by cosine similarity.
    Dense,
    /// BM25 over the full-text index.
    Bm25,
    /// Both, fused by reciprocal rank fusion.
    #[default]
    Hybrid,
}

impl Mode {
    /// Every mode, hybrid (the default) first.
    pub const ALL: [Mode; 3] = [Mode::Hybrid, Mode::Dense, Mode::Bm25];

    /// The mode a name ([`Mode::as_str`]) stands for.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dense => "dense",
            Mode::Bm25 => "bm25",
            Mode::Hybrid => "hybrid",
        }
    }

    /// Whether this mode needs the query's embedding.
    pub fn needs_vector(self) -> bool {
        self != Mode::Bm25
    }
}

/// Reciprocal rank fusion: a passage at 1-based rank `r` in a list scores
/// `weight / (RRF_K + r)` from that list, summed over the lists it is in.
///
/// Chosen on msmarco-5k, and on nothing else, from a small grid
/// (K in {20, 60}, dense weight in {1, 2}, feedback passages in {0, 3, 5}):
/// nDCG@10 moved by less than 0.03 over the whole grid, so these are
/// round values near the top rather than the top itself. The dense list
/// weighs twice the BM25 list because the default encoder is the stronger
/// ranker alone; see docs/design.md's retrieval table for every mode's figures.
pub const RRF_K: f32 = 20.0;
/// Weight of the dense list in hybrid fusion.
pub const RRF_DENSE_WEIGHT: f32 = 2.0;
/// The share of a query's letters the encoder must read as words
/// (`Query::reading`) for hybrid search to use its vectors: the English
/// MiniLM reads 0.93-1 of every msmarco and business-reports query and
/// 0-0.31 of arcd's Arabic ones, whose vectors mean little (arcd: dense
/// nDCG@10 0.06 against BM25's 0.71).
pub const READS: f32 = 0.5;
/// Weight of the BM25 list in hybrid fusion.
pub const RRF_BM25_WEIGHT: f32 = 1.0;
/// Candidates taken from each list before fusion: at least this many, and
/// never fewer than the number of results asked for.
pub const FUSION_DEPTH: usize = 50;
/// Most rows fetched to see past a run of equal scores at the cut.
const TIE_FETCH_MAX: usize = 4096;
/// Hybrid search feeds back the vectors of this many first fused results
/// (Rocchio pseudo-relevance feedback): the query vector becomes
/// `q + PRF_BETA * mean(top vectors)`, renormalised, re-ranks the dense and
/// BM25 candidates, and that ranking replaces the dense list in the final
/// fusion. Passages that BM25 ranks
/// high because they share the query's exact words thereby also pull the
/// dense search towards their neighbourhood.
pub const PRF_PASSAGES: usize = 3;
/// Weight of the feedback vectors against the query's own.
pub const PRF_BETA: f32 = 1.0;

/// Restricts a search to some chunks. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// A glob over the full path: `*` and `**` match any run of characters
    /// (including `/`), `?` one character.
    pub path_glob: Option<String>,
    /// Document kinds; any of them.
    pub kinds: Vec<crate::Kind>,
    /// Only chunks whose date (file mtime, or a message's date) is at or after this (ns).
    pub since_ns: Option<i64>,
    /// Only chunks whose date is before this (ns).
    pub until_ns: Option<i64>,
    /// Only mail whose sender contains this text (case-insensitive).
    pub from: Option<String>,
}

impl Filter {
    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.path_glob.is_none()
            && self.kinds.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
            && self.from.is_none()
    }

    /// Whether a document dated `date_ns` and sent by `sender` passes the
    /// date and sender parts of this filter, as [`Filter::to_sql`] decides
    /// them inside a search (since inclusive, until exclusive, the sender
    /// containing the text whatever its case); for documents that are not
    /// in an index, such as the messages of a mailbox being summarized.
    pub fn admits(&self, date_ns: Option<i64>, sender: Option<&str>) -> bool {
        let after = self.since_ns.is_none_or(|t| date_ns.is_some_and(|d| d >= t));
        let before = self.until_ns.is_none_or(|t| date_ns.is_some_and(|d| d < t));
        let from = self.from.as_ref().is_none_or(|f| sender.is_some_and(|s| s.to_lowercase().contains(&f.to_lowercase())));
        after && before && from
    }

    /// The filter as a LanceDB SQL predicate, or `None` for no filter.
    pub fn to_sql(&self) -> Result<Option<String>, StoreError> {
        let mut parts = Vec::new();
        if let Some(glob) = &self.path_glob {
            parts.push(format!("path LIKE {} ESCAPE '\\'", quote(&glob_to_like(glob)?)));
        }
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
            parts.push(crate::in_list("kind", &kinds));
        }
        if let Some(t) = self.since_ns {
            parts.push(format!("mtime_ns >= {t}"));
        }
        if let Some(t) = self.until_ns {
            parts.push(format!("mtime_ns < {t}"));
        }
        if let Some(from) = &self.from {
            let pattern = format!("%{}%", escape_like(&from.to_lowercase()));
            parts.push(format!("lower(sender) LIKE {} ESCAPE '\\'", quote(&pattern)));
        }
        Ok((!parts.is_empty()).then(|| parts.join(" AND ")))
    }
}

/// SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Text matched literally inside a LIKE pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Translates a glob into a LIKE pattern with `\` as the escape character.
fn glob_to_like(glob: &str) -> Result<String, StoreError> {
    let mut out = String::with_capacity(glob.len() + 4);
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('%');
            }
            '?' => out.push('_'),
            '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                // A backslash quotes the next character, as in shells.
                match chars.next() {
                    Some(n @ ('%' | '_' | '\\')) => {
                        out.push('\\');
                        out.push(n);
                    }
                    Some(n) => out.push(n),
                    None => out.push_str("\\\\"),
                }
            }
            '[' | '{' => {
                return Err(StoreError::Glob { glob: glob.into(), found: c })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// What a search ranks by, with what that ranking needs: a ranking by
/// meaning cannot be asked for without the query's vector.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    /// BM25 over the words; with the query's vector, each hit also gets
    /// its similarity (so one relevance threshold works in every mode).
    Words {
        /// The query's text.
        text: &'a str,
        /// The query's embedding, if computed.
        vector: Option<&'a [f32]>,
    },
    /// The nearest vectors.
    Meaning {
        /// The query's embedding.
        vector: &'a [f32],
    },
    /// Both, fused.
    Hybrid {
        /// The query's text.
        text: &'a str,
        /// The query's embedding.
        vector: &'a [f32],
        /// How much of the text the encoder reads as words (0 to 1; see
        /// [`Query::reading`]).
        reading: f32,
    },
}

impl<'a> Query<'a> {
    /// The query that ranks as `mode` does, or None when `mode` ranks by
    /// meaning and no `vector` is given ([`Mode::needs_vector`]).
    pub fn of(mode: Mode, text: &'a str, vector: Option<&'a [f32]>) -> Option<Query<'a>> {
        Some(match mode {
            Mode::Bm25 => Query::Words { text, vector },
            Mode::Dense => Query::Meaning { vector: vector? },
            Mode::Hybrid => Query::Hybrid { text, vector: vector?, reading: 1.0 },
        })
    }

    /// The query, told how much of its text the encoder reads as words
    /// (`ask_embed::Embedder::reading`, 0 to 1): a hybrid query whose
    /// encoder reads less than half of it ([`READS`]), because it spells
    /// out letter by letter a script its vocabulary lacks, is ranked by its
    /// exact words alone. Other modes are left as they are.
    pub fn reading(self, share: f32) -> Query<'a> {
        match self {
            Query::Hybrid { text, vector, .. } => Query::Hybrid { text, vector, reading: share.clamp(0.0, 1.0) },
            other => other,
        }
    }

    /// Its ranking.
    pub fn mode(&self) -> Mode {
        match self {
            Query::Words { .. } => Mode::Bm25,
            Query::Meaning { .. } => Mode::Dense,
            Query::Hybrid { .. } => Mode::Hybrid,
        }
    }

    /// The query's embedding, where it has one.
    pub fn vector(&self) -> Option<&'a [f32]> {
        match *self {
            Query::Words { vector, .. } => vector,
            Query::Meaning { vector } | Query::Hybrid { vector, .. } => Some(vector),
        }
    }
}

/// One search.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What to rank by.
    pub query: Query<'a>,
    /// How many hits to return.
    pub k: usize,
    /// Which chunks may be returned.
    pub filter: &'a Filter,
}

/// What a ranked list reads of each row besides its identity and score.
#[derive(Debug, Clone, Copy)]
struct Read {
    vectors: bool,
    passages: bool,
}

impl Read {
    /// A list whose rows are the answer: their passages, and their vectors
    /// only to compute similarity to a query vector.
    fn answer(vectors: bool) -> Read {
        Read { vectors, passages: true }
    }

    /// A list to fuse: vectors for the feedback, passages later.
    const CANDIDATES: Read = Read { vectors: true, passages: false };
}

impl Ranked {
    fn key(&self) -> (&str, u32) {
        (&self.path, self.chunk)
    }
}

impl Store {
    /// The `k` best chunks for a query, best first.
    ///
    /// Every hit carries `similarity`, the cosine similarity of its vector to
    /// the query's, whenever a query vector was given (hits that only BM25
    /// found get it computed from their stored vector), so callers can apply
    /// one relevance threshold in every mode.
    pub async fn search(&self, req: &Request<'_>) -> Result<Vec<Hit>> {
        if req.filter.from.is_some() && !self.doc_columns {
            return Err(StoreError::NoMailHeaders(self.dir.clone()));
        }
        let predicate = req.filter.to_sql()?;
        let predicate = predicate.as_deref();
        if let Some(v) = req.query.vector() {
            if v.len() != self.dim {
                return Err(StoreError::Dimension { dir: self.dir.clone(), have: self.dim, want: v.len() });
            }
        }
        if req.query.mode() == Mode::Bm25 && !self.has_text_index() {
            return Err(StoreError::NoTextIndex(self.dir.clone()));
        }
        let ranked = match req.query {
            Query::Meaning { vector } => top(req.k, |n| self.dense(vector, n, predicate, Read::answer(false))).await?,
            Query::Words { text, vector } => top(req.k, |n| self.bm25(text, n, predicate, vector, Read::answer(vector.is_some()))).await?,
            Query::Hybrid { text, vector, reading } => {
                let depth = req.k.max(FUSION_DEPTH);
                let (dense, bm25) = futures::try_join!(
                    top(depth, |n| self.dense(vector, n, predicate, Read::CANDIDATES)),
                    top(depth, |n| self.bm25(text, n, predicate, Some(vector), Read::CANDIDATES))
                )?;
                let dense_weight = if reading >= READS { RRF_DENSE_WEIGHT } else { 0.0 };
                let weights = [dense_weight, RRF_BM25_WEIGHT];
                // Pseudo-relevance feedback: move the query vector towards
                // the vectors of the first fused results...
                let first = fuse(&[(&dense, weights[0]), (&bm25, weights[1])], RRF_K, PRF_PASSAGES);
                let feedback: Vec<&[f32]> = first.iter().map(|c| c.vector.as_slice()).collect();
                let moved = rocchio(vector, &feedback, PRF_BETA);
                // ...and re-rank every candidate of either list by it. The
                // vectors came with the candidates, so there is no second
                // scan; on msmarco-5k this scores as a second full dense
                // search does (nDCG@10 0.713 against 0.712). Each hit keeps
                // its similarity to the user's own query.
                let mut seen = std::collections::HashSet::new();
                let mut moved_list: Vec<Ranked> = dense
                    .iter()
                    .chain(bm25.iter())
                    .filter(|c| seen.insert(c.key()))
                    .map(|c| Ranked { score: cosine(&moved, &c.vector), ..c.clone() })
                    .collect();
                moved_list.sort_by(best_first);
                moved_list.truncate(depth);
                fuse(&[(&moved_list, weights[0]), (&bm25, weights[1])], RRF_K, req.k)
            }
        };
        self.hits(ranked).await
    }

    /// The ranked candidates as hits, in their order, reading the passages
    /// the lists left out in one read by row id.
    async fn hits(&self, ranked: Vec<Ranked>) -> Result<Vec<Hit>> {
        let missing: Vec<u64> = ranked.iter().filter(|c| c.passage.is_none()).map(|c| c.row).collect();
        let mut passages: HashMap<u64, crate::Passage> = HashMap::with_capacity(missing.len());
        if !missing.is_empty() {
            let batches: Vec<RecordBatch> = self
                .chunks
                .take_row_ids(missing)
                .select(Select::columns(&self.passage_columns()))
                .with_row_id()
                .execute()
                .await
                .map_err(|e| self.lance(e))?
                .try_collect()
                .await
                .map_err(|e| self.lance(e))?;
            for batch in &batches {
                passages.extend(arrow::read_passages(batch).map_err(|m| self.data(m))?);
            }
        }
        ranked
            .into_iter()
            .map(|c| match c.passage.or_else(|| passages.remove(&c.row)) {
                // A row id names a row of the version searched; the check
                // guards against ever printing another row's text.
                Some(passage) if passage.path.as_str() == c.path && passage.chunk == c.chunk => {
                    Ok(Hit { passage, score: c.score, similarity: c.similarity })
                }
                _ => Err(self.data(format!("row {} ({} chunk {}) changed during the search", c.row, c.path, c.chunk))),
            })
            .collect()
    }

    /// The columns of a whole passage: the hit's, and its message headers
    /// when the table has them.
    pub(crate) fn passage_columns(&self) -> Vec<&'static str> {
        let mut columns: Vec<&str> = arrow::HIT_COLUMNS.to_vec();
        if self.doc_columns {
            columns.extend(arrow::DOC_COLUMNS);
        }
        columns
    }

    /// The columns a ranked list reads.
    fn list_columns(&self, read: Read) -> Vec<&'static str> {
        let mut columns: Vec<&str> = if read.passages { self.passage_columns() } else { arrow::CANDIDATE_COLUMNS.to_vec() };
        if read.vectors {
            columns.push("vector");
        }
        columns
    }

    /// Nearest rows, best first.
    async fn dense(&self, vector: &[f32], k: usize, predicate: Option<&str>, read: Read) -> Result<Vec<Ranked>> {
        let columns = self.list_columns(read);
        let mut query = self
            .chunks
            .query()
            .nearest_to(vector)
            .map_err(|e| self.lance(e))?
            .distance_type(DistanceType::Cosine)
            .select(Select::columns(&columns))
            .with_row_id()
            .limit(k);
        if self.has_vector_index() {
            // IVF-PQ candidates are re-ranked on the stored full vectors.
            // At least ANN_NPROBES partitions; more when a narrow filter
            // leaves fewer than k rows in them, so a filter never costs hits.
            query = query.minimum_nprobes(ANN_NPROBES).map_err(|e| self.lance(e))?.refine_factor(ANN_REFINE_FACTOR);
        }
        if let Some(p) = predicate {
            query = query.only_if(p);
        }
        self.collect(query.execute().await, arrow::Score::Distance, read, None).await
    }

    /// BM25's best rows, best first; with `vector` (which needs
    /// `read.vectors`), each with its similarity to `vector`.
    async fn bm25(
        &self,
        text: &str,
        k: usize,
        predicate: Option<&str>,
        vector: Option<&[f32]>,
        read: Read,
    ) -> Result<Vec<Ranked>> {
        if text.trim().is_empty() || !self.has_text_index() {
            return Ok(Vec::new());
        }
        let columns = self.list_columns(read);
        let fts = FullTextSearchQuery::new(text.to_owned())
            .with_column("text".into())
            .map_err(|e| self.lance(e.into()))?;
        let mut query =
            self.chunks.query().full_text_search(fts).select(Select::columns(&columns)).with_row_id().limit(k);
        if let Some(p) = predicate {
            query = query.only_if(p);
        }
        self.collect(query.execute().await, arrow::Score::Bm25, read, vector).await
    }

    async fn collect(
        &self,
        stream: lancedb::Result<lancedb::arrow::SendableRecordBatchStream>,
        score: arrow::Score,
        read: Read,
        similar_to: Option<&[f32]>,
    ) -> Result<Vec<Ranked>> {
        let batches: Vec<RecordBatch> =
            stream.map_err(|e| self.lance(e))?.try_collect().await.map_err(|e| self.lance(e))?;
        let mut out = Vec::new();
        for batch in &batches {
            let dim = read.vectors.then_some(self.dim);
            for mut c in arrow::read_candidates(batch, score, dim, read.passages).map_err(|m| self.data(m))? {
                if let Some(q) = similar_to {
                    c.similarity = Some(cosine(q, &c.vector));
                }
                out.push(c);
            }
        }
        out.sort_by(best_first);
        Ok(out)
    }
}

/// The best `k` of a ranking `fetch(n)` returns (best first, `n` rows at
/// most), the same whatever order LanceDB found the rows in: rows that tie
/// at the cut are all fetched, then ordered by [`best_first`], so which of
/// them make the cut never depends on a table's row order (an index
/// rebuilt after a kill must answer as one built in one go).
async fn top<F, Fut>(k: usize, fetch: F) -> Result<Vec<Ranked>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Ranked>>>,
{
    let mut n = k + 1;
    loop {
        let mut ranked = fetch(n).await?;
        let ties_beyond = ranked.len() == n && k > 0 && ranked[n - 1].score == ranked[k - 1].score;
        if !ties_beyond || n >= TIE_FETCH_MAX {
            ranked.truncate(k);
            return Ok(ranked);
        }
        n = (n * 4).min(TIE_FETCH_MAX);
    }
}

/// Higher score first; equal scores by path, then chunk. LanceDB returns
/// equal-scoring rows (a file and its copy elsewhere) in whatever order
/// its parallel scan finished, which made hybrid ranks, fused scores and
/// so `ask search --json` differ from run to run on the same index.
fn best_first(a: &Ranked, b: &Ranked) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.path.cmp(&b.path)).then(a.chunk.cmp(&b.chunk))
}

/// `query + beta * mean(feedback)`, scaled to unit length.
fn rocchio(query: &[f32], feedback: &[&[f32]], beta: f32) -> Vec<f32> {
    let mut q = query.to_vec();
    for v in feedback {
        for (a, b) in q.iter_mut().zip(*v) {
            *a += beta * b / feedback.len() as f32;
        }
    }
    let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        q.iter_mut().for_each(|x| *x /= norm);
    }
    q
}

/// Cosine similarity (the encoder's vectors are unit length, but stored
/// vectors from another encoder might not be).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Reciprocal rank fusion of ranked lists (each best first) with weights.
/// The fused score replaces each candidate's score; a candidate keeps the
/// first similarity any list gave it. Ties keep the order of first appearance.
fn fuse(lists: &[(&[Ranked], f32)], rrf_k: f32, k: usize) -> Vec<Ranked> {
    let mut fused: Vec<Ranked> = Vec::new();
    let mut at: HashMap<(String, u32), usize> = HashMap::new();
    for (list, weight) in lists {
        for (rank, c) in list.iter().enumerate() {
            let add = weight / (rrf_k + rank as f32 + 1.0);
            match at.get(&(c.path.clone(), c.chunk)) {
                Some(&i) => {
                    fused[i].score += add;
                    if fused[i].similarity.is_none() {
                        fused[i].similarity = c.similarity;
                    }
                }
                None => {
                    at.insert((c.path.clone(), c.chunk), fused.len());
                    fused.push(Ranked { score: add, ..c.clone() });
                }
            }
        }
    }
    // Stable: equal scores keep first-appearance order.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(k);
    fused
}

/// Rows below which dense search is exact (a flat scan); at and above it
/// [`Store::ensure_indexes`] trains an IVF-PQ index. A flat scan grows with
/// the table (`search-bench`); below this it is fast enough that an index
/// is not worth its training.
pub const ANN_THRESHOLD: usize = 20_000;
/// IVF partitions probed per query, at least.
pub const ANN_NPROBES: usize = 20;
/// Candidates re-ranked on full vectors, as a multiple of the results asked for.
pub const ANN_REFINE_FACTOR: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_found_by_their_names() {
        assert_eq!(Mode::from_name("bm25"), Some(Mode::Bm25));
        assert_eq!(Mode::from_name("dense"), Some(Mode::Dense));
        assert_eq!(Mode::from_name("hybrid"), Some(Mode::Hybrid));
        assert_eq!(Mode::from_name("BM25"), None);
        assert_eq!(Mode::from_name(""), None);
    }

    fn hit(path: &str, chunk: u32, similarity: Option<f32>) -> Ranked {
        Ranked { row: 0, path: path.into(), chunk, score: 0.0, similarity, vector: Vec::new(), passage: None }
    }

    #[test]
    fn fusion_rewards_agreement() {
        // Dense: a, b, c. BM25: c, d. c is in both lists, so its two
        // contributions (1/63 + 1/61) beat a's single first place (1/61);
        // b and d tie at 1/62 and keep their order of appearance.
        let dense = vec![hit("a", 0, Some(0.9)), hit("b", 0, Some(0.8)), hit("c", 0, Some(0.7))];
        let bm25 = vec![hit("c", 0, None), hit("d", 0, Some(0.1))];
        let fused = fuse(&[(&dense, 1.0), (&bm25, 1.0)], 60.0, 10);
        let order: Vec<&str> = fused.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(order, ["c", "a", "b", "d"]);
        assert!((fused[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
        // c keeps the similarity the dense list computed.
        assert_eq!(fused[0].similarity, Some(0.7));
        assert_eq!(fuse(&[(&[hit("a", 0, None), hit("a", 1, None)], 1.0)], 60.0, 1).len(), 1);
    }

    #[test]
    fn equal_scores_rank_by_path_then_chunk() {
        let mut hits = [hit("b", 0, None), hit("a", 1, None), hit("c", 0, None), hit("a", 0, None)];
        hits[2].score = 2.0;
        hits.sort_by(best_first);
        let order: Vec<(&str, u32)> = hits.iter().map(|h| (h.path.as_str(), h.chunk)).collect();
        assert_eq!(order, [("c", 0), ("a", 0), ("a", 1), ("b", 0)]);
    }

    #[test]
    fn weights_scale_a_list() {
        let dense = vec![hit("a", 0, None)];
        let bm25 = vec![hit("b", 0, None)];
        let fused = fuse(&[(&dense, 1.0), (&bm25, 2.0)], 60.0, 2);
        assert_eq!(fused[0].path, "b");
        assert!((fused[0].score - 2.0 / 61.0).abs() < 1e-6);
    }

    #[test]
    fn feedback_moves_the_query_towards_the_passages() {
        let q = rocchio(&[1.0, 0.0], &[&[0.0, 1.0], &[0.0, 1.0]], 1.0);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((q[0] - h).abs() < 1e-6 && (q[1] - h).abs() < 1e-6, "{q:?}");
        assert_eq!(rocchio(&[0.6, 0.8], &[], 1.0), vec![0.6, 0.8]);
    }

    #[test]
    fn globs_become_like_patterns() {
        assert_eq!(glob_to_like("/home/me/notes/**").unwrap(), "/home/me/notes/%");
        assert_eq!(glob_to_like("%/*.md").unwrap(), "\\%/%.md");
        assert_eq!(glob_to_like("my_file?.txt").unwrap(), "my\\_file_.txt");
        assert_eq!(glob_to_like("a\\*b").unwrap(), "a*b");
        assert!(glob_to_like("*.[ch]").is_err());
    }

    #[test]
    fn admits_decides_dates_and_senders_as_the_predicate_does() {
        let f = Filter { since_ns: Some(5), until_ns: Some(9), from: Some("ZOË".into()), ..Default::default() };
        assert!(f.admits(Some(5), Some("Zoë Müller <zoe@example.org>")));
        assert!(!f.admits(Some(9), Some("Zoë")), "until is exclusive");
        assert!(!f.admits(Some(4), Some("Zoë")));
        assert!(!f.admits(None, Some("Zoë")), "an undated document is outside any date range");
        assert!(!f.admits(Some(6), Some("Bob")));
        assert!(!f.admits(Some(6), None));
        assert!(Filter::default().admits(None, None));
    }

    #[test]
    fn filters_become_one_predicate() {
        assert_eq!(Filter::default().to_sql().unwrap(), None);
        let f = Filter {
            path_glob: Some("%/it's/*".into()),
            kinds: vec![crate::Kind::Pdf, crate::Kind::Markdown],
            since_ns: Some(5),
            until_ns: Some(9),
            from: Some("O'Brien_%".into()),
        };
        assert_eq!(
            f.to_sql().unwrap().unwrap(),
            "path LIKE '\\%/it''s/%' ESCAPE '\\' AND kind IN ('pdf', 'md') AND mtime_ns >= 5 AND mtime_ns < 9 \
             AND lower(sender) LIKE '%o''brien\\_\\%%' ESCAPE '\\'"
        );
    }
}
