//! `ask eval DATASET_DIR`: retrieval quality on BEIR-format judged data, or
//! answer quality on a question set ([`answers`]).
//!
//! The corpus goes through the real pipeline: each passage is written as a
//! text file and indexed by `ask index`'s own code into a scratch index under
//! the cache directory, keyed by the corpus's hash and the encoder, so a
//! second run on the same data only re-walks the files. Each judged query is
//! then searched exactly as `ask search` would.

mod answers;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ask_eval::{Dataset, Scores};
use ask_embed::probe;
use ask_pipeline::answer::Embedded;
use ask_store::{Filter, PathKey, Request};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::search::open_for_query;
use super::Run;
use crate::cli::EvalArgs;
use crate::config::{cache_home, Config};
use crate::exit::Exit;
use crate::progress::Ui;

/// Metrics are taken at this rank.
const CUTOFF: usize = 10;
/// Chunks retrieved per query, so that CUTOFF distinct passages remain when
/// some passages were split into several chunks.
const CHUNKS_PER_QUERY: usize = 3 * CUTOFF;

#[derive(Serialize)]
struct Report {
    #[serde(rename = "ndcg@10")]
    ndcg: f64,
    #[serde(rename = "recall@10")]
    recall: f64,
    #[serde(rename = "mrr@10")]
    mrr: f64,
    queries: usize,
    median_ms: f64,
    mode: &'static str,
    dataset: String,
    passages: usize,
}

/// A corpus indexed for evaluation: the index, and the corpus id of each
/// indexed file.
pub(super) struct Prepared {
    cfg: Config,
    id_of: HashMap<PathKey, String>,
    passages: usize,
}

/// The scratch directory for a corpus (keyed by `key`) and encoder.
fn scratch(dir: &Path, key: &[u8], encoder: &str) -> Result<PathBuf> {
    let hash = ask_ingest::content_hash(&[key, encoder.as_bytes()].concat());
    let name = std::path::absolute(dir)?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    Ok(cache_home()?.join("eval").join(format!("{safe}-{}", &hash[..16])))
}

/// Indexes `corpus` with the real pipeline into a scratch index
/// (incremental: a no-op when that index is complete). A BEIR corpus
/// (`corpus.jsonl`) is written out one file per passage, whose id is the
/// passage's `_id`; any other folder is indexed where it is, each file's id
/// being its path below the folder.
/// `loaded` is the dataset at `corpus` when the caller has read it already.
/// An indexing run that does not succeed (another `ask index` holds the
/// scratch index: 75) gives its exit code, for the caller to return.
fn prepare(corpus: &Path, loaded: Option<&Dataset>, chunk_tokens: usize, cfg: &Config, rt: &Runtime) -> Result<Result<Prepared, Exit>> {
    let info = probe(&cfg.embed_model).context("cannot use the encoder")?;
    // Each chunk size has a scratch index of its own; the default's keeps
    // the name it always had.
    let encoder = match chunk_tokens {
        ask_pipeline::index::CHUNK_TOKENS => info.name.clone(),
        n => format!("{} chunks of {n}", info.name),
    };
    let beir = corpus.join("corpus.jsonl");
    let (docs, dir, id_of) = if beir.is_file() {
        let bytes = std::fs::read(&beir).with_context(|| format!("cannot read {}", beir.display()))?;
        let dir = scratch(corpus, &bytes, &encoder)?;
        let read;
        let ds = match loaded {
            Some(ds) => ds,
            None => {
                read = Dataset::load(corpus)?;
                &read
            }
        };
        let docs = dir.join("docs");
        ask_store::create_private_dir(&docs)?;
        ds.write_files(&docs)?;
        let id_of = ds.corpus.iter().map(|d| (PathKey::of(&docs.join(ask_eval::beir::file_name(&d.id))), d.id.clone())).collect();
        (docs, dir, id_of)
    } else if corpus.is_dir() {
        let docs = std::path::absolute(corpus)?;
        let dir = scratch(corpus, docs.as_os_str().as_encoded_bytes(), &encoder)?;
        (docs, dir, HashMap::new())
    } else {
        anyhow::bail!("{}: not a BEIR dataset (no corpus.jsonl) nor a folder of documents", corpus.display());
    };
    let cfg = Config { index_name: "eval".into(), index_dir: dir.join("index"), ..cfg.clone() };
    // `ask index DOCS` with every option at its default.
    let options = ask_pipeline::Options { exclude: vec![cfg.home.clone()], chunk_tokens, ..Default::default() };
    let ui = Ui::new(cfg.quiet, false);
    let roots = ask_pipeline::index::walked(&ask_pipeline::index::roots(std::slice::from_ref(&docs))?, &options.walk);
    if let Err(exit) = super::index::update(&cfg, options, &roots, true, ask_store::WhenBusy::Fail, &ui)? {
        return Ok(Err(exit));
    }
    let mut prepared = Prepared { cfg, id_of, passages: 0 };
    if prepared.id_of.is_empty() {
        // A folder: every indexed file, by its path below the folder.
        let store = rt.block_on(ask_store::Store::open(&prepared.cfg.index_dir))?;
        for path in rt.block_on(store.file_records())?.into_keys() {
            if let Some(rel) = path.to_path().strip_prefix(&docs).ok().map(|r| r.to_string_lossy().into_owned()) {
                prepared.id_of.insert(path, rel);
            }
        }
    }
    prepared.passages = prepared.id_of.len();
    Ok(Ok(prepared))
}

