//! `ask summarize FILE|-`: a summary of one document or of standard input.
//!
//! Text that fits the model's context is summarized in one pass. Longer
//! text is cut into pieces that fit (on paragraph and sentence boundaries,
//! by the model's own tokenizer), each piece is summarized, and the
//! pieces' summaries are combined; if even those do not fit, they are
//! summarized again the same way (map-reduce).

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ask_ingest::chunk::Chunker;
use ask_ingest::extract::{self, Document};
use ask_ingest::Kind;
use ask_model::{Generator, SamplingParams};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::SummarizeArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

const SYSTEM: &str = "You are a helpful assistant that summarizes documents faithfully.";
/// Small models follow an instruction best when it comes after the text.
const KEEP: &str = "Keep names, dates, numbers and decisions.";
/// For mail, the reader wants to know who said what.
const KEEP_MAIL: &str = "Say who wrote what, and keep names, dates, numbers and decisions.";
/// Tokens kept for the chat template and the instructions around a piece.
const PROMPT_OVERHEAD: usize = 160;
/// Longest summary of one piece in the map step.
const PIECE_SUMMARY_TOKENS: usize = 200;
/// Mail of at most this many messages is summarized message by message,
/// each summary headed by its sender and date from the headers (a digest),
/// before the overall summary; more messages go through plain map-reduce.
const DIGEST_MAX_MESSAGES: usize = 30;
/// Longest summary of one message in a digest.
const MESSAGE_SUMMARY_TOKENS: usize = 80;
/// Longest piece; shorter than the context allows, because a small model
/// summarizes 1,500 tokens better than 3,500 and prefill grows with length.
const MAX_PIECE_TOKENS: usize = 1536;

#[derive(Serialize, Default)]
struct JsonTimings {
    seconds: f64,
    prompt_tokens: usize,
    generated_tokens: usize,
}

/// One message's line of a mail digest.
#[derive(Serialize)]
struct MessageSummary {
    from: Option<String>,
    date: Option<String>,
    subject: Option<String>,
    summary: String,
}

impl MessageSummary {
    /// `- Name <addr>, 2024-03-05 14:30, "Subject": summary`
    fn line(&self) -> String {
        let mut head = self.from.clone().unwrap_or_else(|| "(unknown sender)".into());
        if let Some(d) = &self.date {
            head.push_str(&format!(", {}", super::search::short_date(d)));
        }
        if let Some(s) = &self.subject {
            head.push_str(&format!(", \"{s}\""));
        }
        // One line per message, whatever lists the model wrote.
        format!("- {head}: {}", super::search::fold_whitespace(&self.summary))
    }
}

#[derive(Serialize)]
struct JsonSummary {
    summary: String,
    /// Mail of a few messages: each message's summary with its headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    digest: Vec<MessageSummary>,
    input: String,
    /// Pieces summarized separately (1 when the text fitted at once).
    pieces: usize,
    /// Mail messages summarized (after --since, --until, --from); absent for other input.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<usize>,
    model: String,
    timings: JsonTimings,
}

/// Reads the input and turns it into documents (one, or one per message
/// for mail), whatever its format; returns its kind, the documents `keep`
/// admits and how many documents it held. An mbox file is read a message
/// at a time and only the admitted messages are held, so choosing last
/// week's mail from a mailbox of gigabytes costs one pass, not gigabytes
/// of memory.
fn read_input(input: &Path, keep: &dyn Fn(&Document) -> bool) -> Result<(Kind, Vec<Document>, usize)> {
    if input != Path::new("-") && ask_ingest::kind::is_mbox_file(input) {
        let file = std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
        let mut total = 0;
        let docs: Vec<Document> = extract::mbox_messages(std::io::BufReader::new(file), u64::MAX)
            .inspect(|_| total += 1)
            .filter(|d| keep(d))
            .collect();
        if total == 0 {
            bail!("cannot extract text from {}: {}", input.display(), extract::ExtractError::NoMessage);
        }
        return Ok((Kind::Mail, docs, total));
    }
    let (bytes, kind) = if input == Path::new("-") {
        if std::io::stdin().is_terminal() {
            bail!("nothing on standard input: pipe text in (git log | ask summarize -) or name a file");
        }
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
        let Some(kind) = ask_ingest::kind::sniff(&bytes) else {
            bail!("standard input is binary data, not text ask can summarize");
        };
        (bytes, kind)
    } else {
        let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
        let kind = match ask_ingest::kind::classify(input, &bytes) {
            Ok(Some(kind)) => kind,
            Ok(None) => bail!(
                "{}: not a format ask can read (text, Markdown, code, HTML, PDF, mail, DOCX, ODT, EPUB)",
                input.display()
            ),
            Err(why) => bail!("{}: {why}", input.display()),
        };
        (bytes, kind)
    };
    let docs = extract::extract(kind, &bytes).with_context(|| format!("cannot extract text from {}", input.display()))?;
    let total = docs.len();
    Ok((kind, docs.into_iter().filter(|d| keep(d)).collect(), total))
}

