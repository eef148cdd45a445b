//! Answering from an index: the passages for a question, as the model
//! reads them, and a model's text streamed out as it is generated.
//! [`Answering`] is the one way every surface (`ask query`, `ask chat`,
//! `ask eval`, `ask serve`, `ask mcp`) does it: retrieve, focus, prompt,
//! generate, cite.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::conversation::{searched_for, Exchange, FollowUp};
use crate::prompt::{self, Excerpt, Layout};
use ask_embed::Embedder;
use ask_engine::{Generator, ModelError, SamplingParams, Timings};
use ask_store::{Filter, Hit, Mode, Passage, PathKey, Query, Request, Span, Store, StoreError};

/// The least cosine similarity to the question a passage needs to be
/// answered from (`ask query --min-score`, and every other caller).
pub const MIN_SCORE: f32 = 0.2;

/// The longest answer, in tokens, when none is asked for: the same for
/// `ask query`, `ask chat`, `ask serve` and `ask mcp`.
pub const ANSWER_TOKENS: usize = 384;

/// The reply when no passage is relevant to a question: nothing is
/// generated.
pub const NOTHING: &str = "No passage in the index is relevant to this question, so there is nothing to answer from.";

/// Chunks on each side of a retrieved one that the model reads with it
/// (`ask query --neighbours`, and every other caller).
pub const NEIGHBOURS: u32 = 0;

/// How a question is answered, with one set of defaults for every
/// surface: which passages are retrieved, how much of them the model reads,
/// how they are laid out, and what a follow-up is searched for.
#[derive(Debug, Clone, PartialEq)]
pub struct Answering {
    /// Passages to retrieve.
    pub k: usize,
    /// The ranking.
    pub mode: Mode,
    /// Passages less similar to the question than this are dropped.
    pub min_score: f32,
    /// Chunks on each side of each passage joined to it ([`widen`]).
    pub neighbours: u32,
    /// About how many tokens of the passages the model reads ([`focus`];
    /// 0: whole passages).
    pub passage_tokens: usize,
    /// How the prompt lays out the passages and the question.
    pub layout: Layout,
    /// What a follow-up is searched for.
    pub follow_up: FollowUp,
}

impl Default for Answering {
    fn default() -> Answering {
        Answering {
            k: 5,
            mode: Mode::Hybrid,
            min_score: MIN_SCORE,
            neighbours: NEIGHBOURS,
            passage_tokens: prompt::PASSAGE_TOKENS,
            layout: Layout::default(),
            follow_up: FollowUp::default(),
        }
    }
}

/// The passages a question is answered from.
#[derive(Debug, Clone)]
pub struct Grounds {
    /// The passages found, best first; none means nothing to answer from
    /// ([`NOTHING`]).
    pub hits: Vec<Hit>,
    /// The passages as the model reads them.
    pub shown: Vec<Excerpt>,
}

/// Why the passages for a question could not be found. Each keeps the
/// error below it as its source.
#[derive(Debug, thiserror::Error)]
pub enum GroundError {
    /// The encoder failed, or the answer model rewriting a follow-up.
    #[error("cannot read the question")]
    Model(#[from] ModelError),
    /// The index could not be searched.
    #[error("cannot search the index")]
    Store(#[from] StoreError),
}

impl Answering {
    /// The search this asks for, over the passages `filter` lets through.
    fn search<'a>(&self, filter: &'a Filter) -> Search<'a> {
        Search { k: self.k, mode: self.mode, filter, min_score: self.min_score, neighbours: self.neighbours }
    }

    /// The passages to answer `question` from, after the earlier turns of
    /// its conversation (`history`, oldest first): what it is searched for
    /// ([`searched_for`]; `model` rewrites a follow-up when [`FollowUp::Rewrite`]
    /// is asked for), the passages retrieved for that, and the sentences
    /// of them that bear most on it.
    pub async fn ground(
        &self,
        store: &Store,
        embedder: &Embedder,
        filter: &Filter,
        history: &[Exchange],
        question: &str,
        model: Option<&mut Generator>,
    ) -> Result<Grounds, GroundError> {
        let searched = Embedded::new(Some(embedder), &searched_for(history, question, self.follow_up, model)?)?;
        let hits = retrieve(store, &searched, &self.search(filter)).await?;
        let vector = searched.vector.as_deref().expect("embedded by the encoder given");
        let shown = focus(embedder, vector, passages(&hits), self.passage_tokens)?;
        Ok(Grounds { hits, shown })
    }

