//! `ask query`: retrieve, build a grounded prompt, generate, cite.

use std::io::{IsTerminal, Read, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use ask_model::Generator;
use ask_store::{Hit, Request};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::search::{location, open_for_query};
use super::Run;
use crate::cli::QueryArgs;
use crate::config::Config;
use crate::exit::Exit;

/// Small models repeat a long system prompt back; they follow an
/// instruction placed after the context and just before the question.
const SYSTEM: &str = "You are a helpful assistant that answers from the user's documents.";
const INSTRUCTION: &str = "Answer the question using only the passages above, and cite the \
passages you use by number, like [1]. If they do not contain the answer, say you do not know.";

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
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    answer: Option<String>,
    /// The source ask cited for the model, which cited none (see
    /// [`attribute`]); null when the model cited its sources itself.
    attributed: Option<usize>,
    sources: Vec<Source<'a>>,
    model: String,
    /// Why generation ended: "end", "limit", "repetition" or
    /// "interrupted"; null when nothing was generated.
    stop: Option<ask_model::Stop>,
    timings: JsonTimings,
}

/// The passage to cite for an answer whose model cited none, by number:
/// the one sharing the most distinct words with the answer (words of three
/// or more letters that are not stop words, or holding a digit; "1,200"
/// is one word, so "200" does not match it), the
/// better-ranked on a tie. None when the answer already cites a passage
/// as `[n]`, or shares no such word with any. Small models (the default
/// 135M one) seldom write the markers the prompt asks for; this keeps
/// every answer tied to a source the user can check, and `--json` says
/// when ask, not the model, made the citation.
fn attribute(answer: &str, passages: &[&str]) -> Option<usize> {
    if (1..=passages.len()).any(|n| answer.contains(&format!("[{n}]"))) {
        return None;
    }
    const STOP: [&str; 24] = [
        "the", "and", "for", "that", "this", "with", "are", "was", "were", "from", "which", "not", "but", "you", "your",
        "have", "has", "had", "will", "can", "its", "their", "there", "answer",
    ];
    let words = |t: &str| -> std::collections::HashSet<String> {
        t.split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .filter(|w| (w.chars().count() >= 3 && !STOP.contains(&w.as_str())) || w.chars().any(|c| c.is_ascii_digit()))
            .collect()
    };
    let said = words(answer);
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, words(p).intersection(&said).count()))
        .filter(|&(_, shared)| shared > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(n, _)| n)
}

/// A passage's place as the model reads it: the file's name, not the
/// folders above it. The prompt, and so a greedy answer, is then the same
/// wherever the files live, and a deep path costs the context no tokens;
/// the sources printed after the answer keep the full path.
fn prompt_location(hit: &Hit) -> String {
    let name = std::path::Path::new(&hit.path).file_name().map(|n| n.to_string_lossy().into_owned());
    location(&Hit { path: name.unwrap_or_else(|| hit.path.clone()), ..hit.clone() })
}

/// The user message: numbered passages, then the question.
fn user_message(hits: &[Hit], question: &str) -> String {
    let mut out = String::from("Context:\n\n");
    for (i, hit) in hits.iter().enumerate() {
        out.push_str(&format!("[{}] {}\n{}\n\n", i + 1, prompt_location(hit), hit.text.trim()));
    }
    out.push_str(&format!("{INSTRUCTION}\n\nQuestion: {question}"));
    out
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
        // The question's vector is used in every mode: BM25 hits get their
        // cosine similarity from it, so --min-score means the same thing.
        let vector = embedder.embed_query(&question)?;
        let req = Request { text: &question, vector: Some(&vector), k: self.limit, mode: self.mode.into(), filter: &filter };
        let mut hits = rt.block_on(store.search(&req))?;
        hits.retain(|h| h.similarity.is_none_or(|s| s >= self.min_score));
        let retrieval_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(embedder);

        let model_path = self.gen.model.clone().unwrap_or_else(|| cfg.model.clone());
        if hits.is_empty() {
            let msg = "No passage in the index is relevant to this question, so there is nothing to answer from.";
            return self.finish(None, &[], &model_path.display().to_string(), retrieval_ms, None, msg);
        }
        if self.context_only {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", user_message(&hits, &question))?;
            return Ok(Exit::Success);
        }

        let mut model = Generator::load(&model_path).context("cannot load the answer model")?;
        // Fit the passages into the context window: room is kept for the
        // answer, whole passages only, lowest-ranked dropped first.
        let budget = model.context_length().saturating_sub(self.gen.max_tokens.min(model.context_length() / 2));
        while hits.len() > 1 {
            let prompt = model.chat_prompt(SYSTEM, &user_message(&hits, &question))?;
            if model.count_tokens(&prompt)? < budget {
                break;
            }
            hits.pop();
        }
        let prompt = model.chat_prompt(SYSTEM, &user_message(&hits, &question))?;
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
        let texts: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();
        let attributed = answer.as_deref().and_then(|a| attribute(a, &texts));
        let mut out = std::io::stdout().lock();
        let sources: Vec<Source> = hits
            .iter()
            .enumerate()
            .map(|(i, h)| Source {
                n: i + 1,
                path: &h.path,
                location: location(h),
                line_start: h.line_start,
                line_end: h.line_end,
                page: h.page,
                score: h.score,
                similarity: h.similarity,
                text: &h.text,
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

#[cfg(test)]
mod tests {
    use super::attribute;

    #[test]
    fn cites_the_passage_that_shares_the_answers_words() {
        let passages = ["The council met in May.", "Drip irrigation got 2,400 euros from the council budget.", "Bread bakes for 40 minutes."];
        assert_eq!(attribute("The council approved 2,400 euros for drip irrigation.", &passages), Some(2));
        // A tie goes to the better-ranked passage; stop words do not count.
        assert_eq!(attribute("The council did.", &passages), Some(1));
        assert_eq!(attribute("Bake it for 40 minutes.", &passages), Some(3));
        assert_eq!(attribute("It took 400 days.", &passages), None, "400 is not 2,400");
    }

    #[test]
    fn leaves_answers_that_cite_or_share_nothing() {
        let passages = ["Drip irrigation got 2,400 euros.", "Bread bakes for 40 minutes."];
        assert_eq!(attribute("It got 2,400 euros [1].", &passages), None);
        assert_eq!(attribute("I do not know.", &passages), None);
    }
}
