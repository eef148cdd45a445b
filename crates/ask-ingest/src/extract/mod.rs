//! Per-format text extraction: one module per format, each a function from
//! bytes to a [`Document`].
//!
//! Extractors never touch the file system, which keeps them easy to test and
//! lets the caller read each file exactly once (for the hash and the text).

mod epub;
mod html;
mod mail;
mod office;
mod pdf;
mod text;
mod xml;

pub use pdf::silence_extractor_panics;
pub use mail::{mbox_messages, Mail};
pub use text::decode;

use crate::Kind;

/// Extracted text, split into sections that carry their own location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The sections in reading order: one per page for PDF, one otherwise.
    pub sections: Vec<Section>,
    /// True when the bytes were not valid UTF-8 and a fallback decoding was used.
    pub lossy: bool,
    /// For one message of a mail file: its headers and its place in the file.
    pub mail: Option<Mail>,
}

impl Document {
    /// A document of one section without a page: what most formats give.
    pub fn plain(text: String, lossy: bool) -> Document {
        Document { sections: vec![Section { text, page: None }], lossy, mail: None }
    }

    /// The whole text: every non-blank section, trimmed, a blank line apart.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.sections.iter().map(|s| s.text.trim()).filter(|t| !t.is_empty()).collect();
        parts.join("\n\n")
    }
}

/// A run of text with a location in its source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The text.
    pub text: String,
    /// 1-based page number, for paged formats.
    pub page: Option<u32>,
}

/// Why a file's text could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The bytes are binary although the name suggested text.
    #[error("binary content in a file with a text extension")]
    Binary,
    /// The PDF could not be parsed (corrupt, truncated, unsupported feature).
    #[error("cannot read PDF: {0}")]
    Pdf(String),
    /// The PDF is encrypted and needs a password.
    #[error("PDF is encrypted; ask cannot read password-protected PDFs")]
    Encrypted,
    /// The HTML could not be converted to text.
    #[error("cannot convert HTML: {0}")]
    Html(String),
    /// A zip-based document (DOCX, ODT, EPUB) is damaged or incomplete.
    #[error("cannot read {format}: {message}")]
    Archive {
        /// The format the file claimed to be.
        format: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A mail file holds no message at all.
    #[error("cannot read mail: no message with headers and a body was found")]
    NoMessage,
}

/// Extracts the text of a file whose kind is already known: one document,
/// or one per message for a mail file (an mbox holds many).
pub fn extract(kind: Kind, bytes: &[u8]) -> Result<Vec<Document>, ExtractError> {
    match kind {
        Kind::Mail => mail::extract(bytes),
        other => extract_one(other, bytes).map(|doc| vec![doc]),
    }
}

/// Extracts a single-document format (everything but mail, whose
/// attachments come through here).
fn extract_one(kind: Kind, bytes: &[u8]) -> Result<Document, ExtractError> {
    match kind {
        Kind::Pdf => pdf::extract(bytes),
        Kind::Html => html::extract(bytes),
        Kind::Docx => office::docx(bytes),
        Kind::Odt => office::odt(bytes),
        Kind::Epub => epub::extract(bytes),
        Kind::Mail => {
            mail::extract(bytes)?.into_iter().next().ok_or(ExtractError::NoMessage)
        }
        Kind::Text | Kind::Markdown | Kind::Code => {
            if crate::kind::looks_binary(bytes) {
                return Err(ExtractError::Binary);
            }
            let (text, lossy) = decode(bytes);
            Ok(Document::plain(text, lossy))
        }
    }
}