    /// Makes `model` ready for the next question after `history` (its
    /// conversation's earlier turns, oldest first): the prompt's opening
    /// kept in the folder `openings` ([`Generator::keep_opening`]), and the
    /// earlier turns read into the KV cache ([`Generator::prefill`]), so
    /// that the question's prefill starts at its passages. Worth calling
    /// while the question is searched, or typed. A history over a quarter
    /// of the context, which the prompt may not keep whole, is left to it.
    pub fn ready(&self, model: &mut Generator, history: &[Exchange], openings: &Path) -> Result<(), ModelError> {
        let first = prompt::opening(model, self.layout)?;
        model.keep_opening(&first, openings)?;
        if history.is_empty() {
            model.prefill(&first)?;
            return Ok(());
        }
        let opening = prompt::opening_after(model, history, self.layout)?;
        if model.count_tokens(&opening)? <= model.context_length() / 4 {
            model.prefill(&opening)?;
        }
        Ok(())
    }

    /// The answer to `question` from `grounds` ([`answer`]): the passages
    /// that did not fit the model's context are dropped from them.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        model: &mut Generator,
        grounds: &mut Grounds,
        history: &[Exchange],
        question: &str,
        params: &SamplingParams,
        stop: &AtomicBool,
        out: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> Result<Answer, StreamError> {
        answer(model, &mut grounds.hits, &grounds.shown, history, question, self.layout, params, stop, out)
    }
}

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
    /// Chunks on each side of each passage joined to it ([`widen`]).
    pub neighbours: u32,
}

/// A query's text with what an encoder made of it: its embedding and how
/// much of it the encoder reads as words ([`Embedder::reading`], which
/// hybrid search weighs the dense list by), which travel together into
/// the store's [`Query`].
#[derive(Debug, Clone)]
pub struct Embedded {
    /// What is searched for.
    pub text: String,
    /// Its embedding, when an encoder was given.
    pub vector: Option<Vec<f32>>,
    /// The share of it the encoder reads (1 without one).
    pub reading: f32,
}

impl Embedded {
    /// `text` as a query, embedded by `encoder` when one is given (a caller
    /// whose ranking needs no vector may give none).
    pub fn new(encoder: Option<&Embedder>, text: &str) -> Result<Embedded, ModelError> {
        let (vector, reading) = match encoder {
            Some(e) => (Some(e.embed_query(text)?), e.reading(text)),
            None => (None, 1.0),
        };
        Ok(Embedded { text: text.to_owned(), vector, reading })
    }

    /// The store's query ranking it by `mode`; None when the mode needs
    /// the vector and there is none.
    pub fn query(&self, mode: Mode) -> Option<Query<'_>> {
        Some(Query::of(mode, &self.text, self.vector.as_deref())?.reading(self.reading))
    }
}

/// The passages to answer a question from, best first, searched for as
/// `searched` (which an encoder embedded: the vector is used in every
/// mode, since BM25 hits get their cosine similarity from it, so
/// `min_score` means the same thing whatever the mode).
pub async fn retrieve(store: &Store, searched: &Embedded, search: &Search<'_>) -> Result<Vec<Hit>, StoreError> {
    let query = searched.query(search.mode).filter(|_| searched.vector.is_some()).expect("retrieve is given an embedded question");
    let req = Request { query, k: search.k, filter: search.filter };
    let mut hits = store.search(&req).await?;
    hits.retain(|h| h.similarity.is_none_or(|s| s >= search.min_score));
    if search.neighbours == 0 || hits.is_empty() {
        return Ok(hits);
    }
    let n = search.neighbours;
    let wanted: Vec<(&str, u32, u32)> =
        hits.iter().map(|h| (h.passage.path.as_str(), h.passage.chunk.saturating_sub(n), h.passage.chunk.saturating_add(n))).collect();
    let spans = store.spans(&wanted).await?;
    Ok(widen(hits, spans, n))
}

