//! `ask eval QA_DIR`: answer quality on a question set with gold strings.
//!
//! Every question goes through what `ask query` does (the same retrieval,
//! the same prompt from `ask_pipeline::prompt`, the same model and sampling),
//! with the model loaded once; `ask_eval::qa` scores the answers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use ask_eval::qa::{self, AnswerScores, Outcome};
use ask_eval::Dataset;
use ask_engine::Generator;
use ask_pipeline::prompt;
use ask_store::Filter;
use serde::Serialize;
use tokio::runtime::Runtime;

use ask_pipeline::answer::{self, Answering};
use ask_pipeline::conversation::Exchange;
use super::super::search::open_for_query;
use crate::cli::EvalArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

#[derive(Serialize)]
struct Report<'a> {
    dataset: String,
    corpus: String,
    passages: usize,
    model: &'a str,
    k: usize,
    mode: &'static str,
    passage_tokens: usize,
    chunk_tokens: usize,
    neighbours: u32,
    layout: String,
    /// Conversations: how follow-ups were searched for.
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up: Option<String>,
    #[serde(flatten)]
    scores: AnswerScores,
    /// Conversations: the last turns asked alone, with no conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    alone: Option<AnswerScores>,
    /// Conversations: the last turns written out in full (`full`).
    #[serde(skip_serializing_if = "Option::is_none")]
    full: Option<AnswerScores>,
    outcomes: &'a [Outcome],
}

/// The documents a question set is about: `--corpus`, else the set's own
/// folder when it holds a BEIR corpus, else the folder beside it named
/// without `-qa` or `-conversations` (`msmarco-5k-qa` → `msmarco-5k`).
fn corpus_dir(args: &EvalArgs) -> Result<PathBuf> {
    if let Some(c) = &args.corpus {
        return Ok(c.clone());
    }
    let dir = &args.dataset;
    if dir.join("corpus.jsonl").is_file() {
        return Ok(dir.clone());
    }
    let abs = std::path::absolute(dir)?;
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(base) = name.strip_suffix("-qa").or_else(|| name.strip_suffix("-conversations")) {
        let beside = abs.with_file_name(base);
        if beside.is_dir() {
            return Ok(beside);
        }
    }
    anyhow::bail!("{}: no corpus.jsonl here and no folder beside it named {:?}; name the documents with --corpus DIR", dir.display(), name.trim_end_matches("-qa"))
}

/// What every question of a set is answered with, as `ask query` does.
struct Answerer<'a> {
    rt: &'a Runtime,
    store: &'a ask_store::Store,
    embedder: &'a ask_embed::Embedder,
    model: Generator,
    answering: Answering,
    filter: Filter,
    params: ask_engine::SamplingParams,
    prepared: &'a super::Prepared,
    qrels: Option<&'a std::collections::HashMap<String, std::collections::HashMap<String, i32>>>,
}

impl Answerer<'_> {
    /// Answers `q` after the turns of `history`, scores the answer, and
    /// returns it with its text.
    fn ask(&mut self, history: &[Exchange], q: &qa::Question) -> Result<(Outcome, String)> {
        let started = Instant::now();
        let grounds = self.answering.ground(self.store, self.embedder, &self.filter, history, &q.question, Some(&mut self.model));
        let mut grounds = self.rt.block_on(grounds)?;
        let mut outcome = Outcome { id: q.id.clone(), ..Default::default() };
        let mut said = answer::NOTHING.to_owned();
        if !grounds.hits.is_empty() {
            let before_model = started.elapsed().as_secs_f64() * 1000.0;
            let a = self.answering.answer(&mut self.model, &mut grounds, history, &q.question, &self.params, &AtomicBool::new(false), &mut |_| Ok(()))?;
            let (hits, shown) = (&grounds.hits, &grounds.shown);
            said = a.cited();
            let (text, t) = (a.text, a.timings);
            // Each passage's id in the set, by its number `[n]` - 1.
            let ids: Vec<Option<&String>> = hits.iter().map(|h| self.prepared.id_of.get(&h.passage.path)).collect();
            let source = ids.iter().position(|id| id.is_some_and(|id| *id == q.source)).map(|i| i + 1);
            let cited = prompt::citations(&text, hits.len());
            let answering = qa::answering_passages(q, self.qrels);
            let judged: Vec<usize> = (1..=ids.len()).filter(|&n| ids[n - 1].is_some_and(|id| answering.contains(id))).collect();
            // Support is judged on the text the model was given.
            outcome = Outcome {
                correct: qa::is_correct(&text, &q.answers),
                hit: source.is_some(),
                cited: source.is_some_and(|n| cited.contains(&n)),
                hit_judged: !judged.is_empty(),
                cited_judged: judged.iter().any(|n| cited.contains(n)),
                cited_support: cited.iter().any(|&n| qa::is_correct(&shown[n - 1].text, &q.answers)),
                attributed: source.is_some() && a.attributed == source,
                not_found: qa::says_not_found(&text),
                first_token_ms: before_model + t.first_token_ms,
                prompt_tokens: t.prompt_tokens,
                cached_tokens: t.cached_tokens,
                generated_tokens: t.generated_tokens,
                decode_tokens_per_s: t.decode_tokens_per_s,
                drafted_tokens: t.drafted_tokens,
                accepted_tokens: t.accepted_tokens,
                answer: text,
                ..outcome
            };
        }
        outcome.answer_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok((outcome, said))
    }
}

