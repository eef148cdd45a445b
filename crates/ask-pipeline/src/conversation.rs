//! Conversations: the earlier turns a follow-up question is read with, and
//! where they are kept between runs.
//!
//! A conversation is one JSON file in `<home>/conversations/` (the user's
//! own: ask runs with umask 077), written to a temporary file and renamed
//! into place, so a killed run leaves the last whole version. Each is tied
//! to the index its answers came from.

use std::path::{Path, PathBuf};

use ask_engine::{Generator, ModelError, SamplingParams};
use serde::{Deserialize, Serialize};

/// One question and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The user's question, as asked.
    pub question: String,
    /// The answer, with its citations.
    pub answer: String,
}

/// A conversation with one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its name (letters, digits, `-` and `_`), which is also its file's.
    pub id: String,
    /// The index its answers came from.
    pub index: String,
    /// When it began (RFC 3339).
    pub started_at: String,
    /// The turns so far, oldest first.
    pub turns: Vec<Exchange>,
}

/// Why a conversation could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// No conversation has this id.
    #[error("no conversation '{id}'")]
    Unknown {
        /// The id asked for.
        id: String,
    },
    /// The file is there but is not a conversation; it is left as it is.
    #[error("{path}: not a conversation ask can read ({message}); it was left as it is")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The conversations folder, `<home>/conversations`.
#[derive(Debug, Clone)]
pub struct Conversations {
    dir: PathBuf,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Conversations {
    /// The conversations of ask's data folder `home`.
    pub fn new(home: &Path) -> Conversations {
        Conversations { dir: home.join("conversations") }
    }

    /// Where the conversation `id` is kept.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A new, empty conversation with `index`, named from `started_at`
    /// (`2026-12-07T14:45:00Z` → `20261207-144500`, with `-2`, `-3` … when
    /// that name is taken). It is kept from its first [`save`](Self::save).
    pub fn start(&self, index: &str, started_at: &str) -> Conversation {
        let stamp: String = started_at.chars().filter(char::is_ascii_digit).take(14).collect();
        let base = if stamp.len() == 14 { format!("{}-{}", &stamp[..8], &stamp[8..]) } else { "conversation".to_owned() };
        let id = std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base}-{n}")))
            .find(|id| !self.path(id).exists())
            .expect("an unused name");
        Conversation { id, index: index.to_owned(), started_at: started_at.to_owned(), turns: Vec::new() }
    }

    /// The conversation `id`.
    pub fn load(&self, id: &str) -> Result<Conversation, ConversationError> {
        if !valid_id(id) {
            return Err(ConversationError::Unknown { id: id.to_owned() });
        }
        let path = self.path(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConversationError::Unknown { id: id.to_owned() }),
            Err(source) => return Err(ConversationError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| ConversationError::Damaged { path, message: e.to_string() })
    }

    /// Every conversation, the most recently saved first; damaged files are
    /// returned apart, as errors, and left as they are.
    pub fn list(&self) -> Result<(Vec<Conversation>, Vec<ConversationError>), ConversationError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(source) => return Err(ConversationError::Io { path: self.dir.clone(), source }),
        };
        let mut found = Vec::new();
        let mut damaged = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else { continue };
            if !valid_id(id) {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            match self.load(id) {
                Ok(c) => found.push((modified, c)),
                Err(e) => damaged.push(e),
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        Ok((found.into_iter().map(|(_, c)| c).collect(), damaged))
    }

    /// The most recently saved conversation with `index`, if any.
    pub fn latest(&self, index: &str) -> Result<Option<Conversation>, ConversationError> {
        let (found, _) = self.list()?;
        Ok(found.into_iter().find(|c| c.index == index))
    }

    /// Keeps `conversation`: a temporary file renamed over the old one.
    pub fn save(&self, conversation: &Conversation) -> Result<(), ConversationError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConversationError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(&conversation.id);
        let tmp = self.dir.join(format!(".{}.json.tmp-{}", conversation.id, std::process::id()));
        let bytes = serde_json::to_vec_pretty(conversation).expect("a conversation serializes");
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Deletes the conversation `id`.
    pub fn delete(&self, id: &str) -> Result<(), ConversationError> {
        if !valid_id(id) {
            return Err(ConversationError::Unknown { id: id.to_owned() });
        }
        let path = self.path(id);
        std::fs::remove_file(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConversationError::Unknown { id: id.to_owned() },
            _ => ConversationError::Io { path, source },
        })
    }
}

/// How a follow-up question is turned into what retrieval searches for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FollowUp {
    /// The earlier questions and the follow-up searched together (hybrid:
    /// their words and their meaning); no model call.
    #[default]
    Join,
    /// The answer model rewrites the follow-up into a question that stands
    /// alone, which is searched.
    Rewrite,
}

impl FollowUp {
    /// Every method, by its name.
    pub const ALL: [(&'static str, FollowUp); 2] = [("join", FollowUp::Join), ("rewrite", FollowUp::Rewrite)];
}

impl std::str::FromStr for FollowUp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FollowUp::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f).ok_or_else(|| format!("`{s}` is not a follow-up method (join, rewrite)"))
    }
}

impl std::fmt::Display for FollowUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(FollowUp::ALL.iter().find(|(_, m)| m == self).map_or("join", |(n, _)| n))
    }
}

/// Earlier questions joined to a follow-up: at most this many, the latest.
const JOINED: usize = 2;

/// What retrieval searches for when `question` follows `history` by
/// [`FollowUp::Join`]: the latest earlier questions, then the question.
pub fn joined(history: &[Exchange], question: &str) -> String {
    let earlier = history.iter().rev().take(JOINED).rev().map(|e| e.question.trim());
    earlier.chain(std::iter::once(question.trim())).collect::<Vec<_>>().join("\n")
}

