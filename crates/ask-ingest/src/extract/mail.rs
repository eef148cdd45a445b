//! E-mail: single messages (`.eml`, a Maildir file) and mbox files, each
//! message its own document, parsed with mail-parser (MIME, encoded-word
//! headers, quoted-printable and base64 bodies, legacy charsets).
//!
//! A message's text starts with its headers (subject, sender, recipients,
//! date) so that both the retriever and the language model see who wrote
//! what and when; then the body, text/plain preferred and HTML converted
//! when there is nothing else; then the text of attachments that are
//! documents ask can read. Other attachments are skipped.

use std::path::Path;

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

use super::{Document, ExtractError};
use crate::kind::{self, Kind};

/// One e-mail message's headers and its place in its file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mail {
    /// Where the message sits in its file: its Message-ID, or `#n` (its
    /// 1-based position in an mbox) when it has none or shares it.
    pub key: String,
    /// BLAKE3 of the message's own bytes: a message keeps its hash when the
    /// mbox around it grows or its Maildir file moves from new/ to cur/.
    pub hash: String,
    /// The decoded subject.
    pub subject: Option<String>,
    /// The sender, as `Name <address>`.
    pub from: Option<String>,
    /// The recipients (To), comma-separated.
    pub to: Option<String>,
    /// When it was sent, in seconds since the Unix epoch.
    pub date: Option<i64>,
    /// When it was sent, as RFC 3339 with the sender's UTC offset.
    pub date_rfc3339: Option<String>,
    /// The Message-ID, without angle brackets.
    pub message_id: Option<String>,
}

/// Attachments larger than this are not extracted (bytes, decoded).
const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

/// Every message of a mail file, in file order.
pub(super) fn extract(bytes: &[u8]) -> Result<Vec<Document>, ExtractError> {
    let bytes = emlx_message(bytes).unwrap_or(bytes);
    let docs: Vec<Document> =
        if kind::looks_mbox(bytes) { mbox_messages(bytes, u64::MAX).collect() } else { message(bytes, 1).into_iter().collect() };
    if docs.is_empty() {
        return Err(ExtractError::NoMessage);
    }
    Ok(docs)
}

/// The messages of an mbox, in file order, read from `reader` one at a
/// time (the iterator undoes ">From " quoting): a mailbox of gigabytes is
/// never in memory whole. Messages over `max_bytes` are left out. A
/// message without a Message-ID, or with one already seen in this
/// mailbox, is keyed by its position (`#n`).
pub fn mbox_messages<R: std::io::BufRead>(reader: R, max_bytes: u64) -> impl Iterator<Item = Document> {
    let mut keys = std::collections::HashSet::new();
    mail_parser::mailbox::mbox::MessageIterator::new(reader).filter_map(Result::ok).enumerate().filter_map(move |(i, m)| {
        let raw = m.unwrap_contents();
        if raw.len() as u64 > max_bytes {
            return None;
        }
        let mut doc = message(&raw, i + 1)?;
        let mail = doc.mail.as_mut().expect("message() sets mail");
        if !keys.insert(mail.key.clone()) {
            mail.key = format!("#{}", i + 1);
            keys.insert(mail.key.clone());
        }
        Some(doc)
    })
}

/// The message inside an Apple Mail `.emlx` file: a first line with the
/// message's length in bytes, the message, then a property list.
fn emlx_message(bytes: &[u8]) -> Option<&[u8]> {
    let nl = bytes.iter().take(16).position(|&b| b == b'\n')?;
    let len: usize = std::str::from_utf8(&bytes[..nl]).ok()?.trim().parse().ok()?;
    bytes.get(nl + 1..nl + 1 + len)
}

/// One message as a document, or `None` when the bytes hold no message.
fn message(raw: &[u8], position: usize) -> Option<Document> {
    let msg = MessageParser::default().parse(raw)?;
    if msg.headers().is_empty() {
        return None;
    }
    let message_id = msg.message_id().map(|s| s.trim_matches(['<', '>']).to_owned()).filter(|s| !s.is_empty());
    let mail = Mail {
        key: message_id.clone().unwrap_or_else(|| format!("#{position}")),
        hash: crate::content_hash(trim_end(raw)),
        subject: msg.subject().map(one_line).filter(|s| !s.is_empty()),
        from: msg.from().map(addresses).filter(|s| !s.is_empty()),
        to: msg.to().map(addresses).filter(|s| !s.is_empty()),
        date: msg.date().map(|d| d.to_timestamp()),
        date_rfc3339: msg.date().map(|d| d.to_rfc3339()),
        message_id,
    };
    let mut text = header_block(&mail);
    text.push_str(&body(&msg));
    for id in &msg.attachments {
        if msg.text_body.contains(id) || msg.html_body.contains(id) {
            continue;
        }
        let Some(part) = msg.parts.get(*id as usize) else { continue };
        if let Some(attachment) = attachment(part) {
            text.push_str("\n\n");
            text.push_str(&attachment);
        }
    }
    Some(Document::plain(text.trim_end().to_owned(), false).with_mail(mail))
}

