//! A summary of documents that may not fit the model's context.
//!
//! Text that fits is summarized in one pass. Longer text is cut into
//! pieces that fit (on paragraph and sentence boundaries, by the model's
//! own tokenizer), each piece is summarized, and the pieces' summaries are
//! combined; if even those do not fit, they are summarized again the same
//! way (map-reduce). Mail of a few messages is summarized message by
//! message first, each summary headed by its sender and date from the
//! headers (a digest), so attribution is ask's, not the model's.
//!
//! The planner ([`summarize`]) works through the [`Model`] trait, so its
//! rounds are unit-tested with a fake model; [`Summarizer`] is the real
//! one.

use std::sync::atomic::{AtomicBool, Ordering};

use ask_ingest::chunk::{ChunkError, Chunker};
use ask_ingest::{Document, Kind};
use ask_engine::{Generator, ModelError, SamplingParams};
use serde::Serialize;

use crate::answer::{fold_whitespace, short_date, stream, StreamError};

const SYSTEM: &str = "You are a helpful assistant that summarizes documents faithfully.";
/// Small models follow an instruction best when it comes after the text.
const KEEP: &str = "Keep names, dates, numbers and decisions.";
/// For mail, the reader wants to know who said what.
const KEEP_MAIL: &str = "Say who wrote what, and keep names, dates, numbers and decisions.";
/// Tokens kept for the chat template and the instructions around a piece.
const PROMPT_OVERHEAD: usize = 160;
/// Longest summary of one piece in the map step.
const PIECE_SUMMARY_TOKENS: usize = 200;
/// Mail of at most this many messages is summarized message by message
/// (a digest) before the overall summary; more go through plain map-reduce.
const DIGEST_MAX_MESSAGES: usize = 30;
/// Longest summary of one message in a digest.
const MESSAGE_SUMMARY_TOKENS: usize = 80;
/// Longest piece; shorter than the context allows, because a small model
/// summarizes 1,500 tokens better than 3,500 and prefill grows with length.
const MAX_PIECE_TOKENS: usize = 1536;

/// What the planner needs of a model.
pub trait Model {
    /// The context the model is given, in tokens.
    fn context_length(&self) -> usize;
    /// Tokens of `text` in the model's tokenizer.
    fn count_tokens(&self, text: &str) -> Result<usize, SummarizeError>;
    /// `doc` cut into pieces of at most `max_tokens` tokens, on paragraph
    /// and sentence boundaries.
    fn split(&self, kind: Kind, doc: &Document, max_tokens: usize) -> Result<Vec<String>, SummarizeError>;
    /// The model's reply to one user message, of at most `max_tokens`,
    /// each piece of text handed to `out` as it comes.
    fn reply(&mut self, user: &str, max_tokens: usize, out: &mut dyn FnMut(&str) -> std::io::Result<()>) -> Result<String, SummarizeError>;
    /// Whether to stop (Ctrl-C): the summary so far is kept.
    fn stopped(&self) -> bool;
}

/// Why a summary could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// The model failed, or its text could not be written out.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The text could not be split into pieces.
    #[error("cannot split the text: {0}")]
    Split(#[from] ChunkError),
}

impl From<ModelError> for SummarizeError {
    fn from(e: ModelError) -> Self {
        SummarizeError::Stream(e.into())
    }
}

/// The token budgets of one summary, from the model's context and the
/// longest final summary asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Longest piece of text summarized at once.
    pub piece_tokens: usize,
    /// Longest summary of one piece: at most a quarter of a piece, so that
    /// every round shrinks the text and the rounds end.
    pub summary_tokens: usize,
    /// Longest final summary: what was asked, at most half the context.
    pub final_tokens: usize,
}

impl Budget {
    /// The budgets for a model of `context` tokens asked for a summary of
    /// at most `max_tokens`.
    pub fn new(context: usize, max_tokens: usize) -> Budget {
        let final_tokens = max_tokens.min(context / 2);
        let piece_tokens =
            context.saturating_sub(PROMPT_OVERHEAD + final_tokens.max(PIECE_SUMMARY_TOKENS)).min(MAX_PIECE_TOKENS).max(64);
        let summary_tokens = PIECE_SUMMARY_TOKENS.min(piece_tokens / 4).max(16);
        Budget { piece_tokens, summary_tokens, final_tokens }
    }
}

