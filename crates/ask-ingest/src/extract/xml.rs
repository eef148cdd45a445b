//! What the zip-based formats (DOCX, ODT, EPUB) share: reading one member
//! of the archive with a size cap, and attribute lookup by local name, so
//! that namespace prefixes (`w:`, `text:`, none) never matter.

use std::io::{Cursor, Read};

use quick_xml::events::BytesStart;

use super::ExtractError;

/// A member larger than this when inflated is refused: a document's XML is
/// a few megabytes, and a zip bomb must not exhaust memory.
const MAX_MEMBER: u64 = 256 * 1024 * 1024;

/// An opened document archive, with the format name for error messages.
pub(super) struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    format: &'static str,
}

impl<'a> Archive<'a> {
    pub(super) fn open(bytes: &'a [u8], format: &'static str) -> Result<Self, ExtractError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| ExtractError::Archive {
            format,
            message: format!("not a readable zip archive ({e})"),
        })?;
        Ok(Archive { zip, format })
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ExtractError {
        ExtractError::Archive { format: self.format, message: message.into() }
    }

    /// The member `name` as text, or `None` when the archive has no such member.
    pub(super) fn text(&mut self, name: &str) -> Result<Option<String>, ExtractError> {
        let format = self.format;
        let err = |message: String| ExtractError::Archive { format, message };
        let member = match self.zip.by_name(name) {
            Ok(m) => m,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(err(format!("{name}: {e}"))),
        };
        let mut bytes = Vec::new();
        member.take(MAX_MEMBER + 1).read_to_end(&mut bytes).map_err(|e| err(format!("{name}: {e}")))?;
        if bytes.len() as u64 > MAX_MEMBER {
            return Err(err(format!("{name} inflates to more than {MAX_MEMBER} bytes")));
        }
        Ok(Some(super::decode(&bytes).0))
    }

    /// Like [`Archive::text`], but a missing member is an error.
    pub(super) fn required(&mut self, name: &str) -> Result<String, ExtractError> {
        self.text(name)?.ok_or_else(|| self.error(format!("{name} is missing")))
    }
}

/// The unescaped value of the attribute whose local name is `local`.
pub(super) fn attr(e: &BytesStart, local: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// A paragraph as a line of Markdown-shaped text: `## Title` for a level-2
/// heading, the text alone otherwise.
pub(super) fn paragraph(text: &str, heading: Option<u8>) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match heading {
        Some(level) => format!("{} {text}", "#".repeat(level.clamp(1, 6) as usize)),
        None => text.to_owned(),
    })
}