impl Mail {
    /// When it was sent, in nanoseconds since the Unix epoch (the unit of
    /// the index's date column and of date filters).
    pub fn date_ns(&self) -> Option<i64> {
        self.date.map(|secs| secs.saturating_mul(1_000_000_000))
    }

    /// Seconds since the Unix epoch of an RFC 3339 date, as in
    /// [`Mail::date_rfc3339`] (for reading a message back from the index).
    pub fn parse_date(rfc3339: &str) -> Option<i64> {
        mail_parser::DateTime::parse_rfc3339(rfc3339).map(|d| d.to_timestamp())
    }
}

impl Document {
    fn with_mail(mut self, mail: Mail) -> Document {
        self.mail = Some(mail);
        self
    }
}

/// The headers a reader needs, as the first lines of the message's text.
fn header_block(mail: &Mail) -> String {
    let mut out = String::new();
    for (name, value) in [
        ("Subject", &mail.subject),
        ("From", &mail.from),
        ("To", &mail.to),
        ("Date", &mail.date_rfc3339),
    ] {
        if let Some(v) = value {
            out.push_str(&format!("{name}: {v}\n"));
        }
    }
    out.push('\n');
    out
}

/// The message's body: its text/plain parts, or its HTML parts converted to
/// text when it has no plain text (mail-parser lists HTML under the text
/// body when there is no alternative).
fn body(msg: &mail_parser::Message) -> String {
    let mut parts = Vec::new();
    for id in &msg.text_body {
        match msg.parts.get(*id as usize).map(|p| &p.body) {
            Some(PartType::Text(t)) => parts.push(t.to_string()),
            Some(PartType::Html(h)) => parts.push(super::html::to_text(h).unwrap_or_default()),
            _ => {}
        }
    }
    parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n\n")
}

/// The text of one attachment, headed by its name, when it is a document
/// ask reads (PDF, text, HTML, office files) or a forwarded message.
fn attachment(part: &mail_parser::MessagePart) -> Option<String> {
    let name = part.attachment_name().unwrap_or("attachment").to_owned();
    if let Some(inner) = part.message() {
        let from = inner.from().map(addresses).unwrap_or_default();
        let subject = inner.subject().map(one_line).unwrap_or_default();
        return Some(format!("Forwarded message from {from}: {subject}\n\n{}", body(inner)));
    }
    let bytes = part.contents();
    if bytes.is_empty() || bytes.len() > MAX_ATTACHMENT {
        return None;
    }
    let kind = match kind::classify(Path::new(&name), bytes) {
        Ok(Some(k)) if k != Kind::Mail => k,
        _ => return None,
    };
    let text = super::extract_one(kind, bytes).ok()?.text();
    (!text.is_empty()).then(|| format!("Attachment {name}:\n\n{text}"))
}

/// The bytes without trailing line ends: in an mbox, the blank line before
/// the next `From ` belongs to no message, and the last message has none.
fn trim_end(raw: &[u8]) -> &[u8] {
    let end = raw.iter().rposition(|&b| b != b'\n' && b != b'\r').map_or(0, |i| i + 1);
    &raw[..end]
}

