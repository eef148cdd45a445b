//! EPUB e-books: the chapters named by the package's spine, in reading
//! order, each XHTML file converted to text like any HTML page.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::xml::{attr, Archive};
use super::{Document, ExtractError};

/// An EPUB file's text.
pub(super) fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    let mut zip = Archive::open(bytes, "EPUB")?;
    let container = zip.required("META-INF/container.xml")?;
    let opf_path = first_attr(&container, b"rootfile", b"full-path")
        .ok_or_else(|| zip.error("META-INF/container.xml names no package file"))?;
    let opf = zip.required(&opf_path)?;
    let base = opf_path.rsplit_once('/').map(|(dir, _)| format!("{dir}/")).unwrap_or_default();

    let mut manifest: HashMap<String, String> = HashMap::new();
    let mut spine: Vec<String> = Vec::new();
    let mut reader = Reader::from_str(&opf);
    loop {
        match reader.read_event().map_err(|e| zip.error(format!("{opf_path}: {e}")))? {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"item" => {
                    if let (Some(id), Some(href)) = (attr(&e, b"id"), attr(&e, b"href")) {
                        manifest.insert(id, href);
                    }
                }
                b"itemref" => spine.extend(attr(&e, b"idref")),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if spine.is_empty() {
        return Err(zip.error(format!("{opf_path} lists no chapters")));
    }
    let mut chapters = Vec::new();
    for id in &spine {
        let Some(href) = manifest.get(id) else { continue };
        let path = resolve(&base, &percent_decode(href.split('#').next().unwrap_or(href)));
        // A chapter the spine names but the archive lacks is skipped, not fatal.
        if let Some(xhtml) = zip.text(&path)? {
            let text = super::html::to_text(&xhtml)?;
            if !text.trim().is_empty() {
                chapters.push(text.trim().to_owned());
            }
        }
    }
    if chapters.is_empty() {
        return Err(zip.error("no chapter with text"));
    }
    Ok(Document::plain(chapters.join("\n\n"), false))
}

fn first_attr(xml: &str, element: &[u8], name: &[u8]) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == element => return attr(&e, name),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// `base` + a relative href, with `..` and `.` segments resolved.
fn resolve(base: &str, href: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in href.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// `%20` → space: hrefs are URLs, member names are not.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && s.is_char_boundary(i + 3) {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::office::tests::zip_of;
    use super::*;

    #[test]
    fn chapters_follow_the_spine_not_the_manifest() {
        let container = r#"<container><rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>"#;
        let opf = r#"<package><manifest>
<item id="b" href="Text/ch%202.xhtml" media-type="application/xhtml+xml"/>
<item id="a" href="Text/ch1.xhtml" media-type="application/xhtml+xml"/>
</manifest><spine><itemref idref="a"/><itemref idref="b"/></spine></package>"#;
        let bytes = zip_of(&[
            ("META-INF/container.xml", container),
            ("OEBPS/content.opf", opf),
            ("OEBPS/Text/ch1.xhtml", "<html><body><h1>One</h1><p>The lighthouse keeper.</p></body></html>"),
            ("OEBPS/Text/ch 2.xhtml", "<html><body><h1>Two</h1><p>The storm.</p></body></html>"),
        ]);
        let text = extract(&bytes).unwrap().sections.remove(0).text;
        let (one, two) = (text.find("The lighthouse keeper.").unwrap(), text.find("The storm.").unwrap());
        assert!(one < two, "{text}");
    }

    #[test]
    fn paths_resolve_and_decode() {
        assert_eq!(resolve("OEBPS/", "../Images/a.png"), "Images/a.png");
        assert_eq!(resolve("", "./x.html"), "x.html");
        assert_eq!(percent_decode("a%20b%zz"), "a b%zz");
    }

    #[test]
    fn an_epub_without_a_package_is_an_error() {
        assert!(extract(&zip_of(&[("mimetype", "application/epub+zip")])).is_err());
    }
}
