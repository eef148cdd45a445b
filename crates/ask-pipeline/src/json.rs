//! The JSON that ask prints and serves: one shape per thing, whoever
//! prints it (`ask search --json`, `ask query --json`, `ask mcp`).

use ask_store::{Hit, Mail, PathKey};
use serde::Serialize;

use crate::answer::location;

/// One search result: a line of `ask search --json`, and one result of
/// the MCP search tool.
#[derive(Debug, Serialize)]
pub struct SearchHit<'a> {
    /// Its place in the ranking, from 1.
    pub rank: usize,
    /// The score the list is ranked by.
    pub score: f32,
    /// Cosine similarity to the query, where a vector was used.
    pub similarity: Option<f32>,
    /// The file.
    pub path: &'a PathKey,
    /// The file's kind (`text`, `markdown`, `pdf`, `mail` …).
    pub kind: &'a str,
    /// The passage's number in its file.
    pub chunk: u32,
    /// First line, from 1.
    pub line_start: u32,
    /// Last line.
    pub line_end: u32,
    /// The page, for paged formats.
    pub page: Option<u32>,
    /// For mail: the message's headers and its place in the file.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailFields<'a>>,
    /// The passage's text.
    pub text: &'a str,
}

/// A message's fields in a JSON hit, at the top level beside `path`.
#[derive(Debug, Serialize)]
pub struct MailFields<'a> {
    /// Its place in the file: the Message-ID, or `#n` in an mbox.
    pub message: &'a str,
    /// Subject header.
    pub subject: Option<&'a str>,
    /// From header.
    pub from: Option<&'a str>,
    /// To header.
    pub to: Option<&'a str>,
    /// The date it was sent, RFC 3339.
    pub date: Option<&'a str>,
    /// Message-ID header.
    pub message_id: Option<&'a str>,
}

impl<'a> SearchHit<'a> {
    /// The `rank`th hit (from 1).
    pub fn new(rank: usize, hit: &'a Hit) -> Self {
        let p = &hit.passage;
        SearchHit {
            rank,
            score: hit.score,
            similarity: hit.similarity,
            path: &p.path,
            kind: p.kind.as_str(),
            chunk: p.chunk,
            line_start: p.line_start,
            line_end: p.line_end,
            page: p.page,
            mail: p.message.as_ref().map(MailFields::new),
            text: &p.text,
        }
    }

    /// Every hit, ranked from 1.
    pub fn all(hits: &'a [Hit]) -> Vec<Self> {
        hits.iter().enumerate().map(|(i, h)| SearchHit::new(i + 1, h)).collect()
    }
}

impl<'a> MailFields<'a> {
    fn new(m: &'a Mail) -> Self {
        MailFields {
            message: &m.key,
            subject: m.subject.as_deref(),
            from: m.from.as_deref(),
            to: m.to.as_deref(),
            date: m.date_rfc3339.as_deref(),
            message_id: m.message_id.as_deref(),
        }
    }
}

/// A passage an answer was written from, numbered as the answer cites it.
#[derive(Debug, Serialize)]
pub struct Source<'a> {
    /// The number `[n]` in the answer names.
    pub n: usize,
    /// The file.
    pub path: &'a PathKey,
    /// Where in the file, as a person reads it (see [`location`]).
    pub location: String,
    /// First line, from 1.
    pub line_start: u32,
    /// Last line.
    pub line_end: u32,
    /// The page, for paged formats.
    pub page: Option<u32>,
    /// The score it was retrieved with.
    pub score: f32,
    /// Cosine similarity to the question.
    pub similarity: Option<f32>,
    /// The passage's text.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    /// The sources of an answer written from `hits`, numbered from 1.
    pub fn all(hits: &'a [Hit]) -> Vec<Self> {
        hits.iter()
            .enumerate()
            .map(|(i, h)| Source {
                n: i + 1,
                path: &h.passage.path,
                location: location(&h.passage),
                line_start: h.passage.line_start,
                line_end: h.passage.line_end,
                page: h.passage.page,
                score: h.score,
                similarity: h.similarity,
                text: &h.passage.text,
            })
            .collect()
    }
}