/// `Name <address>, …`
fn addresses(a: &Address) -> String {
    a.iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(n), Some(e)) if !n.trim().is_empty() => format!("{} <{e}>", one_line(n)),
            (_, Some(e)) => e.to_owned(),
            (Some(n), None) => one_line(n),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folded header text on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(bytes: &[u8]) -> Document {
        let mut docs = extract(bytes).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn encoded_words_and_quoted_printable_are_decoded() {
        // Headers and body as a mail client writes them: RFC 2047 words in
        // two charsets, a quoted-printable Latin-1 body with a soft break.
        let raw = b"From: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.org>\r\n\
To: Bob <bob@example.org>, carol@example.org\r\n\
Subject: =?iso-8859-1?q?R=E9union_=E0_Z=FCrich?=\r\n\
Date: Tue, 05 Mar 2024 14:30:00 +0100\r\n\
Message-ID: <abc123@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Le caf=E9 est pr=EAt, la r=E9union commence =E0 dix heures et demie d=\r\n\
u matin.\r\n";
        let doc = only(raw);
        let mail = doc.mail.as_ref().unwrap();
        assert_eq!(mail.subject.as_deref(), Some("Réunion à Zürich"));
        assert_eq!(mail.from.as_deref(), Some("Zoë Müller <zoe@example.org>"));
        assert_eq!(mail.to.as_deref(), Some("Bob <bob@example.org>, carol@example.org"));
        assert_eq!(mail.message_id.as_deref(), Some("abc123@example.org"));
        assert_eq!(mail.key, "abc123@example.org");
        // 14:30 at +01:00 is 13:30 UTC: 2024-03-05T13:30:00Z.
        assert_eq!(mail.date, Some(1_709_645_400));
        assert_eq!(mail.hash, crate::content_hash(trim_end(raw)));
        let text = &doc.sections[0].text;
        assert!(text.starts_with("Subject: Réunion à Zürich\nFrom: Zoë Müller"), "{text}");
        assert!(text.contains("Le café est prêt, la réunion commence à dix heures et demie du matin."), "{text}");
    }

    #[test]
    fn html_only_bodies_become_text_and_alternatives_prefer_plain() {
        let html = b"From: a@example.org\r\nSubject: news\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><h1>Quarterly</h1><p>Revenue rose <b>12%</b>.</p><script>x()</script></body></html>\r\n";
        let text = &only(html).sections[0].text;
        assert!(text.contains("Quarterly") && text.contains("Revenue rose 12%."), "{text}");
        assert!(!text.contains("<b>") && !text.contains("x()"), "{text}");

        let alt = b"From: a@example.org\r\nSubject: alt\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n\
--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html version</p>\r\n--XX--\r\n";
        let text = &only(alt).sections[0].text;
        assert!(text.contains("plain version") && !text.contains("html version"), "{text}");
    }

    #[test]
    fn text_attachments_are_read_and_binaries_skipped() {
        // "notes.txt" in base64, and a PNG that must not show up as text.
        let raw = b"From: a@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--B\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nVGhlIGJvaWxlciBjb2RlIGlzIDQ0MTIu\r\n\
--B\r\nContent-Type: image/png; name=\"p.png\"\r\nContent-Disposition: attachment; filename=\"p.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n\
--B--\r\n";
        let text = &only(raw).sections[0].text;
        assert!(text.contains("See attached."), "{text}");
        assert!(text.contains("Attachment notes.txt:\n\nThe boiler code is 4412."), "{text}");
        assert!(!text.contains("PNG") && !text.contains("p.png"), "{text}");
    }

    #[test]
    fn an_mbox_is_one_document_per_message() {
        let mbox = b"From a@example.org Mon Mar  4 10:00:00 2024\n\
From: a@example.org\nSubject: one\nMessage-ID: <1@x>\n\nfirst body\n\n\
From b@example.org Tue Mar  5 10:00:00 2024\n\
From: b@example.org\nSubject: two\n\nsecond body\n>From the quoted line\n\n\
From c@example.org Wed Mar  6 10:00:00 2024\n\
From: c@example.org\nSubject: three\nMessage-ID: <1@x>\n\nthird body\n";
        let docs = extract(mbox).unwrap();
        let keys: Vec<&str> = docs.iter().map(|d| d.mail.as_ref().unwrap().key.as_str()).collect();
        // The second has no Message-ID; the third repeats the first's.
        assert_eq!(keys, ["1@x", "#2", "#3"]);
        assert!(docs[1].sections[0].text.contains("second body\nFrom the quoted line"));
        // Growing the mbox keeps the earlier messages' hashes.
        let grown = [mbox.as_slice(), b"\nFrom d@example.org Thu Mar  7 10:00:00 2024\nFrom: d@example.org\nSubject: four\n\nfourth\n"].concat();
        let more = extract(&grown).unwrap();
        assert_eq!(more.len(), 4);
        for (a, b) in docs.iter().zip(&more) {
            assert_eq!(a.mail.as_ref().unwrap().hash, b.mail.as_ref().unwrap().hash);
        }
        // Read from a file a few bytes at a time, the messages are the same;
        // a limit leaves out the messages over it, and only those.
        let streamed: Vec<Document> = mbox_messages(std::io::BufReader::with_capacity(7, mbox.as_slice()), u64::MAX).collect();
        assert_eq!(streamed, docs);
        let long = format!("{}From b@example.org Tue Mar  5 10:00:00 2024\nFrom: b@example.org\nSubject: long\n\n{}\n", std::str::from_utf8(mbox).unwrap(), "word ".repeat(100));
        let small: Vec<String> = mbox_messages(long.as_bytes(), 200).map(|d| d.mail.unwrap().subject.unwrap()).collect();
        assert_eq!(small, ["one", "two", "three"], "the 500-byte message is left out");
    }

    #[test]
    fn apple_mail_emlx_is_the_message_without_its_property_list() {
        let message = b"From: a@example.org\nSubject: emlx\n\nThe gate code is 2580.\n";
        let emlx = [format!("{}\n", message.len()).as_bytes(), message, b"<?xml version=\"1.0\"?><plist><dict/></plist>"].concat();
        let text = &only(&emlx).sections[0].text;
        assert!(text.ends_with("The gate code is 2580."), "{text}");
        assert!(!text.contains("plist"), "{text}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(extract(b"").is_err());
    }
}
