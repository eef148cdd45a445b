//! Token-sized chunks with locations, with text-splitter.
//!
//! Chunks are measured in tokens of the embedding model's own tokenizer, so a
//! chunk never silently loses its tail to the encoder's truncation. Markdown
//! is split along headings and blocks first. Every chunk records its byte
//! range, line range and page so an answer can cite it precisely.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::{Document, Kind};

/// A piece of a document, small enough to embed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk's text (trimmed).
    pub text: String,
    /// Byte offset of the chunk in its section's text.
    pub byte_start: usize,
    /// Byte offset one past the chunk's end.
    pub byte_end: usize,
    /// First line (1-based) of the chunk in its section.
    pub line_start: u32,
    /// Last line (1-based, inclusive).
    pub line_end: u32,
    /// Page (1-based) for paged formats.
    pub page: Option<u32>,
}

/// Errors building a chunker.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// Overlap must be smaller than the chunk size.
    #[error("chunk overlap ({overlap}) must be smaller than the chunk size ({size})")]
    Overlap {
        /// The requested overlap.
        overlap: usize,
        /// The requested size.
        size: usize,
    },
}

/// Splits documents into token-sized chunks.
pub struct Chunker {
    text: TextSplitter<Tokenizer>,
    markdown: MarkdownSplitter<Tokenizer>,
}

impl Chunker {
    /// A chunker of at most `max_tokens` tokens per chunk, consecutive
    /// chunks sharing about `overlap` tokens. The tokenizer's own truncation
    /// and padding are turned off so sizes are measured, not clipped.
    pub fn new(mut tokenizer: Tokenizer, max_tokens: usize, overlap: usize) -> Result<Self, ChunkError> {
        tokenizer.with_truncation(None).ok();
        tokenizer.with_padding(None);
        let config = |t: Tokenizer| {
            ChunkConfig::new(max_tokens)
                .with_sizer(t)
                .with_overlap(overlap)
                .map_err(|_| ChunkError::Overlap { overlap, size: max_tokens })
        };
        Ok(Chunker {
            text: TextSplitter::new(config(tokenizer.clone())?),
            markdown: MarkdownSplitter::new(config(tokenizer)?),
        })
    }

    /// Chunks every section of a document.
    pub fn chunk(&self, kind: Kind, doc: &Document) -> Vec<Chunk> {
        let mut out = Vec::new();
        for section in &doc.sections {
            let text = section.text.as_str();
            let lines = LineIndex::new(text);
            let pieces: Vec<(usize, &str)> = if kind.is_markdown_like() {
                self.markdown.chunk_indices(text).collect()
            } else {
                self.text.chunk_indices(text).collect()
            };
            for (start, piece) in pieces {
                if piece.trim().is_empty() {
                    continue;
                }
                let end = start + piece.len();
                out.push(Chunk {
                    text: piece.to_owned(),
                    byte_start: start,
                    byte_end: end,
                    line_start: lines.line_of(start),
                    line_end: lines.line_of(end.saturating_sub(1).max(start)),
                    page: section.page,
                });
            }
        }
        out
    }
}

/// Byte offset to 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line_of(&self, byte: usize) -> u32 {
        (self.starts.partition_point(|&s| s <= byte)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every whitespace-separated word is one token.
    fn word_tokenizer() -> Tokenizer {
        include_str!("../../../fixtures/tokenizers/words.json")
            .parse()
            .unwrap()
    }

    #[test]
    fn chunks_are_token_sized_and_located() {
        let text: String = (1..=25).map(|i| format!("w{i}\n")).collect();
        let doc = Document { sections: vec![crate::Section { text, page: Some(3) }], lossy: false, mail: None };
        let chunks = Chunker::new(word_tokenizer(), 10, 0).unwrap().chunk(Kind::Text, &doc);
        let spans: Vec<(u32, u32)> = chunks.iter().map(|c| (c.line_start, c.line_end)).collect();
        assert_eq!(spans, vec![(1, 10), (11, 20), (21, 25)]);
        assert!(chunks[1].text.starts_with("w11"));
        assert!(chunks.iter().all(|c| c.page == Some(3)));
    }

    #[test]
    fn overlap_must_be_smaller_than_size() {
        assert!(Chunker::new(word_tokenizer(), 10, 10).is_err());
    }

    #[test]
    fn line_index_counts_from_one() {
        let idx = LineIndex::new("ab\ncd\n\nef");
        assert_eq!(idx.line_of(0), 1);
        assert_eq!(idx.line_of(2), 1); // the newline belongs to its line
        assert_eq!(idx.line_of(3), 2);
        assert_eq!(idx.line_of(6), 3);
        assert_eq!(idx.line_of(7), 4);
    }
}