/// Each hit joined with up to `n` stored chunks on each side (`spans`),
/// best hit first: the text around a small chunk that matched, as one
/// passage, its lines those of the whole. A neighbour is joined only from
/// the same section, page and message, and only once: a hit already shown
/// inside a better one's passage is dropped, and the passages keep their
/// order. Consecutive chunks overlap (`ask index --chunk-overlap`); their
/// byte ranges tell how much, and the shared text is read once.
pub fn widen(hits: Vec<Hit>, spans: Vec<Span>, n: u32) -> Vec<Hit> {
    let spans: HashMap<(PathKey, u32), Span> = spans.into_iter().map(|s| ((s.passage.path.clone(), s.passage.chunk), s)).collect();
    let mut shown: HashSet<(PathKey, u32)> = HashSet::new();
    let mut out = Vec::with_capacity(hits.len());
    for mut hit in hits {
        let (path, c) = (hit.passage.path.clone(), hit.passage.chunk);
        if shown.contains(&(path.clone(), c)) {
            continue;
        }
        shown.insert((path.clone(), c));
        // The row as read for its neighbours must be the one retrieved (the
        // file may have been indexed again in between).
        let Some(own) = spans.get(&(path.clone(), c)).filter(|s| s.passage.text == hit.passage.text) else {
            out.push(hit);
            continue;
        };
        let free = |i: u32| !shown.contains(&(path.clone(), i));
        let span = |i: u32| spans.get(&(path.clone(), i));
        let (mut first, mut last) = (c, c);
        while c - first < n && first > 0 && free(first - 1) && span(first - 1).is_some_and(|s| follows(s, span(first).unwrap())) {
            first -= 1;
        }
        while last - c < n && free(last + 1) && span(last + 1).is_some_and(|s| follows(span(last).unwrap(), s)) {
            last += 1;
        }
        let mut text = span(first).unwrap().passage.text.clone();
        for i in first + 1..=last {
            join(&mut text, span(i - 1).unwrap(), span(i).unwrap());
        }
        for i in first..=last {
            shown.insert((path.clone(), i));
        }
        hit.passage.line_start = span(first).unwrap().passage.line_start;
        hit.passage.line_end = span(last).unwrap().passage.line_end.max(own.passage.line_end);
        hit.passage.text = text;
        out.push(hit);
    }
    out
}

/// Whether `b` is the chunk after `a` in the same stretch of text: the same
/// page and message, and its byte range further on (a section's ranges start
/// again at 0).
fn follows(a: &Span, b: &Span) -> bool {
    let key = |s: &Span| s.passage.message.as_ref().map(|m| m.key.clone());
    a.passage.page == b.passage.page && key(a) == key(b) && b.byte_start > a.byte_start && b.byte_end > a.byte_end
}

/// Appends `b`'s text to `text`, which ends with `a`'s, leaving out what
/// the two share; a gap (the whitespace the chunker trimmed) becomes one
/// line break.
fn join(text: &mut String, a: &Span, b: &Span) {
    if b.byte_start < a.byte_end {
        let shared = (a.byte_end - b.byte_start) as usize;
        if let Some(rest) = b.passage.text.get(shared..) {
            text.push_str(rest);
            return;
        }
    }
    text.push('\n');
    text.push_str(&b.passage.text);
}

/// `path:12-30`, or `path:12` for one line, with the page for paged
/// formats; for mail, the message's subject, sender and date, then the file
/// and the message's place in it.
pub fn location(p: &Passage) -> String {
    place(p.path.as_str(), p)
}

