//! What the zip-based formats (DOCX, ODT, EPUB) share: reading one member
//! of the archive with a size cap, and attribute lookup by local name, so
//! that namespace prefixes (`w:`, `text:`, none) never matter.

use std::io::{Cursor, Read};

use quick_xml::events::BytesStart;

use super::ExtractError;

/// A member larger than this when inflated is refused: a document's XML is
/// a few megabytes, a plain text file over 50 MB is skipped by default
/// (`--max-file-size`), and a zip bomb must not exhaust memory. At 256 MiB
/// a bomb's member took ask to 930 MB of memory before it was refused.
const MAX_MEMBER: u64 = 64 * 1024 * 1024;

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
        // The size the archive declares is refused before anything is
        // inflated; a member that lies about it is cut at the limit.
        if member.size() > MAX_MEMBER {
            return Err(err(format!("{name} inflates to {} bytes, more than {MAX_MEMBER}", member.size())));
        }
        let mut bytes = Vec::with_capacity(member.size() as usize + 1);
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn archive_with(member: &str, size: usize) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
        zip.start_file(member, options).unwrap();
        let block = vec![b'a'; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len());
            zip.write_all(&block[..n]).unwrap();
            left -= n;
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_member_over_the_limit_is_refused_by_its_declared_size() {
        let over = MAX_MEMBER as usize + 1;
        let bytes = archive_with("word/document.xml", over);
        let err = Archive::open(&bytes, "DOCX").unwrap().text("word/document.xml").unwrap_err().to_string();
        // The declared size is named: nothing was inflated to find it.
        assert!(err.contains(&format!("inflates to {over} bytes")), "{err}");
        let small = archive_with("word/document.xml", 10);
        assert_eq!(Archive::open(&small, "DOCX").unwrap().text("word/document.xml").unwrap().as_deref(), Some("aaaaaaaaaa"));
        assert_eq!(Archive::open(&small, "DOCX").unwrap().text("content.xml").unwrap(), None);
    }
}