/// Who sent a message, when, and its subject, from its headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Headers {
    /// The sender.
    pub from: Option<String>,
    /// When it was sent (RFC 3339).
    pub date: Option<String>,
    /// The subject.
    pub subject: Option<String>,
}

impl Headers {
    fn of(doc: &Document) -> Headers {
        let mail = doc.mail.clone().unwrap_or_default();
        Headers { from: mail.from, date: mail.date_rfc3339, subject: mail.subject }
    }

    /// `Name <addr>, 2024-03-05 14:30, "Subject"`
    pub fn line(&self) -> String {
        let mut head = self.from.clone().unwrap_or_else(|| "(unknown sender)".into());
        if let Some(d) = &self.date {
            head.push_str(&format!(", {}", short_date(d)));
        }
        if let Some(s) = &self.subject {
            head.push_str(&format!(", \"{s}\""));
        }
        head
    }
}

/// One message's line of a mail digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageSummary {
    /// Its sender, date and subject.
    #[serde(flatten)]
    pub headers: Headers,
    /// The model's summary of the message.
    pub summary: String,
}

impl MessageSummary {
    /// `- Name <addr>, 2024-03-05 14:30, "Subject": summary`
    pub fn line(&self) -> String {
        // One line per message, whatever lists the model wrote.
        format!("- {}: {}", self.headers.line(), fold_whitespace(&self.summary))
    }
}

/// What a summary run made.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The final summary (empty when stopped before it).
    pub summary: String,
    /// For mail of a few messages: each message's summary with its headers.
    pub digest: Vec<MessageSummary>,
    /// For one e-mail message: its headers, which head the summary.
    pub message: Option<Headers>,
    /// Pieces summarized separately (1 when the text fitted at once).
    pub pieces: usize,
}

