//! `ask query`: retrieve, build a grounded prompt, generate, cite.

use std::io::{IsTerminal, Read, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use ask_model::prompt::{self, Passage};
use ask_model::{Embedder, Generator};
use ask_store::{Filter, Hit, Mode, Request, Store};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::search::{location, open_for_query};
use super::Run;
use crate::cli::QueryArgs;
use crate::config::Config;
use crate::exit::Exit;

#[derive(Serialize)]
struct Source<'a> {
    n: usize,
    path: &'a str,
    location: String,
    line_start: u32,
    line_end: u32,
    page: Option<u32>,
    score: f32,
    similarity: Option<f32>,
    text: &'a str,
}

#[derive(Serialize)]
struct JsonTimings {
    retrieval_ms: f64,
    prompt_tokens: usize,
    generated_tokens: usize,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    first_token_ms: f64,
    drafted_tokens: usize,
    accepted_tokens: usize,
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    answer: Option<String>,
    /// The source ask cited for the model, which cited none (see
    /// [`prompt::attribute`]); null when the model cited its sources itself.
    attributed: Option<usize>,
    sources: Vec<Source<'a>>,
    model: String,
    /// Why generation ended: "end", "limit", "repetition" or
    /// "interrupted"; null when nothing was generated.
    stop: Option<ask_model::Stop>,
    timings: JsonTimings,
}

/// A passage's place as the model reads it: the file's name, not the
/// folders above it. The prompt, and so a greedy answer, is then the same
/// wherever the files live, and a deep path costs the context no tokens;
/// the sources printed after the answer keep the full path.
fn prompt_location(p: &ask_store::Passage) -> String {
    let name = std::path::Path::new(&p.path).file_name().map(|n| n.to_string_lossy().into_owned());
    location(&ask_store::Passage { path: name.unwrap_or_else(|| p.path.clone()), ..p.clone() })
}

/// How passages are chosen for a question.
pub(crate) struct Search<'a> {
    pub k: usize,
    pub mode: Mode,
    pub filter: &'a Filter,
    /// Passages less similar to the question than this are dropped.
    pub min_score: f32,
}

/// The passages to answer `question` from, best first. `vector` is the
/// question's embedding (`Embedder::embed_query`), used in every mode:
/// BM25 hits get their cosine similarity from it, so --min-score means
/// the same thing.
pub(crate) fn retrieve(rt: &Runtime, store: &Store, question: &str, vector: &[f32], search: &Search) -> Result<Vec<Hit>> {
    let req = Request { text: question, vector: Some(vector), k: search.k, mode: search.mode, filter: search.filter };
    let mut hits = rt.block_on(store.search(&req))?;
    hits.retain(|h| h.similarity.is_none_or(|s| s >= search.min_score));
    Ok(hits)
}

/// The passages as the model reads them.
pub(crate) fn passages(hits: &[Hit]) -> Vec<Passage> {
    hits.iter().map(|h| Passage { heading: prompt_location(&h.passage), text: h.passage.text.clone() }).collect()
}

/// `passages` as the model reads them: with a `budget` (the encoder's
/// tokens) they do not fit, only the sentences that bear most on the
/// question ([`prompt::select`]), each scored by its cosine similarity to
/// the question's embedding `q` in the encoder that retrieved them.
pub(crate) fn focus(embedder: &Embedder, q: &[f32], passages: Vec<Passage>, budget: usize) -> Result<Vec<Passage>> {
    let tokens = |s: &str| embedder.tokenizer().encode(s, false).map_or(s.len() / 4, |e| e.len());
    if budget == 0 || passages.iter().map(|p| tokens(&p.text)).sum::<usize>() <= budget {
        return Ok(passages);
    }
    let split: Vec<Vec<&str>> = passages.iter().map(|p| prompt::sentences(&p.text)).collect();
    let all: Vec<&str> = split.iter().flatten().copied().collect();
    let (vectors, _) = embedder.embed_passages(&all)?;
    let mut similarity = vectors.iter().map(|v| v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>());
    let scores: Vec<Vec<f32>> = split.iter().map(|ss| similarity.by_ref().take(ss.len()).collect()).collect();
    Ok(prompt::select(&passages, &scores, tokens, budget))
}