pub(super) fn run(args: &EvalArgs, cfg: &Config, rt: &Runtime) -> Result<Exit> {
    let [mode] = args.mode.modes()[..] else {
        anyhow::bail!("--mode all compares retrieval rankings; answers are evaluated in one mode (dense, bm25 or hybrid)");
    };
    // A set of questions, or of conversations whose last turns are scored.
    let conversations_path = args.dataset.join("conversations.jsonl");
    let (set_path, mut questions, conversations) = if conversations_path.is_file() {
        let mut c = qa::load_conversations(&conversations_path)?;
        c.truncate(args.max_questions.unwrap_or(usize::MAX));
        (conversations_path, c.iter().map(qa::Conversation::follow_up).collect(), Some(c))
    } else {
        let path = args.dataset.join("questions.jsonl");
        (path.clone(), qa::load_questions(&path)?, None)
    };
    questions.truncate(args.max_questions.unwrap_or(usize::MAX));
    let corpus = corpus_dir(args)?;
    // A BEIR corpus is read once: for indexing, and for its relevance
    // judgements, which widen "the source" to every passage judged to
    // answer (qa::answering_passages).
    let beir = if corpus.join("corpus.jsonl").is_file() { Some(Dataset::load(&corpus)?) } else { None };
    let qrels = beir.as_ref().map(|ds| &ds.qrels);
    let prepared = match super::prepare(&corpus, beir.as_ref(), args.chunk_tokens, cfg, rt)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let known: std::collections::HashSet<&str> = prepared.id_of.values().map(String::as_str).collect();
    if let Some(q) = questions.iter().find(|q| !known.contains(q.source.as_str())) {
        anyhow::bail!("{}: question {:?} names source {:?}, which is not in {}", set_path.display(), q.id, q.source, corpus.display());
    }

    let (store, embedder) = open_for_query(&prepared.cfg, rt, true)?;
    let embedder = embedder.expect("the encoder was asked for");
    let model_path = cfg.answer_model(args.gen.model.as_deref())?;
    let ui = Ui::new(cfg.quiet, false);
    let spinner = ui.spinner("loading the model");
    let mut model = Generator::load(&model_path).context("cannot load the answer model")?;
    // As `ask query` does: the first question reads the prompt's opening
    // from the cache, the others find it in memory.
    model.keep_opening(&prompt::opening(&model, args.layout)?, &cfg.openings())?;
    spinner.finish_and_clear();
    let answering = Answering { layout: args.layout, ..args.passages.answering(mode, args.follow.follow_up) };
    let mut answerer = Answerer { rt, store: &store, embedder: &embedder, model, answering, filter: Filter::default(), params: args.gen.sampling(), prepared: &prepared, qrels };

    let mut outcomes = Vec::with_capacity(questions.len());
    let mut compared: Option<(Vec<Outcome>, Vec<Outcome>)> = None;
    match &conversations {
        None => {
            let bar = ui.bar(questions.len() as u64, "questions");
            for q in &questions {
                outcomes.push(answerer.ask(&[], q)?.0);
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
        Some(conversations) => {
            // Each conversation as `ask chat` has it (every turn answered,
            // the last scored), then its last turn asked alone, and written
            // out in full.
            let bar = ui.bar(conversations.len() as u64, "conversations");
            let (mut alone, mut full) = (Vec::new(), Vec::new());
            for (c, q) in conversations.iter().zip(&questions) {
                let mut history = Vec::new();
                for turn in &c.turns[..c.turns.len() - 1] {
                    let unscored = qa::Question { id: c.id.clone(), question: turn.user.clone(), answers: Vec::new(), source: c.source.clone() };
                    let (_, said) = answerer.ask(&history, &unscored)?;
                    history.push(Exchange { question: turn.user.clone(), answer: said });
                }
                outcomes.push(answerer.ask(&history, q)?.0);
                alone.push(answerer.ask(&[], q)?.0);
                let written = qa::Question { question: c.full.clone().unwrap_or_else(|| q.question.clone()), ..q.clone() };
                full.push(answerer.ask(&[], &written)?.0);
                bar.inc(1);
            }
            bar.finish_and_clear();
            compared = Some((alone, full));
        }
    }

    let report = Report {
        dataset: args.dataset.display().to_string(),
        corpus: corpus.display().to_string(),
        passages: prepared.passages,
        model: &answerer.model.name,
        k: answerer.answering.k,
        mode: answerer.answering.mode.as_str(),
        passage_tokens: answerer.answering.passage_tokens,
        chunk_tokens: args.chunk_tokens,
        neighbours: answerer.answering.neighbours,
        layout: args.layout.to_string(),
        follow_up: conversations.as_ref().map(|_| answerer.answering.follow_up.to_string()),
        scores: AnswerScores::from(&outcomes),
        alone: compared.as_ref().map(|(a, _)| AnswerScores::from(a)),
        full: compared.as_ref().map(|(_, f)| AnswerScores::from(f)),
        outcomes: &outcomes,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report, &set_path)?;
    }
    Ok(Exit::Success)
}

fn print_report(out: &mut impl Write, r: &Report, questions: &Path) -> Result<()> {
    let s = &r.scores;
    let what = if r.follow_up.is_some() { "conversations, the last turn scored" } else { "questions" };
    writeln!(out, "{} ({} {what} over {} passages)", questions.display(), s.questions, r.passages)?;
    writeln!(
        out,
        "  model {}, -k {}, mode {}, --chunk-tokens {}, --neighbours {}, --passage-tokens {}, --layout {}",
        r.model, r.k, r.mode, r.chunk_tokens, r.neighbours, r.passage_tokens, r.layout
    )?;
    writeln!(out, "  answer accuracy      {:.3}", s.accuracy)?;
    writeln!(out, "  retrieval hit        {:.3}  (the source among the passages given to the model)", s.retrieval_hit)?;
    writeln!(out, "  citation accuracy    {:.3}  (the model's own [n] names the source; ask's added [n]: {:.3})", s.citation_accuracy, s.attributed_accuracy)?;
    writeln!(out, "  judged hit           {:.3}  (a passage the corpus's qrels judge 2+ among those given)", s.retrieval_hit_judged)?;
    writeln!(out, "  judged citation      {:.3}  (the model's own [n] names a passage judged 2+ or the source)", s.citation_accuracy_judged)?;
    writeln!(out, "  citation support     {:.3}  (the model's own [n] names a passage holding a gold answer)", s.citation_support)?;
    writeln!(out, "  says not found       {:.3}", s.not_found)?;
    writeln!(out, "  time to first token  p50 {:.2} s, p90 {:.2} s", s.first_token_ms_p50 / 1000.0, s.first_token_ms_p90 / 1000.0)?;
    writeln!(out, "  whole answer         p50 {:.2} s, p90 {:.2} s", s.answer_ms_p50 / 1000.0, s.answer_ms_p90 / 1000.0)?;
    writeln!(out, "  prompt p50 {:.0} tokens, decode p50 {:.1} tokens/s", s.prompt_tokens_p50, s.decode_tokens_per_s_p50)?;
    if let (Some(follow), Some(alone), Some(full)) = (&r.follow_up, &r.alone, &r.full) {
        writeln!(out, "  follow-ups searched by {follow}; the same last turns:")?;
        for (what, x) in [("asked alone", alone), ("written in full", full)] {
            writeln!(
                out,
                "    {what:<16} accuracy {:.3}, retrieval hit {:.3}, first token p50 {:.2} s",
                x.accuracy,
                x.retrieval_hit,
                x.first_token_ms_p50 / 1000.0
            )?;
        }
    }
    if s.lookup_drafted_per_token > 0.0 {
        writeln!(out, "  prompt lookup        {:.2} drafted per token, {:.3} of them accepted", s.lookup_drafted_per_token, s.lookup_acceptance)?;
    }
    Ok(())
}
