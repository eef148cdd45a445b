//! Answering from an index: the passages for a question, as the model
//! reads them, and a model's text streamed out as it is generated.

use std::sync::atomic::{AtomicBool, Ordering};

use ask_model::prompt::{self, Layout, Passage as PromptPassage};
use ask_model::{Embedder, Generator, ModelError, SamplingParams, Timings};
use ask_store::{Filter, Hit, Mode, Passage, Request, Store, StoreError};
use tokio::runtime::Runtime;

/// The least cosine similarity to the question a passage needs to be
/// answered from (`ask query --min-score`, and every other caller).
pub const MIN_SCORE: f32 = 0.2;

/// How passages are chosen for a question.
pub struct Search<'a> {
    /// Passages to retrieve.
    pub k: usize,
    /// The ranking.
    pub mode: Mode,
    /// Which passages may be returned.
    pub filter: &'a Filter,
    /// Passages less similar to the question than this are dropped.
    pub min_score: f32,
}

/// The passages to answer `question` from, best first. `vector` is the
/// question's embedding (`Embedder::embed_query`), used in every mode:
/// BM25 hits get their cosine similarity from it, so `min_score` means the
/// same thing whatever the mode.
pub fn retrieve(rt: &Runtime, store: &Store, question: &str, vector: &[f32], search: &Search) -> Result<Vec<Hit>, StoreError> {
    let req = Request { text: question, vector: Some(vector), k: search.k, mode: search.mode, filter: search.filter };
    let mut hits = rt.block_on(store.search(&req))?;
    hits.retain(|h| h.similarity.is_none_or(|s| s >= search.min_score));
    Ok(hits)
}

/// `path:12-30`, or `path:12` for one line, with the page for paged
/// formats; for mail, the message's subject, sender and date, then the file
/// and the message's place in it.
pub fn location(p: &Passage) -> String {
    if let Some(m) = &p.message {
        let mut head = format!("\"{}\"", m.subject.as_deref().unwrap_or("(no subject)"));
        if let Some(from) = &m.from {
            head.push_str(&format!(" from {from}"));
        }
        if let Some(date) = &m.date_rfc3339 {
            head.push_str(&format!(", {}", short_date(date)));
        }
        let key = if m.key.starts_with('#') { format!("message {}", m.key) } else { format!("<{}>", m.key) };
        return format!("{head} ({} {key})", p.path);
    }
    let lines = if p.line_start == p.line_end { format!("{}", p.line_start) } else { format!("{}-{}", p.line_start, p.line_end) };
    match p.page {
        Some(page) => format!("{} (page {page}, lines {lines})", p.path),
        None => format!("{}:{lines}", p.path),
    }
}

/// `2024-03-05T14:30:00+01:00` → `2024-03-05 14:30`: a message's date on
/// the sender's clock, to the minute.
pub fn short_date(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}

/// Every run of whitespace, line breaks included, as one space.
pub fn fold_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A passage's place as the model reads it: the file's name, not the
/// folders above it. The prompt, and so a greedy answer, is then the same
/// wherever the files live, and a deep path costs the context no tokens;
/// the sources printed after the answer keep the full path.
fn prompt_location(p: &Passage) -> String {
    let name = std::path::Path::new(&p.path).file_name().map(|n| n.to_string_lossy().into_owned());
    location(&Passage { path: name.unwrap_or_else(|| p.path.clone()), ..p.clone() })
}

/// The passages as the model reads them.
pub fn passages(hits: &[Hit]) -> Vec<PromptPassage> {
    hits.iter().map(|h| PromptPassage { heading: prompt_location(&h.passage), text: h.passage.text.clone() }).collect()
}