impl QueryArgs {
    fn question(&self) -> Result<String> {
        let q = if self.question.is_empty() {
            if std::io::stdin().is_terminal() {
                anyhow::bail!("no question: give one as an argument or on standard input");
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read the question from standard input")?;
            s
        } else {
            self.question.join(" ")
        };
        let q = q.trim().to_owned();
        if q.is_empty() {
            anyhow::bail!("the question is empty");
        }
        Ok(q)
    }
}

impl Run for QueryArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let question = self.question()?;
        let started = Instant::now();
        let filter = self.filter.resolve_now()?;
        let (store, embedder) = open_for_query(cfg, rt, true)?;
        let embedder = embedder.expect("the encoder was asked for");
        let search = Search { k: self.limit, mode: self.mode.into(), filter: &filter, min_score: self.min_score };
        let vector = embedder.embed_query(&question)?;
        let mut hits = retrieve(rt, &store, &question, &vector, &search)?;
        let shown = focus(&embedder, &vector, passages(&hits), self.passage_tokens)?;
        let retrieval_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(embedder);

        let model_path = cfg.answer_model(self.gen.model.as_deref());
        if hits.is_empty() {
            // No model is needed, nor need it exist; --json still names
            // it as an answer would (its file name).
            let spec = self.gen.model.as_deref().unwrap_or(&cfg.model);
            let name = ask_model::catalog::file_name(model_path.as_deref().unwrap_or(spec));
            let msg = "No passage in the index is relevant to this question, so there is nothing to answer from.";
            return self.finish(None, &[], &name, retrieval_ms, None, msg);
        }
        if self.context_only {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", prompt::user_message(&shown, &question))?;
            return Ok(Exit::Success);
        }

        let mut model = Generator::load(&model_path?).context("cannot load the answer model")?;
        // Fit the passages into the context window: room is kept for the
        // answer, whole passages only, lowest-ranked dropped first.
        let (prompt, kept) = prompt::fit(&model, &shown, &question, self.gen.max_tokens)?;
        hits.truncate(kept);
        let params = self.gen.sampling();
        let interrupted = super::interrupt_flag(rt);
        let mut answer = String::new();
        let mut out = std::io::stdout().lock();
        let mut write_err = None;
        let timings = model.generate(&prompt, &params, |piece| {
            answer.push_str(piece);
            if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            if self.json {
                return true;
            }
            match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                Ok(()) => true,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            }
        })?;
        drop(out);
        if let Some(e) = write_err {
            return Err(e.into());
        }
        let name = model.name.clone();
        let exit = self.finish(Some(answer.trim().to_owned()), &hits, &name, retrieval_ms, Some(timings), "")?;
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("ask: interrupted");
            return Ok(Exit::Interrupted);
        }
        Ok(exit)
    }
}

impl QueryArgs {
    /// Prints what follows the streamed answer (the citation ask adds when
    /// the model wrote none, and the sources), or with `--json` the whole
    /// answer object.
    fn finish(
        &self,
        answer: Option<String>,
        hits: &[Hit],
        model: &str,
        retrieval_ms: f64,
        timings: Option<ask_model::Timings>,
        no_answer: &str,
    ) -> Result<Exit> {
        let texts: Vec<&str> = hits.iter().map(|h| h.passage.text.as_str()).collect();
        let attributed = answer.as_deref().and_then(|a| prompt::attribute(a, &texts));
        let mut out = std::io::stdout().lock();
        let sources: Vec<Source> = hits
            .iter()
            .enumerate()
            .map(|(i, h)| Source {
                n: i + 1,
                path: &h.passage.path,
                location: location(&h.passage),
                line_start: h.passage.line_start,
                line_end: h.passage.line_end,
                page: h.passage.page,
                score: h.score,
                similarity: h.similarity,
                text: &h.passage.text,
            })
            .collect();
        if self.json {
            let stop = timings.as_ref().map(|t| t.stop);
            let t = timings.unwrap_or_default();
            let json = JsonAnswer {
                answer: answer.map(|a| match attributed {
                    Some(n) => format!("{a} [{n}]"),
                    None => a,
                }),
                attributed,
                sources,
                model: model.to_owned(),
                stop,
                timings: JsonTimings {
                    retrieval_ms,
                    prompt_tokens: t.prompt_tokens,
                    generated_tokens: t.generated_tokens,
                    prefill_tokens_per_s: t.prefill_tokens_per_s,
                    decode_tokens_per_s: t.decode_tokens_per_s,
                    first_token_ms: t.first_token_ms,
                    drafted_tokens: t.drafted_tokens,
                    accepted_tokens: t.accepted_tokens,
                },
            };
            serde_json::to_writer(&mut out, &json)?;
            writeln!(out)?;
            return Ok(Exit::Success);
        }
        if answer.is_none() {
            writeln!(out, "{no_answer}")?;
            return Ok(Exit::Success);
        }
        if let Some(n) = attributed {
            write!(out, " [{n}]")?;
        }
        writeln!(out, "\n\nSources:")?;
        for s in &sources {
            writeln!(out, "[{}] {}", s.n, s.location)?;
        }
        Ok(Exit::Success)
    }
}
