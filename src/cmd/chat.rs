//! `ask chat`: questions and follow-ups in one session, the encoder and the
//! answer model loaded once.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use ask_engine::Generator;
use ask_pipeline::answer::{self, Answering, StreamError};
use ask_pipeline::conversation::Exchange;
use ask_pipeline::json::Source;
use ask_store::{Filter, Hit};
use tokio::runtime::Runtime;

use super::query::conversation;
use super::search::open_for_query;
use super::Run;
use crate::cli::ChatArgs;
use crate::config::Config;
use crate::exit::Exit;

const HELP: &str = "Ask a question; a follow-up is read with the conversation so far.
  /sources   the last answer's passages in full
  /new       forget the conversation and start a new one
  /help      this list
Ctrl-C stops an answer being written; Ctrl-D (or /quit) ends the session.";

/// Where questions come from: the terminal, edited with history, or lines
/// of a pipe or file.
enum Input {
    Terminal(Box<rustyline::DefaultEditor>),
    Lines(std::io::StdinLock<'static>),
}

impl Input {
    /// The next question; None at the end (Ctrl-D, end of input).
    fn next(&mut self) -> Result<Option<String>> {
        match self {
            Input::Terminal(editor) => loop {
                match editor.readline("> ") {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.trim());
                        }
                        return Ok(Some(line));
                    }
                    // Ctrl-C at the prompt clears the line, as in a shell.
                    Err(rustyline::error::ReadlineError::Interrupted) => continue,
                    Err(rustyline::error::ReadlineError::Eof) => return Ok(None),
                    Err(e) => return Err(e).context("cannot read the question"),
                }
            },
            Input::Lines(lines) => {
                let mut line = String::new();
                let n = lines.read_line(&mut line).context("cannot read the question from standard input")?;
                Ok((n > 0).then_some(line))
            }
        }
    }
}

