//! Per-format text extraction: one module per format, each a function from
//! bytes to a [`Document`].
//!
//! Extractors never touch the file system, which keeps them easy to test and
//! lets the caller read each file exactly once (for the hash and the text).

mod html;
mod pdf;
mod text;

pub use pdf::silence_extractor_panics;
pub use text::decode;

use crate::Kind;

/// Extracted text, split into sections that carry their own location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The sections in reading order: one per page for PDF, one otherwise.
    pub sections: Vec<Section>,
    /// True when the bytes were not valid UTF-8 and a fallback decoding was used.
    pub lossy: bool,
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
}

/// Extracts the text of a file whose kind is already known.
pub fn extract(kind: Kind, bytes: &[u8]) -> Result<Document, ExtractError> {
    match kind {
        Kind::Pdf => pdf::extract(bytes),
        Kind::Html => html::extract(bytes),
        Kind::Text | Kind::Markdown | Kind::Code => {
            if crate::kind::looks_binary(bytes) {
                return Err(ExtractError::Binary);
            }
            let (text, lossy) = decode(bytes);
            Ok(Document { sections: vec![Section { text, page: None }], lossy })
        }
    }
}
