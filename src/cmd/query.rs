//! `ask query`: retrieve, build a grounded prompt, generate, cite.

use std::io::{IsTerminal, Read, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use ask_pipeline::prompt;
use ask_engine::Generator;
use ask_store::Hit;
use serde::Serialize;
use tokio::runtime::Runtime;

use ask_pipeline::answer::{self, Answer};
use ask_pipeline::conversation::{Conversation, ConversationError, Conversations, Exchange, FollowUp};
use ask_pipeline::json::Source;

use super::search::open_for_query;
use super::Run;
use crate::cli::QueryArgs;
use crate::config::Config;
use crate::exit::{Exit, Usage};

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
    cached_tokens: usize,
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
    stop: Option<ask_engine::Stop>,
    timings: JsonTimings,
    /// The conversation the question and answer were added to (null with
    /// --context-only, which keeps nothing).
    conversation: Option<&'a str>,
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

/// The conversation a question belongs to: the one `id` names, the latest
/// with this index for `latest` (a new one when there is none), else a new
/// one. An unknown id, or one with another index, is a usage error.
pub(super) fn conversation(cfg: &Config, id: Option<&str>, latest: bool) -> Result<(Conversations, Conversation)> {
    let all = Conversations::new(&cfg.home);
    let found = match (id, latest) {
        (Some(id), _) => Some(all.load(id).map_err(|e| match e {
            ConversationError::Unknown { .. } => anyhow::Error::new(Usage(format!("{e}; `ask conversations` lists them"))),
            e => e.into(),
        })?),
        (None, true) => all.latest(&cfg.index_name)?,
        (None, false) => None,
    };
    if let Some(c) = &found {
        if c.index != cfg.index_name {
            return Err(Usage(format!("conversation '{}' is with index '{}', not '{}': add --index {}", c.id, c.index, cfg.index_name, c.index)).into());
        }
    }
    if latest && found.is_none() && !cfg.quiet && std::io::stderr().is_terminal() {
        eprintln!("ask: no earlier conversation with index '{}' to continue: this question starts one", cfg.index_name);
    }
    let now = super::rfc3339(jiff::Timestamp::now().as_second());
    let conversation = found.unwrap_or_else(|| all.start(&cfg.index_name, &now));
    Ok((all, conversation))
}

impl Run for QueryArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let question = self.question()?;
        let (conversations, mut conversation) = conversation(cfg, self.talk.conversation.as_deref(), self.talk.continue_last)?;
        let history = conversation.turns.clone();
        let started = Instant::now();
        let filter = self.filter.resolve_now()?;
        let model_path = cfg.answer_model(self.gen.model.as_deref());
        let answering = self.passages.answering(self.mode.into(), self.talk.follow.follow_up);
        // The answer model loads (reads its file, lays out its kernels'
        // tiles) and reads the prompt's opening with the conversation's
        // earlier turns while the question is embedded and searched.
        let mut loading = match (&model_path, self.context_only) {
            (Ok(path), false) => {
                let (path, answering, openings) = (path.clone(), answering.clone(), cfg.openings());
                // A rewritten follow-up's prompt shares none of them.
                let earlier = if self.talk.follow.follow_up == FollowUp::Rewrite { Vec::new() } else { history.clone() };
                Some(std::thread::spawn(move || {
                    let mut model = Generator::load(&path)?;
                    // What fails here fails again, and is said, when the
                    // prompt is read in whole.
                    let _ = answering.ready(&mut model, &earlier, &openings);
                    Ok::<_, ask_engine::ModelError>(model)
                }))
            }
            _ => None,
        };
        let (store, embedder) = open_for_query(cfg, rt, true)?;
        let embedder = embedder.expect("the encoder was asked for");
        // A follow-up is searched for with what it refers to.
        let mut loaded = None;
        // Rewriting a follow-up needs the answer model first.
        if !history.is_empty() && self.talk.follow.follow_up == FollowUp::Rewrite && !self.context_only {
            model_path.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let model = loading.take().expect("started when the model was found").join().expect("the loading thread does not panic");
            loaded = Some(model.context("cannot load the answer model")?);
        }
        let mut grounds = rt.block_on(answering.ground(&store, &embedder, &filter, &history, &question, loaded.as_mut()))?;
        let retrieval_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The encoder and the index are done with: their memory goes back
        // before the answer's prefill asks for its own (ONNX Runtime's
        // arenas stay in the C heap until handed back).
        drop(embedder);
        drop(store);
        ask_engine::memory::release_freed();

        if self.context_only {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", prompt::user_message(&grounds.shown, &question, answering.layout))?;
            return Ok(Exit::Success);
        }
        let keep = |conversation: &mut Conversation, answer: String| -> Result<()> {
            conversation.turns.push(Exchange { question: question.clone(), answer });
            conversations.save(conversation).context("cannot keep the conversation")
        };
        if grounds.hits.is_empty() {
            // No model is needed, nor need it exist; --json still names
            // it as an answer would (its file name).
            let spec = self.gen.model.as_deref().unwrap_or(&cfg.model);
            let name = ask_models::catalog::file_name(model_path.as_deref().unwrap_or(spec));
            keep(&mut conversation, answer::NOTHING.to_owned())?;
            return self.finish(None, &[], &name, retrieval_ms, &conversation.id);
        }

        let mut model = match loaded {
            Some(model) => model,
            None => {
                model_path?;
                let loaded = loading.expect("started when the model was found").join().expect("the loading thread does not panic");
                loaded.context("cannot load the answer model")?
            }
        };
        let interrupted = super::interrupt_flag(rt);
        let mut out = std::io::stdout().lock();
        let json = self.json;
        let answer = answering.answer(&mut model, &mut grounds, &history, &question, &self.gen.sampling(), &interrupted, &mut |piece| {
            if !json {
                out.write_all(piece.as_bytes())?;
                out.flush()?;
            }
            Ok(())
        })?;
        drop(out);
        keep(&mut conversation, answer.cited())?;
        let exit = self.finish(Some(&answer), &grounds.hits, &model.name, retrieval_ms, &conversation.id)?;
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
    fn finish(&self, answer: Option<&Answer>, hits: &[Hit], model: &str, retrieval_ms: f64, conversation: &str) -> Result<Exit> {
        let attributed = answer.and_then(|a| a.attributed);
        let mut out = std::io::stdout().lock();
        let sources = Source::all(hits);
        if self.json {
            let stop = answer.map(|a| a.timings.stop);
            let t = answer.map(|a| a.timings.clone()).unwrap_or_default();
            let json = JsonAnswer {
                answer: answer.map(Answer::cited),
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
                    cached_tokens: t.cached_tokens,
                },
                conversation: Some(conversation),
            };
            serde_json::to_writer(&mut out, &json)?;
            writeln!(out)?;
            return Ok(Exit::Success);
        }
        if answer.is_none() {
            writeln!(out, "{}", answer::NOTHING)?;
            return Ok(Exit::Success);
        }
        if let Some(n) = attributed {
            write!(out, " [{n}]")?;
        }
        writeln!(out, "\n\nSources:")?;
        let links = crate::hyperlink::Links::for_stdout();
        for s in &sources {
            writeln!(out, "[{}] {}", s.n, links.wrap(&s.location, s.path, s.line_start))?;
        }
        Ok(Exit::Success)
    }
}