impl Run for ChatArgs {
    fn run(&self, cfg: &Config, rt: &Runtime) -> Result<Exit> {
        let (conversations, mut conv) = conversation(cfg, self.talk.conversation.as_deref(), self.talk.continue_last)?;
        let model_path = cfg.answer_model(self.gen.model.as_deref())?;
        let loading = std::thread::spawn(move || Generator::load(&model_path));
        let (store, embedder) = open_for_query(cfg, rt, true)?;
        let embedder = embedder.expect("the encoder was asked for");
        let model = loading.join().expect("the loading thread does not panic").context("cannot load the answer model")?;
        let model_name = model.name.clone();
        let answering = self.passages.answering(self.mode.into(), self.talk.follow.follow_up);
        let mut model = Readied::new(model, &answering, &conv.turns, &cfg.openings());
        let filter = Filter::default();
        let params = self.gen.sampling();

        let terminal = std::io::stdin().is_terminal();
        // On a terminal, Ctrl-C stops the answer being written, not ask.
        let stop = Arc::new(AtomicBool::new(false));
        if terminal {
            // Registered now, before the line editor reads a line: it puts
            // its own SIGINT handler in place while reading and the one it
            // found back after, so a handler installed later (by a task not
            // yet run) was undone and Ctrl-C killed the session.
            let mut interrupts = {
                let _runtime = rt.enter();
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("cannot catch Ctrl-C")?
            };
            let set = stop.clone();
            rt.spawn(async move {
                while interrupts.recv().await.is_some() {
                    set.store(true, Ordering::SeqCst);
                }
            });
        }
        let mut input = if terminal {
            Input::Terminal(Box::new(rustyline::DefaultEditor::new().context("cannot set up line editing")?))
        } else {
            Input::Lines(std::io::stdin().lock())
        };
        if terminal && !cfg.quiet {
            let turns = conv.turns.len();
            let resumed = if turns > 0 { format!(", continuing conversation {} ({turns} turns)", conv.id) } else { String::new() };
            eprintln!("ask chat: index '{}', model {}{resumed}. /help lists the commands; Ctrl-D ends.", cfg.index_name, model_name);
        }
        let links = crate::hyperlink::Links::for_stdout();
        let mut last: Vec<Hit> = Vec::new();
        while let Some(line) = input.next()? {
            let question = line.trim();
            if question.is_empty() {
                continue;
            }
            if terminal && question.starts_with('/') {
                match question {
                    "/help" | "/?" => println!("{HELP}"),
                    "/new" => {
                        let now = super::rfc3339(jiff::Timestamp::now().as_second());
                        conv = conversations.start(&cfg.index_name, &now);
                        model.ready(&answering, &conv.turns, &cfg.openings());
                        last.clear();
                        println!("(a new conversation)");
                    }
                    "/sources" if last.is_empty() => println!("(no sources yet)"),
                    "/sources" => {
                        for s in Source::all(&last) {
                            println!("[{}] {}\n{}\n", s.n, links.wrap(&s.location, s.path, s.line_start), s.text.trim());
                        }
                    }
                    "/quit" | "/exit" => break,
                    other => println!("{other}: not a command; /help lists them"),
                }
                continue;
            }
            stop.store(false, Ordering::SeqCst);
            let history = conv.turns.clone();
            let generator = model.get();
            let mut grounds = rt.block_on(answering.ground(&store, &embedder, &filter, &history, question, Some(&mut *generator)))?;
            let mut out = std::io::stdout().lock();
            if grounds.hits.is_empty() {
                writeln!(out, "{}\n", answer::NOTHING)?;
                conv.turns.push(Exchange { question: question.to_owned(), answer: answer::NOTHING.to_owned() });
                conversations.save(&conv).context("cannot keep the conversation")?;
                model.ready(&answering, &conv.turns, &cfg.openings());
                last.clear();
                continue;
            }
            let result = answering.answer(generator, &mut grounds, &history, question, &params, &stop, &mut |piece| {
                out.write_all(piece.as_bytes())?;
                out.flush()
            });
            let answer = match result {
                Ok(a) => a,
                Err(StreamError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Exit::Success),
                Err(e) => return Err(e.into()),
            };
            if let Some(n) = answer.attributed {
                write!(out, " [{n}]")?;
            }
            if stop.load(Ordering::SeqCst) {
                write!(out, " …(stopped)")?;
            }
            writeln!(out, "\n\nSources:")?;
            for s in Source::all(&grounds.hits) {
                writeln!(out, "[{}] {}", s.n, links.wrap(&s.location, s.path, s.line_start))?;
            }
            writeln!(out)?;
            out.flush()?;
            conv.turns.push(Exchange { question: question.to_owned(), answer: answer.cited() });
            conversations.save(&conv).context("cannot keep the conversation")?;
            last = grounds.hits;
            // The next question's prompt begins with this conversation:
            // read while the question is typed.
            model.ready(&answering, &conv.turns, &cfg.openings());
        }
        Ok(Exit::Success)
    }
}

/// The answer model, or the thread that has it while it reads the next
/// prompt's opening ([`Answering::ready`]).
struct Readied {
    model: Option<Generator>,
    reading: Option<std::thread::JoinHandle<Generator>>,
}

impl Readied {
    fn new(model: Generator, answering: &Answering, history: &[Exchange], openings: &Path) -> Readied {
        let mut readied = Readied { model: Some(model), reading: None };
        readied.ready(answering, history, openings);
        readied
    }

    /// Starts reading the opening of the prompt that follows `history`.
    fn ready(&mut self, answering: &Answering, history: &[Exchange], openings: &Path) {
        let mut model = self.get_owned();
        let (answering, history, openings) = (answering.clone(), history.to_vec(), openings.to_path_buf());
        self.reading = Some(std::thread::spawn(move || {
            // What fails here fails again, and is said, when the prompt
            // is read in whole.
            let _ = answering.ready(&mut model, &history, &openings);
            model
        }));
    }

    /// The model, once it has read what it was reading.
    fn get(&mut self) -> &mut Generator {
        let model = self.get_owned();
        self.model.insert(model)
    }

    fn get_owned(&mut self) -> Generator {
        match self.reading.take() {
            Some(reading) => reading.join().expect("reading an opening does not panic"),
            None => self.model.take().expect("the model is held or being read into"),
        }
    }
}

impl Drop for Readied {
    /// A session that ends while the model reads waits for it, so that no
    /// thread is still at work as the process exits.
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            let _ = reading.join();
        }
    }
}
