//! `ask conversations`: the kept conversations, listed, shown or deleted.

use std::io::Write;

use anyhow::Result;
use ask_pipeline::conversation::{Conversation, ConversationError, Conversations};
use tokio::runtime::Runtime;

use super::Run;
use crate::cli::{ConversationsAction, ConversationsArgs};
use crate::config::Config;
use crate::exit::{Exit, Usage};

/// An unknown id is a mistake in the command line (exit 2).
fn usage(e: ConversationError) -> anyhow::Error {
    match e {
        ConversationError::Unknown { .. } => Usage(format!("{e}; `ask conversations` lists them")).into(),
        e => e.into(),
    }
}

impl Run for ConversationsArgs {
    fn run(&self, cfg: &Config, _rt: &Runtime) -> Result<Exit> {
        let all = Conversations::new(&cfg.home);
        let mut out = std::io::stdout().lock();
        match self.action.as_ref().unwrap_or(&ConversationsAction::List) {
            ConversationsAction::List => {
                let (found, damaged) = all.list()?;
                for e in &damaged {
                    eprintln!("ask: {e}");
                }
                if self.json {
                    for c in &found {
                        serde_json::to_writer(&mut out, c)?;
                        writeln!(out)?;
                    }
                } else {
                    let rows: Vec<[String; 5]> = found
                        .iter()
                        .map(|c| {
                            let first = c.turns.first().map(|t| t.question.replace('\n', " ")).unwrap_or_default();
                            [c.id.clone(), c.index.clone(), c.turns.len().to_string(), c.started_at.clone(), first]
                        })
                        .collect();
                    if !rows.is_empty() {
                        for line in super::columns(["ID", "INDEX", "TURNS", "STARTED", "FIRST QUESTION"], &rows) {
                            writeln!(out, "{line}")?;
                        }
                    } else if !cfg.quiet {
                        eprintln!("ask: no conversations yet; `ask query` starts one, `ask query -c` continues it");
                    }
                }
            }
            ConversationsAction::Show { id } => {
                let c = all.load(id).map_err(usage)?;
                if self.json {
                    serde_json::to_writer(&mut out, &c)?;
                    writeln!(out)?;
                } else {
                    show(&mut out, &c)?;
                }
            }
            ConversationsAction::Delete { ids, all: every } => {
                let ids: Vec<String> = if *every { all.list()?.0.into_iter().map(|c| c.id).collect() } else { ids.clone() };
                // Every id is checked before any file goes; a damaged file
                // can go too.
                for id in &ids {
                    match all.load(id) {
                        Ok(_) | Err(ConversationError::Damaged { .. }) => {}
                        Err(e) => return Err(usage(e)),
                    }
                }
                for id in &ids {
                    all.delete(id).map_err(usage)?;
                }
                if self.json {
                    serde_json::to_writer(&mut out, &serde_json::json!({ "deleted": ids }))?;
                    writeln!(out)?;
                } else if !cfg.quiet {
                    eprintln!("ask: deleted {} conversation(s)", ids.len());
                }
            }
        }
        Ok(Exit::Success)
    }
}

/// A conversation as a reader follows it: each question, then its answer.
fn show(out: &mut impl Write, c: &Conversation) -> std::io::Result<()> {
    writeln!(out, "{} (index {}, started {})", c.id, c.index, c.started_at)?;
    for t in &c.turns {
        writeln!(out, "\n> {}\n{}", t.question, t.answer)?;
    }
    Ok(())
}
