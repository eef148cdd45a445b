//! HTML to readable text with html2text: block structure becomes line
//! breaks, `<script>` and `<style>` disappear, entities are decoded.

use super::{Document, ExtractError};

/// Wide enough that html2text never wraps a paragraph: line breaks should
/// come from the document, not from a terminal width.
const WIDTH: usize = 100_000;

pub(super) fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    let (text, lossy) = super::decode(bytes);
    Ok(Document::plain(to_text(&text)?, lossy))
}

/// Readable text of an HTML (or XHTML) string.
pub(super) fn to_text(html: &str) -> Result<String, ExtractError> {
    let rendered = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), WIDTH)
        .map_err(|e| ExtractError::Html(e.to_string()))?;
    let cleaned: Vec<&str> = rendered.lines().map(str::trim_end).collect();
    Ok(cleaned.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_styles_are_dropped() {
        let html = b"<html><head><style>p{color:red}</style><script>var secret=1;</script></head>\
            <body><h1>Title</h1><p>Body &amp; soul</p></body></html>";
        let doc = extract(html).unwrap();
        let text = &doc.sections[0].text;
        assert!(text.contains("Title"), "{text}");
        assert!(text.contains("Body & soul"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("color"), "{text}");
    }
}
