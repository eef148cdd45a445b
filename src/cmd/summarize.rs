//! `ask summarize FILE|-`: reads a document, a mailbox or standard input,
//! and prints the summary [`ask_pipeline::summarize`] makes of it.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ask_ingest::extract::{self, Document};
use ask_ingest::Kind;
use ask_engine::Generator;
use ask_pipeline::summarize::{summarize, Headers, MessageSummary, Step, Summarizer};
use serde::Serialize;
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::SummarizeArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::Ui;

#[derive(Serialize, Default)]
struct JsonTimings {
    seconds: f64,
    prompt_tokens: usize,
    generated_tokens: usize,
}

#[derive(Serialize)]
struct JsonSummary {
    summary: String,
    /// Mail of a few messages: each message's summary with its headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    digest: Vec<MessageSummary>,
    /// One e-mail message: its sender, date and subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Headers>,
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

impl Run for SummarizeArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let started = Instant::now();
        let (kind, docs) = self.read_chosen()?;
        if docs.iter().all(|d| d.text().trim().is_empty()) {
            bail!("{}: no text to summarize", self.input.display());
        }
        let ui = Ui::new(cfg.quiet, false);
        let model_path = cfg.answer_model(self.gen.model.as_deref())?;
        let spinner = ui.spinner("loading the model");
        let model = Generator::load(&model_path).context("cannot load the summary model")?;
        spinner.finish_and_clear();
        let interrupted = super::interrupt_flag(rt);
        let mut s = Summarizer { model, params: self.gen.sampling(), stop: &interrupted, prompt_tokens: 0, generated_tokens: 0 };

        let mut out = std::io::stdout().lock();
        let mut bar: Option<indicatif::ProgressBar> = None;
        let json = self.json;
        let outcome = summarize(&mut s, kind, &docs, self.gen.max_tokens, &mut |step| {
            match step {
                Step::Round { what, total } => {
                    bar.replace(ui.bar(total as u64, what)).inspect(|b| b.finish_and_clear());
                }
                Step::Done => bar.iter().for_each(|b| b.inc(1)),
                Step::Heading(headers) if !json => {
                    writeln!(out, "{}\n", headers.line())?;
                    out.flush()?;
                }
                Step::Heading(_) => {}
                Step::Final(digest) => {
                    bar.take().inspect(|b| b.finish_and_clear());
                    if !json && !digest.is_empty() {
                        for m in digest {
                            writeln!(out, "{}", m.line())?;
                        }
                        writeln!(out)?;
                        out.flush()?;
                    }
                }
                Step::Text(piece) if !json => {
                    out.write_all(piece.as_bytes())?;
                    out.flush()?;
                }
                Step::Text(_) => {}
            }
            Ok(())
        })?;
        if self.json {
            let json = JsonSummary {
                summary: outcome.summary,
                digest: outcome.digest,
                message: outcome.message,
                input: self.input.display().to_string(),
                pieces: outcome.pieces,
                messages: (kind == Kind::Mail).then_some(docs.len()),
                model: s.model.name.clone(),
                timings: JsonTimings {
                    seconds: started.elapsed().as_secs_f64(),
                    prompt_tokens: s.prompt_tokens,
                    generated_tokens: s.generated_tokens,
                },
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