impl SummarizeArgs {
    /// The messages chosen by --since, --until and --from (all of them
    /// without those flags), read from the input; an error for input that
    /// is not mail, or when no message is chosen.
    fn read_chosen(&self) -> Result<(Kind, Vec<Document>)> {
        let filter = self.when.resolve(&jiff::Zoned::now())?;
        let admits = |d: &Document| filter.is_empty() || d.mail.as_ref().is_some_and(|m| filter.admits(m.date_ns(), m.from.as_deref()));
        let (kind, docs, total) = read_input(&self.input, &admits)?;
        if filter.is_empty() {
            return Ok((kind, docs));
        }
        if kind != Kind::Mail {
            bail!("{}: --since, --until and --from choose e-mail messages, and this is not mail", self.input.display());
        }
        if docs.is_empty() {
            bail!("{}: none of its {total} messages matches --since, --until and --from", self.input.display());
        }
        Ok((kind, docs))
    }
}

/// One model, its sampling settings, and what the run has spent so far.
struct Summarizer<'a> {
    model: Generator,
    params: SamplingParams,
    interrupted: &'a AtomicBool,
    timings: JsonTimings,
}

impl Summarizer<'_> {
    /// Generates from one user message; `stream` receives each piece of text.
    fn run(&mut self, user: &str, max_tokens: usize, mut stream: impl FnMut(&str) -> Result<()>) -> Result<String> {
        let prompt = self.model.chat_prompt(SYSTEM, user)?;
        let params = SamplingParams { max_tokens, ..self.params.clone() };
        let mut text = String::new();
        let mut failed = None;
        let t = self.model.generate(&prompt, &params, |piece| {
            text.push_str(piece);
            if let Err(e) = stream(piece) {
                failed = Some(e);
                return false;
            }
            !self.interrupted.load(Ordering::SeqCst)
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.timings.prompt_tokens += t.prompt_tokens;
        self.timings.generated_tokens += t.generated_tokens;
        Ok(text.trim().to_owned())
    }

    fn stopped(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

impl Run for SummarizeArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let started = Instant::now();
        let (kind, docs) = self.read_chosen()?;
        // Messages are kept apart by a rule, each starting with its own headers.
        let text: String = docs
            .iter()
            .map(Document::text)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n---\n\n");
        let keep = if kind == Kind::Mail { KEEP_MAIL } else { KEEP };
        let messages = (kind == Kind::Mail).then_some(docs.len());
        if text.trim().is_empty() {
            bail!("{}: no text to summarize", self.input.display());
        }
        let ui = Ui::new(cfg.quiet, false);
        let model_path = cfg.answer_model(self.gen.model.as_deref())?;
        let spinner = ui.spinner("loading the model");
        let model = Generator::load(&model_path).context("cannot load the summary model")?;
        spinner.finish_and_clear();
        let interrupted = super::interrupt_flag(rt);
        let context = model.context_length();
        let mut s = Summarizer { model, params: self.gen.sampling(), interrupted: &interrupted, timings: JsonTimings::default() };
        let final_tokens = self.gen.max_tokens.min(context / 2);
        let piece_tokens = context.saturating_sub(PROMPT_OVERHEAD + final_tokens.max(PIECE_SUMMARY_TOKENS)).min(MAX_PIECE_TOKENS).max(64);
        // A piece's summary is at most a quarter of the piece, so every
        // round shrinks the text and the loop below ends, even for models
        // with a small context.
        let summary_tokens = PIECE_SUMMARY_TOKENS.min(piece_tokens / 4).max(16);

        // Mail of a few messages: one summary per message, attributed by
        // ask from the headers rather than left to the model.
        let mut body = text;
        let mut pieces = 1;
        let mut level = 0;
        let mut digest = Vec::new();
        if kind == Kind::Mail && docs.len() > 1 && docs.len() <= DIGEST_MAX_MESSAGES {
            let chunker = Chunker::new(s.model.tokenizer().clone(), piece_tokens, 0).context("cannot split the text")?;
            let bar = ui.bar(docs.len() as u64, "messages");
            for doc in &docs {
                // A message longer than a piece is summarized from its first piece.
                let Some(first) = chunker.chunk(Kind::Mail, doc).into_iter().next() else { continue };
                let user = format!("E-mail:\n\n{}\n\nSummarize this e-mail in one or two sentences.", first.text);
                let summary = s.run(&user, MESSAGE_SUMMARY_TOKENS.min(summary_tokens), |_| Ok(()))?;
                let mail = doc.mail.clone().unwrap_or_default();
                digest.push(MessageSummary { from: mail.from, date: mail.date_rfc3339, subject: mail.subject, summary });
                bar.inc(1);
                if s.stopped() {
                    break;
                }
            }
            bar.finish_and_clear();
            pieces = digest.len();
            body = digest.iter().map(MessageSummary::line).collect::<Vec<_>>().join("\n");
            level = 1;
        }

        // Map: summarize piece by piece until the whole fits in one prompt.
        while s.model.count_tokens(&body)? > piece_tokens && !s.stopped() {
            let chunker = Chunker::new(s.model.tokenizer().clone(), piece_tokens, 0).context("cannot split the text")?;
            let doc = Document::plain(body.clone(), false);
            let parts = chunker.chunk(if level == 0 { kind } else { Kind::Text }, &doc);
            if level == 0 {
                pieces = parts.len();
            }
            let bar = ui.bar(parts.len() as u64, "pieces");
            let mut summaries = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let user = format!(
                    "This is part {} of {} of a longer text:\n\n{}\n\nSummarize this part in a few sentences. {keep}",
                    i + 1,
                    parts.len(),
                    part.text
                );
                summaries.push(s.run(&user, summary_tokens, |_| Ok(()))?);
                bar.inc(1);
                if s.stopped() {
                    break;
                }
            }
            bar.finish_and_clear();
            // Plain bullets: small models copy "Part 2:" labels into the result.
            body = summaries.iter().map(|t| format!("- {t}")).collect::<Vec<_>>().join("\n");
            level += 1;
        }

        // Reduce (or the whole text when it fitted): streamed to stdout.
        let user = if level == 0 {
            format!("Text:\n\n{body}\n\nSummarize the text above in a few sentences. {keep}")
        } else if !digest.is_empty() {
            format!("These are summaries of e-mails, each after its sender, date and subject:\n\n{body}\n\nSummarize the whole exchange in a few sentences. {keep}")
        } else {
            format!("These are summaries of the consecutive parts of one text:\n\n{body}\n\nCombine them into one summary of the whole text in a few sentences. {keep}")
        };
        let mut out = std::io::stdout().lock();
        if !self.json && !digest.is_empty() {
            for m in &digest {
                writeln!(out, "{}", m.line())?;
            }
            writeln!(out)?;
            out.flush()?;
        }
        let summary = if s.stopped() {
            String::new()
        } else {
            let json = self.json;
            s.run(&user, final_tokens, |piece| {
                if !json {
                    out.write_all(piece.as_bytes())?;
                    out.flush()?;
                }
                Ok(())
            })?
        };
        if self.json {
            s.timings.seconds = started.elapsed().as_secs_f64();
            let json = JsonSummary {
                summary,
                digest,
                input: self.input.display().to_string(),
                pieces,
                messages,
                model: s.model.name.clone(),
                timings: s.timings,
            };
            serde_json::to_writer(&mut out, &json)?;
        }
        writeln!(out)?;
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("ask: interrupted");
            return Ok(Exit::Interrupted);
        }
        Ok(Exit::Success)
    }
}