/// `passages` as the model reads them: with a `budget` (the encoder's
/// tokens) they do not fit, only the sentences that bear most on the
/// question ([`prompt::select`]), each scored by its cosine similarity to
/// the question's embedding `q` in the encoder that retrieved them.
pub fn focus(embedder: &Embedder, q: &[f32], passages: Vec<PromptPassage>, budget: usize) -> Result<Vec<PromptPassage>, ModelError> {
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

/// Why a streamed generation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The text could not be written out (a closed pipe, a full disk).
    #[error("cannot write the model's text: {0}")]
    Write(#[from] std::io::Error),
}

/// Generates from `prompt`, handing each piece of text to `out` as soon as
/// it is decoded. Stops early, keeping the text so far, when `stop` is set
/// (Ctrl-C); stops with the error when `out` fails. Returns the whole text
/// and the timings.
pub fn stream(
    model: &mut Generator,
    prompt: &str,
    params: &SamplingParams,
    stop: &AtomicBool,
    out: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<(String, Timings), StreamError> {
    let mut text = String::new();
    let mut failed = None;
    let timings = model.generate(prompt, params, |piece| {
        text.push_str(piece);
        if let Err(e) = out(piece) {
            failed = Some(e);
            return false;
        }
        !stop.load(Ordering::SeqCst)
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok((text, timings)),
    }
}

/// An answer to `question` from `hits` as the model reads them (`shown`,
/// from [`passages`] or [`focus`]) in the prompt `layout`: the passages that fit the model's
/// context with room for `params.max_tokens` (whole passages, lowest
/// ranked dropped first: `hits` is cut to them), the model's text streamed
/// to `out`, and ask's citation when the model cited none.
pub fn answer(
    model: &mut Generator,
    hits: &mut Vec<Hit>,
    shown: &[PromptPassage],
    question: &str,
    layout: Layout,
    params: &SamplingParams,
    stop: &AtomicBool,
    out: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Answer, StreamError> {
    let (prompt, kept) = prompt::fit(model, shown, question, params.max_tokens, layout)?;
    hits.truncate(kept);
    let (text, timings) = stream(model, &prompt, params, stop, out)?;
    let texts: Vec<&str> = hits.iter().map(|h| h.passage.text.as_str()).collect();
    let text = text.trim().to_owned();
    let attributed = prompt::attribute(&text, &texts);
    Ok(Answer { text, attributed, timings })
}

/// What [`answer`] made.
#[derive(Debug)]
pub struct Answer {
    /// The model's text, trimmed.
    pub text: String,
    /// The passage ask cites for the model when it cited none itself.
    pub attributed: Option<usize>,
    /// Counts and rates.
    pub timings: Timings,
}

impl Answer {
    /// The text with ask's citation, if any, after it.
    pub fn cited(&self) -> String {
        match self.attributed {
            Some(n) => format!("{} [{n}]", self.text),
            None => self.text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ask_store::{Kind, Mail};

    fn passage(page: Option<u32>, a: u32, b: u32) -> Passage {
        Passage { path: "/d/f".into(), chunk: 0, kind: Kind::Text, text: String::new(), line_start: a, line_end: b, page, message: None }
    }

    #[test]
    fn locations_read_like_grep() {
        assert_eq!(location(&passage(None, 3, 9)), "/d/f:3-9");
        assert_eq!(location(&passage(None, 4, 4)), "/d/f:4");
        assert_eq!(location(&passage(Some(2), 1, 5)), "/d/f (page 2, lines 1-5)");
    }

    #[test]
    fn mail_locations_name_subject_sender_and_date() {
        let mut p = passage(None, 1, 4);
        p.message = Some(Mail {
            key: "abc@x".into(),
            subject: Some("Deposit".into()),
            from: Some("Zoë <zoe@example.org>".into()),
            date_rfc3339: Some("2024-03-05T14:30:00+01:00".into()),
            message_id: Some("abc@x".into()),
            ..Default::default()
        });
        assert_eq!(location(&p), "\"Deposit\" from Zoë <zoe@example.org>, 2024-03-05 14:30 (/d/f <abc@x>)");
        p.message = Some(Mail { key: "#3".into(), ..Default::default() });
        assert_eq!(location(&p), "\"(no subject)\" (/d/f message #3)");
    }

    #[test]
    fn the_model_reads_file_names_not_folders() {
        let hit = Hit { passage: Passage { path: "/home/me/deep/notes.md".into(), ..passage(None, 2, 3) }, score: 1.0, similarity: None };
        let shown = passages(&[hit]);
        assert_eq!(shown[0].heading, "notes.md:2-3");
    }
}