/// What retrieval searches for when `question` follows `history`: the
/// question itself when there is no history, else by `follow`
/// ([`FollowUp::Rewrite`] needs the answer model; without one, the
/// questions are joined).
pub fn searched_for(history: &[Exchange], question: &str, follow: FollowUp, model: Option<&mut Generator>) -> Result<String, ModelError> {
    Ok(match (history.is_empty(), follow, model) {
        (true, ..) => question.to_owned(),
        (false, FollowUp::Rewrite, Some(model)) => rewrite(model, history, question)?,
        (false, ..) => joined(history, question),
    })
}

/// The instructions for [`rewrite`]: small models follow a short, exact
/// task with an example better than a general request.
const REWRITE: &str = "Rewrite the user's last question so that it can be understood without the conversation: \
replace words like it, they, there, that and the one with what they refer to. Keep the question's meaning and \
its own words. Reply with the rewritten question only, on one line.\n\n\
Example:\nUser: Who wrote Dracula?\nAssistant: Bram Stoker wrote Dracula.\nLast question: When was it published?\n\
Rewritten: When was Dracula published?";

/// The follow-up `question` rewritten by `model` into a question that
/// stands alone, from `history` ([`FollowUp::Rewrite`]). Greedy, one line;
/// the question itself when the model gives nothing usable.
pub fn rewrite(model: &mut Generator, history: &[Exchange], question: &str) -> Result<String, ModelError> {
    let mut user = String::new();
    for e in history.iter().rev().take(JOINED).rev() {
        user.push_str(&format!("User: {}\nAssistant: {}\n", e.question.trim(), strip_citations(&e.answer)));
    }
    user.push_str(&format!("Last question: {}\nRewritten:", question.trim()));
    let prompt = model.chat_prompt(REWRITE, &user)?;
    let params = SamplingParams { max_tokens: 64, temperature: 0.0, ..SamplingParams::default() };
    let mut text = String::new();
    model.generate(&prompt, &params, |piece| {
        text.push_str(piece);
        !text.contains('\n')
    })?;
    let line = text.lines().next().unwrap_or("").trim().trim_start_matches("Rewritten:").trim().trim_matches('"').trim();
    Ok(if line.len() < 3 { question.trim().to_owned() } else { line.to_owned() })
}

/// `text` without its bracketed passage numbers (`[2]`, `[1, 3]`): an
/// earlier answer's numbers name passages the current prompt does not hold.
pub fn strip_citations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].bytes().any(|b| b.is_ascii_digit()) && after[..close].bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b' ') => {
                out.push_str(rest[..open].trim_end_matches(' '));
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_are_saved_listed_loaded_and_deleted() {
        let home = tempfile::tempdir().unwrap();
        let all = Conversations::new(home.path());
        assert!(all.latest("default").unwrap().is_none());
        let mut a = all.start("default", "2026-12-07T14:45:00Z");
        assert_eq!(a.id, "20261207-144500");
        a.turns.push(Exchange { question: "Who?".into(), answer: "Ada [1].".into() });
        all.save(&a).unwrap();
        // The same second again: a name of its own.
        let b = all.start("notes", "2026-12-07T14:45:00Z");
        assert_eq!(b.id, "20261207-144500-2");
        all.save(&b).unwrap();
        assert_eq!(all.load(&a.id).unwrap(), a);
        assert_eq!(all.latest("default").unwrap().as_ref(), Some(&a));
        assert_eq!(all.latest("notes").unwrap().map(|c| c.id), Some(b.id.clone()));
        assert_eq!(all.list().unwrap().0.len(), 2);
        all.delete(&a.id).unwrap();
        assert!(matches!(all.load(&a.id), Err(ConversationError::Unknown { .. })));
        assert!(matches!(all.delete(&a.id), Err(ConversationError::Unknown { .. })));
    }

    #[test]
    fn a_damaged_file_is_named_and_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let all = Conversations::new(home.path());
        std::fs::create_dir_all(home.path().join("conversations")).unwrap();
        let path = all.path("broken");
        std::fs::write(&path, b"{\"id\": \"broken\", \"turns\": [").unwrap();
        let err = all.load("broken").unwrap_err();
        assert!(matches!(&err, ConversationError::Damaged { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"id\": \"broken\", \"turns\": [");
        let (found, damaged) = all.list().unwrap();
        assert!(found.is_empty());
        assert_eq!(damaged.len(), 1);
    }

    #[test]
    fn ids_cannot_leave_the_folder() {
        let home = tempfile::tempdir().unwrap();
        let all = Conversations::new(home.path());
        for id in ["../index", "a/b", "", "x.json"] {
            assert!(matches!(all.load(id), Err(ConversationError::Unknown { .. })), "{id}");
            assert!(matches!(all.delete(id), Err(ConversationError::Unknown { .. })), "{id}");
        }
    }

    #[test]
    fn a_follow_up_is_searched_with_the_latest_questions() {
        let e = |q: &str| Exchange { question: q.into(), answer: "a".into() };
        assert_eq!(joined(&[], "Why?"), "Why?");
        assert_eq!(joined(&[e("One?"), e("Two?"), e(" Three? ")], "And it?"), "Two?\nThree?\nAnd it?");
    }

    #[test]
    fn citations_are_taken_out_of_earlier_answers() {
        assert_eq!(strip_citations("Founded in 1865 [1]. By Booth [2, 3]."), "Founded in 1865. By Booth.");
        assert_eq!(strip_citations("An array [i] stays; [x] too [4]"), "An array [i] stays; [x] too");
        assert_eq!(strip_citations("[] and [ ] stay"), "[] and [ ] stay");
    }
}