impl Run for EvalArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        if self.dataset.join("questions.jsonl").is_file() || self.dataset.join("conversations.jsonl").is_file() {
            return answers::run(self, cfg, rt);
        }
        let ui = Ui::new(cfg.quiet, false);
        let ds = Dataset::load(&self.dataset)?;
        let queries = ds.judged_queries();
        if queries.is_empty() {
            anyhow::bail!("{}: no query in qrels/test.tsv has a relevant passage in queries.jsonl", self.dataset.display());
        }
        let prepared = match &self.corpus {
            Some(corpus) => prepare(corpus, None, self.chunk_tokens, cfg, rt)?,
            None => prepare(&self.dataset, Some(&ds), self.chunk_tokens, cfg, rt)?,
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(exit) => return Ok(exit),
        };
        let modes = self.mode.modes();
        let (store, embedder) = open_for_query(&prepared.cfg, rt, modes.iter().any(|m| m.needs_vector()))?;
        let filter = Filter::default();
        let mut out = std::io::stdout().lock();
        for mode in modes {
            let embedder = embedder.as_ref().filter(|_| mode.needs_vector());
            let bar = ui.bar(queries.len() as u64, mode.as_str());
            let mut scores = Scores::default();
            let mut latencies = Vec::with_capacity(queries.len());
            for q in &queries {
                let t = Instant::now();
                let searched = Embedded::new(embedder, &q.text)?;
                let query = searched.query(mode).expect("the vector was computed for this mode");
                let req = Request { query, k: CHUNKS_PER_QUERY, filter: &filter };
                let hits = rt.block_on(store.search(&req))?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                let mut seen = HashSet::new();
                let ranked: Vec<&str> = hits
                    .iter()
                    .filter_map(|h| prepared.id_of.get(&h.passage.path).map(String::as_str))
                    .filter(|id| seen.insert(*id))
                    .take(CUTOFF)
                    .collect();
                scores.add(&ranked, &ds.qrels[&q.id], CUTOFF);
                bar.inc(1);
            }
            bar.finish_and_clear();
            let m = scores.mean();
            let report = Report {
                ndcg: m.ndcg,
                recall: m.recall,
                mrr: m.mrr,
                queries: m.queries,
                median_ms: ask_eval::qa::percentile(&latencies, 50.0),
                mode: mode.as_str(),
                dataset: self.dataset.display().to_string(),
                passages: prepared.passages,
            };
            if self.json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{} ({} passages, {} judged queries), mode {}", report.dataset, report.passages, report.queries, report.mode)?;
                writeln!(out, "  nDCG@10    {:.3}", report.ndcg)?;
                writeln!(out, "  recall@10  {:.3}", report.recall)?;
                writeln!(out, "  MRR@10     {:.3}", report.mrr)?;
                writeln!(out, "  median query latency {:.1} ms (embedding and search, warm)", report.median_ms)?;
            }
        }
        Ok(Exit::Success)
    }
}