/// [`location`], the file named `file`.
fn place(file: &str, p: &Passage) -> String {
    if let Some(m) = &p.message {
        let mut head = format!("\"{}\"", m.subject.as_deref().unwrap_or("(no subject)"));
        if let Some(from) = &m.from {
            head.push_str(&format!(" from {from}"));
        }
        if let Some(date) = &m.date_rfc3339 {
            head.push_str(&format!(", {}", short_date(date)));
        }
        let key = if m.key.starts_with('#') { format!("message {}", m.key) } else { format!("<{}>", m.key) };
        return format!("{head} ({file} {key})");
    }
    let lines = if p.line_start == p.line_end { format!("{}", p.line_start) } else { format!("{}-{}", p.line_start, p.line_end) };
    match p.page {
        Some(page) => format!("{file} (page {page}, lines {lines})"),
        None => format!("{file}:{lines}"),
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
    let name = std::path::Path::new(p.path.as_str()).file_name().map(|n| n.to_string_lossy());
    place(name.as_deref().unwrap_or(p.path.as_str()), p)
}

/// The passages as the model reads them.
pub fn passages(hits: &[Hit]) -> Vec<Excerpt> {
    hits.iter().map(|h| Excerpt { heading: prompt_location(&h.passage), text: h.passage.text.clone() }).collect()
}

/// `passages` as the model reads them: with a `budget` (the encoder's
/// tokens) they do not fit, only the sentences that bear most on the
/// question ([`prompt::select`]), each scored by its cosine similarity to
/// the question's embedding `q` in the encoder that retrieved them.
pub fn focus(embedder: &Embedder, q: &[f32], passages: Vec<Excerpt>, budget: usize) -> Result<Vec<Excerpt>, ModelError> {
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

/// An answer to `question`, after the earlier turns of its conversation
/// (`history`, oldest first), from `hits` as the model reads them (`shown`,
/// from [`passages`] or [`focus`]) in the prompt `layout`: the passages that fit the model's
/// context with room for `params.max_tokens` (whole passages, lowest
/// ranked dropped first: `hits` is cut to them), the model's text streamed
/// to `out`, and ask's citation when the model cited none.
pub fn answer(
    model: &mut Generator,
    hits: &mut Vec<Hit>,
    shown: &[Excerpt],
    history: &[Exchange],
    question: &str,
    layout: Layout,
    params: &SamplingParams,
    stop: &AtomicBool,
    out: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Answer, StreamError> {
    let (prompt, kept) = prompt::fit(model, history, shown, question, params.max_tokens, layout)?;
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

    #[test]
    fn an_embedded_query_carries_the_encoders_reading_into_hybrid_search_only() {
        let searched = Embedded { text: "السلام".into(), vector: Some(vec![1.0, 0.0]), reading: 0.25 };
        assert!(matches!(searched.query(Mode::Hybrid), Some(Query::Hybrid { reading, .. }) if reading == 0.25));
        assert!(matches!(searched.query(Mode::Dense), Some(Query::Meaning { .. })));
        assert!(matches!(searched.query(Mode::Bm25), Some(Query::Words { text: "السلام", vector: Some(_) })));
        // Without an encoder, only the words can rank it.
        let words = Embedded::new(None, "deposit").unwrap();
        assert_eq!(words.reading, 1.0);
        assert!(words.query(Mode::Bm25).is_some() && words.query(Mode::Dense).is_none() && words.query(Mode::Hybrid).is_none());
    }

    fn passage(page: Option<u32>, a: u32, b: u32) -> Passage {
        Passage { path: PathKey::of("/d/f".as_ref()), chunk: 0, kind: Kind::Text, text: String::new(), line_start: a, line_end: b, page, message: None }
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

    /// Chunks of one file: two sections (the second's byte ranges start
    /// again at 0), the first's chunks overlapping as the chunker makes
    /// them, the second's with a trimmed gap between them.
    fn spans() -> (Vec<Span>, [&'static str; 2]) {
        let sections = ["one two three four five six seven eight", "alpha beta\n\ngamma"];
        let ranges = [(0, 0..13), (0, 8..23), (0, 19..33), (0, 28..39), (1, 0..10), (1, 12..17)];
        let spans = ranges
            .into_iter()
            .enumerate()
            .map(|(i, (sec, r))| Span {
                passage: Passage { chunk: i as u32, text: sections[sec][r.clone()].to_owned(), ..passage(None, 10 * sec as u32 + i as u32, 10 * sec as u32 + i as u32) },
                byte_start: r.start as u64,
                byte_end: r.end as u64,
            })
            .collect();
        (spans, sections)
    }

    fn hit(s: &Span) -> Hit {
        Hit { passage: s.passage.clone(), score: 1.0, similarity: None }
    }

    #[test]
    fn neighbours_join_without_their_overlap_within_a_section() {
        let (spans, [first, second]) = spans();
        let texts = |hits: &[Hit]| hits.iter().map(|h| (h.passage.text.clone(), h.passage.line_start, h.passage.line_end)).collect::<Vec<_>>();
        // One neighbour each side: chunks 1 to 3, as the section reads there.
        let got = widen(vec![hit(&spans[2])], spans.clone(), 1);
        assert_eq!(texts(&got), [(first[8..39].to_owned(), 1, 3)]);
        // A hit inside a better hit's passage is not shown twice; the next
        // takes only neighbours not shown yet (chunk 1 went to chunk 0).
        let got = widen(vec![hit(&spans[0]), hit(&spans[1]), hit(&spans[2])], spans.clone(), 1);
        assert_eq!(texts(&got), [(first[0..23].to_owned(), 0, 1), (first[19..39].to_owned(), 2, 3)]);
        // No neighbour from another section; a gap becomes a line break.
        let got = widen(vec![hit(&spans[4])], spans.clone(), 2);
        assert_eq!(texts(&got), [("alpha beta\ngamma".to_owned(), 14, 15)]);
        assert_eq!(&second[..10], "alpha beta");
        let got = widen(vec![hit(&spans[3])], spans.clone(), 1);
        assert_eq!(texts(&got), [(first[19..39].to_owned(), 2, 3)]);
        // A row that changed since it was retrieved is shown as retrieved.
        let mut stale = hit(&spans[2]);
        stale.passage.text = "five six seven (old)".into();
        assert_eq!(texts(&widen(vec![stale.clone()], spans.clone(), 1)), texts(&[stale]));
        // Nothing to join: as retrieved.
        let want = [hit(&spans[2])];
        assert_eq!(widen(vec![hit(&spans[2])], spans, 0), want);
    }

    #[test]
    fn the_model_reads_file_names_not_folders() {
        let hit = Hit { passage: Passage { path: PathKey::of("/home/me/deep/notes.md".as_ref()), ..passage(None, 2, 3) }, score: 1.0, similarity: None };
        let shown = passages(&[hit]);
        assert_eq!(shown[0].heading, "notes.md:2-3");
    }
}
