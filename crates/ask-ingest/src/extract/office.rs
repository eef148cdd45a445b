//! Word-processing documents: DOCX (Office Open XML) and ODT (OpenDocument
//! Text). Both are zip archives with the body in one XML member; the text
//! comes out in reading order, one paragraph a block, headings as Markdown
//! `#` lines so that the chunker splits along them.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::xml::{attr, paragraph, Archive};
use super::{Document, ExtractError};

/// A DOCX file's text.
pub(super) fn docx(bytes: &[u8]) -> Result<Document, ExtractError> {
    let mut zip = Archive::open(bytes, "DOCX")?;
    let body = zip.required("word/document.xml")?;
    let styles = zip.text("word/styles.xml")?.map(|s| docx_heading_styles(&s)).unwrap_or_default();
    let mut reader = Reader::from_str(&body);
    let mut blocks = Vec::new();
    let (mut para, mut heading) = (String::new(), None::<u8>);
    let (mut in_run, mut in_text) = (false, false);
    loop {
        let event = reader.read_event().map_err(|e| zip.error(format!("word/document.xml: {e}")))?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"p" => {
                para.clear();
                heading = None;
            }
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"pStyle" => {
                    if let Some(id) = attr(&e, b"val") {
                        heading = styles.get(&id).copied().or_else(|| heading_from_name(&id)).or(heading);
                    }
                }
                b"outlineLvl" => {
                    if let Some(l) = attr(&e, b"val").and_then(|v| v.parse::<u8>().ok()).filter(|&l| l < 9) {
                        heading = Some(l + 1);
                    }
                }
                b"r" => in_run = true,
                b"t" => in_text = true,
                b"tab" if in_run => para.push('\t'),
                b"br" | b"cr" if in_run => para.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => {
                para.push_str(&t.unescape().map_err(|e| zip.error(format!("word/document.xml: {e}")))?);
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"p" => blocks.extend(paragraph(&para, heading)),
                b"r" => in_run = false,
                b"t" => in_text = false,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Document::plain(blocks.join("\n\n"), false))
}

/// Style id → heading level, from styles.xml: styles named "heading N" or
/// "Title", or with an outline level. Ids are localised by some producers
/// ("berschrift1"), names are not.
fn docx_heading_styles(xml: &str) -> HashMap<String, u8> {
    let mut reader = Reader::from_str(xml);
    let mut out = HashMap::new();
    let mut current: Option<String> = None;
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"style" => current = attr(&e, b"styleId"),
            Event::Start(e) | Event::Empty(e) => {
                let Some(id) = current.clone() else { continue };
                let level = match e.local_name().as_ref() {
                    b"name" => attr(&e, b"val").and_then(|n| heading_from_name(&n)),
                    b"outlineLvl" => attr(&e, b"val").and_then(|v| v.parse::<u8>().ok()).filter(|&l| l < 9).map(|l| l + 1),
                    _ => None,
                };
                if let Some(level) = level {
                    out.insert(id, level);
                }
            }
            Event::End(e) if e.local_name().as_ref() == b"style" => current = None,
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// "heading 2", "Heading2" → 2; "Title" → 1.
fn heading_from_name(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(1);
    }
    lower.strip_prefix("heading")?.parse::<u8>().ok().filter(|l| (1..=9).contains(l))
}

/// An ODT file's text.
pub(super) fn odt(bytes: &[u8]) -> Result<Document, ExtractError> {
    let mut zip = Archive::open(bytes, "ODT")?;
    let body = zip.required("content.xml")?;
    let mut reader = Reader::from_str(&body);
    let mut blocks = Vec::new();
    // Paragraphs nest (a footnote's paragraph inside the text's): a stack.
    let mut open: Vec<(String, Option<u8>)> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| zip.error(format!("content.xml: {e}")))?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"p" => open.push((String::new(), None)),
                b"h" => {
                    let level = attr(&e, b"outline-level").and_then(|v| v.parse().ok()).unwrap_or(1);
                    open.push((String::new(), Some(level)));
                }
                _ => {}
            },
            Event::Empty(e) => {
                let Some((para, _)) = open.last_mut() else { continue };
                match e.local_name().as_ref() {
                    b"s" => {
                        let n = attr(&e, b"c").and_then(|c| c.parse().ok()).unwrap_or(1usize);
                        para.extend(std::iter::repeat_n(' ', n.min(1000)));
                    }
                    b"tab" => para.push('\t'),
                    b"line-break" => para.push('\n'),
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some((para, _)) = open.last_mut() {
                    para.push_str(&t.unescape().map_err(|e| zip.error(format!("content.xml: {e}")))?);
                }
            }
            Event::End(e) if matches!(e.local_name().as_ref(), b"p" | b"h") => {
                if let Some((text, level)) = open.pop() {
                    blocks.extend(paragraph(&text, level));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Document::plain(blocks.join("\n\n"), false))
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;

    /// A zip with the given members, stored uncompressed or deflated.
    pub(in crate::extract) fn zip_of(members: &[(&str, &str)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in members {
            out.start_file(*name, opts).unwrap();
            out.write_all(body.as_bytes()).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn docx_paragraphs_in_order_with_headings() {
        let doc = r#"<?xml version="1.0"?><w:document xmlns:w="w"><w:body>
<w:p><w:pPr><w:pStyle w:val="Kop1"/><w:tabs><w:tab w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Boiler</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Service </w:t></w:r><w:r><w:t>every &amp; each</w:t><w:tab/><w:t>year.</w:t></w:r></w:p>
<w:p><w:r><w:delText>removed</w:delText><w:t>Kept</w:t></w:r></w:p>
</w:body></w:document>"#;
        // "Kop1" is Dutch for Heading 1: known from its style name only.
        let styles = r#"<w:styles xmlns:w="w"><w:style w:styleId="Kop1"><w:name w:val="heading 1"/></w:style></w:styles>"#;
        let bytes = zip_of(&[("word/document.xml", doc), ("word/styles.xml", styles)]);
        let text = docx(&bytes).unwrap().sections.remove(0).text;
        assert_eq!(text, "# Boiler\n\nService every & each\tyear.\n\nKept");
    }

    #[test]
    fn odt_headings_spaces_and_nesting() {
        let content = r#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text>
<text:h text:outline-level="2">Deposit</text:h>
<text:p>Two<text:s text:c="2"/>spaces, <text:span>a span</text:span>.</text:p>
<text:list><text:list-item><text:p>item</text:p></text:list-item></text:list>
</office:text></office:body></office:document-content>"#;
        let text = odt(&zip_of(&[("content.xml", content)])).unwrap().sections.remove(0).text;
        assert_eq!(text, "## Deposit\n\nTwo  spaces, a span.\n\nitem");
    }

    #[test]
    fn damaged_archives_are_errors() {
        let bytes = zip_of(&[("word/document.xml", "<w:document>")]);
        assert!(docx(&bytes[..bytes.len() / 2]).is_err());
        assert!(matches!(odt(&zip_of(&[("mimetype", "x")])), Err(ExtractError::Archive { .. })));
        assert!(docx(b"PK\x03\x04 not really").is_err());
    }
}
