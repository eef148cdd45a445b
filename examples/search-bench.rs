//! Search at scale, on synthetic tables built through ask-store's own API:
//! recall@10 of the ANN vector index against exact search, query latency
//! (dense) at each size, and hybrid latency with the real encoder
//! embedding each query (what `ask search` does after loading the model).
//!
//! Vectors: 384 dimensions, a mixture of 1,000 Gaussian clusters on the unit
//! sphere whose members have cosine ≈ 0.7 to their centre (nearest
//! neighbours of real sentence embeddings sit at 0.5-0.8); queries are fresh
//! draws from the same mixture, never table rows. Text: 60 words per chunk
//! from a Zipf-distributed vocabulary of 20,000 pseudo-words, for the
//! full-text index.
//!
//! ```text
//! cargo run --release --example search-bench -- [ENCODER_DIR] [SIZES]
//! ```
//! SIZES defaults to 10000,100000,200000; ENCODER_DIR to the default encoder.

use std::path::PathBuf;
use std::time::Instant;

use ask_store::{search, ChunkRecord, FileRecord, FileStatus, Filter, Kind, Mode, Passage, PathKey, Query, Request, Store};

const DIM: usize = 384;
const CLUSTERS: usize = 1000;
const QUERIES: usize = 200;
const WORDS: usize = 20_000;

/// A normal draw (Box-Muller).
fn gauss(rng: &mut fastrand::Rng) -> f32 {
    let (u, v) = (rng.f64().max(1e-12), rng.f64());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

struct Data {
    rng: fastrand::Rng,
    centres: Vec<Vec<f32>>,
    /// Cumulative Zipf weights over the vocabulary.
    zipf: Vec<f64>,
}

impl Data {
    fn new(seed: u64) -> Data {
        let mut rng = fastrand::Rng::with_seed(seed);
        let centres = (0..CLUSTERS)
            .map(|_| {
                let mut c: Vec<f32> = (0..DIM).map(|_| gauss(&mut rng)).collect();
                normalize(&mut c);
                c
            })
            .collect();
        let mut acc = 0.0;
        let zipf = (1..=WORDS)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        Data { rng, centres, zipf }
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = self.rng.usize(..CLUSTERS);
        let scale = 1.0 / (DIM as f32).sqrt();
        let mut v: Vec<f32> = self.centres[c].iter().map(|x| x + scale * gauss(&mut self.rng)).collect();
        normalize(&mut v);
        v
    }

    fn word(&mut self) -> String {
        let x = self.rng.f64() * self.zipf[WORDS - 1];
        let r = self.zipf.partition_point(|&c| c < x);
        // Pronounceable and unique per rank.
        const SYL: [&str; 16] = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "da", "ve", "go", "hu", "ze", "bi", "fa", "wy"];
        let mut w = String::new();
        let mut n = r + 16;
        while n > 0 {
            w.push_str(SYL[n % 16]);
            n /= 16;
        }
        w
    }

    fn text(&mut self, words: usize) -> String {
        (0..words).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }

    /// Chunk `chunk` of `path`: 60 words and a vector.
    fn chunk(&mut self, path: &str, chunk: u32, doc_hash: String) -> ChunkRecord {
        let passage = Passage { path: PathKey::of(path.as_ref()), chunk, kind: Kind::Text, text: self.text(60), line_start: 1, line_end: 1, page: None, message: None };
        ChunkRecord { passage, byte_start: 0, byte_end: 0, date_ns: 0, vector: self.vector(), doc_hash }
    }
}