/// What the planner reports as it goes.
#[derive(Debug)]
pub enum Step<'a> {
    /// A round of `total` items begins ("messages" or "pieces").
    Round {
        /// What is counted.
        what: &'static str,
        /// How many.
        total: usize,
    },
    /// One item of the round is done.
    Done,
    /// The summary of one e-mail message comes next: its headers.
    Heading(&'a Headers),
    /// The final summary comes next, after this digest (empty but for mail
    /// of a few messages).
    Final(&'a [MessageSummary]),
    /// A piece of the final summary's text.
    Text(&'a str),
}

/// Summarizes `docs` (one document, or the messages of a mailbox), of
/// kind `kind`, in at most `max_tokens` tokens.
pub fn summarize(
    model: &mut dyn Model,
    kind: Kind,
    docs: &[Document],
    max_tokens: usize,
    on: &mut dyn FnMut(Step) -> std::io::Result<()>,
) -> Result<Outcome, SummarizeError> {
    let write = |e: std::io::Error| SummarizeError::Stream(StreamError::Write(e));
    let budget = Budget::new(model.context_length(), max_tokens);
    let keep = if kind == Kind::Mail { KEEP_MAIL } else { KEEP };
    // Messages are kept apart by a rule, each starting with its own headers.
    let mut body = docs.iter().map(Document::text).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n\n---\n\n");
    let mut out = Outcome { pieces: 1, ..Default::default() };
    let mut level = 0;

    // Mail of a few messages: one summary per message, attributed by ask
    // from the headers rather than left to the model.
    if kind == Kind::Mail && docs.len() > 1 && docs.len() <= DIGEST_MAX_MESSAGES {
        on(Step::Round { what: "messages", total: docs.len() }).map_err(write)?;
        for doc in docs {
            // A message longer than a piece is summarized from its first piece.
            let Some(first) = model.split(Kind::Mail, doc, budget.piece_tokens)?.into_iter().next() else { continue };
            let user = format!("E-mail:\n\n{first}\n\nSummarize this e-mail in one or two sentences.");
            let summary = model.reply(&user, MESSAGE_SUMMARY_TOKENS.min(budget.summary_tokens), &mut |_| Ok(()))?;
            out.digest.push(MessageSummary { headers: Headers::of(doc), summary });
            on(Step::Done).map_err(write)?;
            if model.stopped() {
                break;
            }
        }
        out.pieces = out.digest.len();
        body = out.digest.iter().map(MessageSummary::line).collect::<Vec<_>>().join("\n");
        level = 1;
    }

    // Map: summarize piece by piece until the whole fits in one prompt.
    while model.count_tokens(&body)? > budget.piece_tokens && !model.stopped() {
        let doc = Document::plain(body.clone(), false);
        let parts = model.split(if level == 0 { kind } else { Kind::Text }, &doc, budget.piece_tokens)?;
        if level == 0 {
            out.pieces = parts.len();
        }
        on(Step::Round { what: "pieces", total: parts.len() }).map_err(write)?;
        let mut summaries = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let user = format!(
                "This is part {} of {} of a longer text:\n\n{part}\n\nSummarize this part in a few sentences. {keep}",
                i + 1,
                parts.len(),
            );
            summaries.push(model.reply(&user, budget.summary_tokens, &mut |_| Ok(()))?);
            on(Step::Done).map_err(write)?;
            if model.stopped() {
                break;
            }
        }
        // Plain bullets: small models copy "Part 2:" labels into the result.
        body = summaries.iter().map(|t| format!("- {t}")).collect::<Vec<_>>().join("\n");
        level += 1;
    }

    // Reduce (or the whole text when it fitted), streamed.
    let user = if level == 0 && kind == Kind::Mail {
        format!("E-mail:\n\n{body}\n\nSummarize this e-mail in a few sentences. {keep}")
    } else if level == 0 {
        format!("Text:\n\n{body}\n\nSummarize the text above in a few sentences. {keep}")
    } else if !out.digest.is_empty() {
        format!("These are summaries of e-mails, each after its sender, date and subject:\n\n{body}\n\nSummarize the whole exchange in a few sentences. {keep}")
    } else {
        format!("These are summaries of the consecutive parts of one text:\n\n{body}\n\nCombine them into one summary of the whole text in a few sentences. {keep}")
    };
    // One message: who sent it and when is ask's to say, from the headers.
    if let [doc] = docs {
        if kind == Kind::Mail {
            let headers = Headers::of(doc);
            on(Step::Heading(&headers)).map_err(write)?;
            out.message = Some(headers);
        }
    }
    on(Step::Final(&out.digest)).map_err(write)?;
    if !model.stopped() {
        out.summary = model.reply(&user, budget.final_tokens, &mut |piece| on(Step::Text(piece)))?;
    }
    Ok(out)
}

/// A GGUF model as the planner's [`Model`], with what it has spent.
pub struct Summarizer<'a> {
    /// The model.
    pub model: Generator,
    /// Its sampling settings (`max_tokens` is set per reply).
    pub params: SamplingParams,
    /// Set to stop (Ctrl-C).
    pub stop: &'a AtomicBool,
    /// Prompt tokens read so far.
    pub prompt_tokens: usize,
    /// Tokens generated so far.
    pub generated_tokens: usize,
}

impl Model for Summarizer<'_> {
    fn context_length(&self) -> usize {
        self.model.context_length()
    }

    fn count_tokens(&self, text: &str) -> Result<usize, SummarizeError> {
        Ok(self.model.count_tokens(text)?)
    }

    fn split(&self, kind: Kind, doc: &Document, max_tokens: usize) -> Result<Vec<String>, SummarizeError> {
        let chunker = Chunker::new(self.model.tokenizer().clone(), max_tokens, 0)?;
        Ok(chunker.chunk(kind, doc).into_iter().map(|c| c.text).collect())
    }

    fn reply(&mut self, user: &str, max_tokens: usize, out: &mut dyn FnMut(&str) -> std::io::Result<()>) -> Result<String, SummarizeError> {
        let prompt = self.model.chat_prompt(SYSTEM, user)?;
        let params = SamplingParams { max_tokens, ..self.params.clone() };
        let (text, t) = stream(&mut self.model, &prompt, &params, self.stop, out)?;
        self.prompt_tokens += t.prompt_tokens;
        self.generated_tokens += t.generated_tokens;
        Ok(text.trim().to_owned())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests;
