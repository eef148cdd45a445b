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

/// Deepest element nesting handed to the HTML parser. html5ever checks
/// the stack of open elements at every tag, so parsing time grows with the
/// square of the depth (100,000 nested `<div>`s took 33 s); Chromium's
/// parser stops nesting at 512 for the same reason, and real pages stay
/// far below it.
const MAX_DEPTH: usize = 512;

/// Readable text of an HTML (or XHTML) string.
pub(super) fn to_text(html: &str) -> Result<String, ExtractError> {
    let html = flatten_deep(html, MAX_DEPTH);
    let rendered = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), WIDTH)
        .map_err(|e| ExtractError::Html(e.to_string()))?;
    let cleaned: Vec<&str> = rendered.lines().map(str::trim_end).collect();
    Ok(cleaned.join("\n"))
}

/// Elements that never have content.
const VOID: [&str; 14] = ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];
/// Elements whose content is text up to their end tag, tags included.
const RAW: [&str; 6] = ["script", "style", "textarea", "title", "xmp", "noscript"];
/// Elements that an open one of the same name closes (`<p>a<p>b`).
const SIBLINGS: [&str; 8] = ["p", "li", "dt", "dd", "option", "tr", "td", "th"];
/// How far down the open elements such a close is looked for (a bound, so
/// that the scan stays linear).
const SIBLING_REACH: usize = 4;

/// `html` with the tags that would open an element deeper than `max`
/// (and their end tags) left out, their text kept: one linear scan of the
/// tags, and the input back unchanged when nothing is that deep. The scan
/// knows comments, raw-text elements, void elements, self-closing tags,
/// quoted attributes, and the implicit close of a `<p>` or `<li>` by the
/// next one; other implicit closes make it count deeper than a parser
/// would, which only matters past `max`.
fn flatten_deep(html: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let b = html.as_bytes();
    // Open elements, each with whether its tags were left out.
    let mut open: Vec<(String, bool)> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while let Some(lt) = memchr::memchr(b'<', &b[i..]).map(|p| i + p) {
        let rest = &b[lt..];
        let skip_to = |from: usize, needle: &[u8]| memchr::memmem::find(&b[from..], needle).map_or(b.len(), |p| from + p + needle.len());
        if rest.starts_with(b"<!--") {
            i = skip_to(lt + 4, b"-->");
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            i = skip_to(lt + 2, b">");
            continue;
        }
        let end = rest.get(1) == Some(&b'/');
        let name_at = lt + 1 + end as usize;
        let name_len = b[name_at..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b':').count();
        if name_len == 0 || !b[name_at].is_ascii_alphabetic() {
            i = lt + 1;
            continue;
        }
        let name = html[name_at..name_at + name_len].to_ascii_lowercase();
        let close = tag_end(b, name_at + name_len);
        let mut drop = false;
        if end {
            if counts.get(&name).copied().unwrap_or(0) > 0 {
                while let Some((top, dropped)) = open.pop() {
                    *counts.get_mut(&top).expect("counted when pushed") -= 1;
                    if top == name {
                        drop = dropped;
                        break;
                    }
                }
            }
        } else if RAW.contains(&name.as_str()) {
            // Skip the content: tags inside a script are not tags.
            let mut j = close;
            loop {
                match memchr::memmem::find(&b[j..], b"</") {
                    Some(p) if b[j + p + 2..].len() >= name.len() && b[j + p + 2..j + p + 2 + name.len()].eq_ignore_ascii_case(name.as_bytes()) => {
                        i = tag_end(b, j + p + 2 + name.len());
                        break;
                    }
                    Some(p) => j += p + 2,
                    None => {
                        i = b.len();
                        break;
                    }
                }
            }
            continue;
        } else if !VOID.contains(&name.as_str()) && !(close >= 2 && b[close - 2] == b'/') {
            // An open element of the same name near the top (`<li>` over
            // the `<p>` inside the last `<li>`) closes, with what is above it.
            let near = open.len().saturating_sub(SIBLING_REACH);
            if let Some(at) = SIBLINGS.contains(&name.as_str()).then(|| open[near..].iter().rposition(|(n, _)| *n == name)).flatten() {
                for (top, _) in open.drain(near + at..) {
                    *counts.get_mut(&top).expect("counted when pushed") -= 1;
                }
            }
            drop = open.len() >= max;
            *counts.entry(name.clone()).or_default() += 1;
            open.push((name, drop));
        }
        if drop {
            let out = out.get_or_insert_with(|| String::with_capacity(html.len()));
            out.push_str(&html[copied..lt]);
            copied = close;
        }
        i = close;
    }
    match out {
        None => std::borrow::Cow::Borrowed(html),
        Some(mut out) => {
            out.push_str(&html[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// Just past the `>` that ends a tag whose name ends at `from`, skipping
/// quoted attribute values; the end of the input when there is none.
fn tag_end(b: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (k, &c) in b[from..].iter().enumerate() {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, b'>') => return from + k + 1,
            _ => {}
        }
    }
    b.len()
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

    #[test]
    fn nesting_past_the_limit_is_flattened_and_its_text_kept() {
        let deep = format!("<body>{}<p>The heron nests</p>{}<p>under the mill.</p></body>", "<div>".repeat(40), "</div>".repeat(40));
        let flat = flatten_deep(&deep, 10);
        // Ten levels stay (body and nine divs); the rest of the divs go.
        assert_eq!(flat.matches("<div>").count(), 9, "{flat}");
        assert_eq!(flat.matches("</div>").count(), 9, "{flat}");
        let text = to_text(&flat).unwrap();
        assert!(text.contains("The heron nests") && text.contains("under the mill."), "{text}");
        // 100,000 levels: the parser is handed MAX_DEPTH of them.
        let huge = format!("<html><body>{}otter{}</body></html>", "<div>".repeat(100_000), "</div>".repeat(100_000));
        assert_eq!(flatten_deep(&huge, MAX_DEPTH).matches("<div>").count(), MAX_DEPTH - 2);
        assert!(extract(huge.as_bytes()).unwrap().sections[0].text.contains("otter"));
    }

    #[test]
    fn ordinary_pages_pass_unchanged() {
        // Unclosed paragraphs and list items close each other; void and
        // self-closing elements, comments and scripts open nothing.
        let mut page = String::from("<html><body><ul>");
        for i in 0..2000 {
            page.push_str(&format!("<li>item {i}<br><img src='a>b.png'/><p>para {i}<!-- <div> --><script>if (a<b) {{ document.write('<div>') }}</script><x-box/>"));
        }
        page.push_str("</ul></body></html>");
        assert!(matches!(flatten_deep(&page, 8), std::borrow::Cow::Borrowed(_)));
    }
}