/// The record of a file of 100 chunks; `size` tells versions apart.
fn file(path: &str, size: u64) -> FileRecord {
    FileRecord {
        path: PathKey::of(path.as_ref()),
        size,
        mtime_ns: size as i64 - 1,
        hash: String::new(),
        kind: Some(Kind::Text),
        status: FileStatus::Ok,
        error: None,
        chunks: 100,
        indexed_at_ms: 0,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let encoder = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".local/share/ask/models/all-MiniLM-L6-v2")
    });
    let sizes: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "10000,100000,200000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    let t = Instant::now();
    let embedder = ask_embed::Embedder::load(&encoder)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("encoder load: {load_ms:.0} ms");
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>12} {:>12} {:>10} {:>11} {:>14} {:>10}",
        "chunks", "index", "dense p50", "bm25 p50", "embed p50", "hybrid p50", "recall@10", "hybrid r@10", "build", "threshold"
    );

    for &n in &sizes {
        let dir = tempfile::tempdir()?;
        let store = rt.block_on(Store::open_or_create(dir.path(), DIM))?;
        let mut data = Data::new(42);
        // Write in batches, 100 chunks per file, as ask index would.
        let t = Instant::now();
        let batch = 10_000;
        for start in (0..n).step_by(batch) {
            let end = (start + batch).min(n);
            let mut files = Vec::new();
            let mut chunks = Vec::new();
            for i in start..end {
                let path = format!("/bench/f{}.txt", i / 100);
                if i % 100 == 0 {
                    files.push(file(&path, 1));
                }
                chunks.push(data.chunk(&path, (i % 100) as u32, format!("{i}")));
            }
            rt.block_on(store.write_files(&files, &chunks))?;
        }
        // Full-text index only: the vector index comes after the exact runs.
        rt.block_on(store.ensure_indexes_with(usize::MAX))?;
        let write_s = t.elapsed().as_secs_f64();

        let mut qdata = Data::new(42);
        qdata.rng = fastrand::Rng::with_seed(7); // same clusters and words, fresh draws
        let queries: Vec<(Vec<f32>, String)> = (0..QUERIES).map(|_| (qdata.vector(), qdata.text(4))).collect();
        let filter = Filter::default();
        let top10 = |v: &[f32], text: &str, mode: Mode| -> Result<(Vec<(PathKey, u32)>, f64), ask_store::StoreError> {
            let t = Instant::now();
            let req = Request { query: Query::of(mode, text, Some(v)).expect("a vector for every mode"), k: 10, filter: &filter };
            let hits = rt.block_on(store.search(&req))?;
            Ok((hits.into_iter().map(|h| (h.passage.path, h.passage.chunk)).collect(), t.elapsed().as_secs_f64() * 1000.0))
        };
        // Warm-up, then exact search.
        top10(&queries[0].0, &queries[0].1, Mode::Dense)?;
        let mut exact = Vec::new();
        let mut exact_ms = Vec::new();
        let mut exact_hybrid_ids = Vec::new();
        for (v, text) in &queries {
            let (ids, ms) = top10(v, text, Mode::Dense)?;
            exact.push(ids);
            exact_ms.push(ms);
            exact_hybrid_ids.push(top10(v, text, Mode::Hybrid)?.0);
        }
        // What `ask search` does per query: embed the text, then search.
        // Returns the medians of the embedding alone and of the whole.
        let hybrid_p50 = || -> Result<(f64, f64), Box<dyn std::error::Error>> {
            let (mut embed_ms, mut ms) = (Vec::new(), Vec::new());
            for (_, text) in queries.iter().take(50) {
                let t = Instant::now();
                let v = embedder.embed_query(text)?;
                embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                let req = Request { query: Query::Hybrid { text, vector: &v, reading: 1.0 }, k: 10, filter: &filter };
                rt.block_on(store.search(&req))?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok((median(embed_ms), median(ms)))
        };
        let bm25_p50 = || -> Result<f64, ask_store::StoreError> {
            let mut ms = Vec::new();
            for (v, text) in queries.iter().take(50) {
                ms.push(top10(v, text, Mode::Bm25)?.1);
            }
            Ok(median(ms))
        };
        let bm25_ms = bm25_p50()?;
        let (embed_ms, exact_hybrid) = hybrid_p50()?;
        println!(
            "{n:>8} {:>9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>10} {:>11} {:>12.1} s {:>10}",
            "exact",
            median(exact_ms),
            bm25_ms,
            embed_ms,
            exact_hybrid,
            "1.000",
            "1.000",
            write_s,
            search::ANN_THRESHOLD
        );

        // The ANN index, built as `ask index` would once past the threshold.
        let t = Instant::now();
        rt.block_on(store.ensure_indexes_with(0))?;
        let build_s = t.elapsed().as_secs_f64();
        assert!(store.has_vector_index());
        top10(&queries[0].0, &queries[0].1, Mode::Dense)?;
        // A mode's top ten through the ANN index against its exact top ten,
        // with the time of each search.
        let recall_against = |mode: Mode, truths: &[Vec<(PathKey, u32)>]| -> Result<(f64, Vec<f64>), ask_store::StoreError> {
            let (mut found, mut ms) = (0usize, Vec::new());
            for ((v, text), truth) in queries.iter().zip(truths) {
                let (ids, t) = top10(v, text, mode)?;
                found += ids.iter().filter(|id| truth.contains(id)).count();
                ms.push(t);
            }
            Ok((found as f64 / (QUERIES * 10) as f64, ms))
        };
        let (recall, ann_ms) = recall_against(Mode::Dense, &exact)?;
        let (hybrid_recall, _) = recall_against(Mode::Hybrid, &exact_hybrid_ids)?;
        let (embed_ms, ann_hybrid) = hybrid_p50()?;
        // What an incremental run on a changed mailbox asks of the table:
        // one file's document hashes, then the stored chunks of 500 documents.
        let hashes: Vec<String> = (0..500).map(|i| (i * n / 500).to_string()).collect();
        let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
        // The median of five of each.
        let (mut doc_hashes_ms, mut reuse_ms) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let held = rt.block_on(store.doc_hashes(&PathKey::of("/bench/f7.txt".as_ref())))?;
            doc_hashes_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let found_docs = rt.block_on(store.chunks_by_doc_hash(&refs))?;
            reuse_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!((held.len(), found_docs.len()), (100, 500));
        }
        let (doc_hashes_ms, reuse_ms) = (median(doc_hashes_ms), median(reuse_ms));
        println!(
            "{n:>8} {:>9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>10.3} {:>11.3} {:>12.1} s {:>10}",
            "ivf-pq",
            median(ann_ms),
            bm25_ms,
            embed_ms,
            ann_hybrid,
            recall,
            hybrid_recall,
            build_s,
            ""
        );
        println!("{n:>8} lookups: one file's document hashes {doc_hashes_ms:.1} ms, chunks of 500 documents {reuse_ms:.1} ms");
        // One file of 100 chunks rewritten, then what `ask index` does
        // after any run that wrote: compaction, pruning, the indexes.
        let changed: Vec<ChunkRecord> = (0..100u32).map(|c| data.chunk("/bench/f7.txt", c, format!("changed {c}"))).collect();
        let t = Instant::now();
        rt.block_on(store.write_files(&[file("/bench/f7.txt", 2)], &changed))?;
        let write_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        rt.block_on(store.optimize(std::time::Duration::ZERO))?;
        let optimize_ms = t.elapsed().as_secs_f64() * 1000.0;
        // What an `ask index` that finds nothing changed asks of the indexes.
        let t = Instant::now();
        rt.block_on(store.ensure_indexes())?;
        let unchanged_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("{n:>8} one file of 100 chunks changed: write {write_ms:.0} ms, optimize {optimize_ms:.0} ms; then nothing changed: indexes {unchanged_ms:.0} ms");
    }
    Ok(())
}
