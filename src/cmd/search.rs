//! `ask search`: the passages nearest to a query, for people and pipelines.

use std::io::Write;

use anyhow::{Context, Result};
use ask_embed::Embedder;
use ask_pipeline::answer::{fold_whitespace, location, Embedded};
use ask_pipeline::json::SearchHit;
use ask_pipeline::warm::check_encoder;
use ask_store::{Mode, Request, Store};
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::SearchArgs;
use crate::config::Config;
use crate::exit::Exit;

/// Opens an index for reading and, when `encoder` is set, loads the
/// encoder after checking that the index was built with it.
pub(crate) fn open_for_query(cfg: &Config, rt: &Runtime, encoder: bool) -> Result<(Store, Option<Embedder>)> {
    let meta = super::index_meta(cfg)?;
    let embedder = if encoder {
        let embedder = Embedder::load(&cfg.embed_model).context("cannot load the encoder")?;
        if let Err(e) = check_encoder(&meta, embedder.info()) {
            anyhow::bail!("{e} ('{}'); pass --embed-model for {}", cfg.index_name, e.built);
        }
        Some(embedder)
    } else {
        None
    };
    let store = rt.block_on(Store::open(&cfg.index_dir))?;
    Ok((store, embedder))
}

/// The score the list is ranked by, so that it never goes up down the
/// list, and beside a fused score the cosine similarity, labelled: it reads
/// the same in every mode, where a fused score means little alone.
fn score_label(mode: Mode, score: f32, similarity: Option<f32>) -> String {
    match (mode, similarity) {
        (Mode::Hybrid, Some(sim)) => format!("{score:.4} (similarity {sim:.3})"),
        _ => format!("{score:.3}"),
    }
}

/// The first few lines of a passage, whitespace folded, for a terminal.
fn snippet(text: &str, max_chars: usize) -> String {
    let folded = fold_whitespace(text);
    if folded.chars().count() <= max_chars {
        folded
    } else {
        let cut: String = folded.chars().take(max_chars).collect();
        format!("{}…", cut.trim_end())
    }
}

impl Run for SearchArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let query = self.query.join(" ");
        if query.trim().is_empty() {
            anyhow::bail!("the query is empty");
        }
        let filter = self.filter.resolve_now()?;
        let mode: Mode = self.mode.into();
        let (store, embedder) = open_for_query(cfg, rt, mode.needs_vector())?;
        let searched = Embedded::new(embedder.as_ref(), &query)?;
        let query = searched.query(mode).expect("the vector was computed for this mode");
        let req = Request { query, k: self.limit, filter: &filter };
        let hits = rt.block_on(store.search(&req))?;
        let links = crate::hyperlink::Links::for_stdout();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for (i, hit) in hits.iter().enumerate() {
            if self.json {
                serde_json::to_writer(&mut out, &SearchHit::new(i + 1, hit))?;
                writeln!(out)?;
            } else {
                let place = links.wrap(&location(&hit.passage), &hit.passage.path, hit.passage.line_start);
                writeln!(out, "{:>2}. {}  {}", i + 1, score_label(mode, hit.score, hit.similarity), place)?;
                writeln!(out, "    {}", snippet(&hit.passage.text, 240))?;
            }
        }
        out.flush()?;
        if hits.is_empty() && !cfg.quiet {
            if filter.is_empty() && mode != Mode::Bm25 {
                eprintln!("ask: the index '{}' is empty", cfg.index_name);
            } else {
                eprintln!("ask: no passage matches");
            }
        }
        Ok(Exit::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranking_score_is_printed_and_similarity_labelled() {
        assert_eq!(score_label(Mode::Dense, 0.4541, Some(0.4541)), "0.454");
        assert_eq!(score_label(Mode::Bm25, 7.25, None), "7.250");
        assert_eq!(score_label(Mode::Hybrid, 0.03279, Some(0.1071)), "0.0328 (similarity 0.107)");
    }

    #[test]
    fn snippets_fold_whitespace_and_cut_on_characters() {
        assert_eq!(snippet("a\n\n  b\tc", 100), "a b c");
        assert_eq!(snippet("ééééé", 3), "ééé…");
    }
}
