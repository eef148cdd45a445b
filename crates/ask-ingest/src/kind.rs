//! Which extractor a file needs, from its name first and its bytes second.
//!
//! Extensions are cheap and usually right; content sniffing catches the rest
//! (a README with no extension, a PDF named `.dat`) and refuses binaries that
//! wear a text extension.

use std::path::Path;

/// The document formats ask can extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Plain text of any other kind (.txt, .log, .csv, extension-less files).
    Text,
    /// Markdown, chunked along its structure.
    Markdown,
    /// Source code and configuration files.
    Code,
    /// HTML, converted to readable text.
    Html,
    /// PDF, extracted page by page.
    Pdf,
    /// E-mail: one `.eml` message, a Maildir message, or an mbox of many.
    Mail,
    /// Word processing (Office Open XML, `.docx`).
    Docx,
    /// Word processing (OpenDocument Text, `.odt`).
    Odt,
    /// An e-book (`.epub`), chapters in spine order.
    Epub,
}

impl Kind {
    /// The short name stored in the index and accepted by `--type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "md",
            Kind::Code => "code",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
            Kind::Mail => "mail",
            Kind::Docx => "docx",
            Kind::Odt => "odt",
            Kind::Epub => "epub",
        }
    }

    /// Every kind, for listings and tests.
    pub const ALL: [Kind; 9] = [
        Kind::Text,
        Kind::Markdown,
        Kind::Code,
        Kind::Html,
        Kind::Pdf,
        Kind::Mail,
        Kind::Docx,
        Kind::Odt,
        Kind::Epub,
    ];

    /// True for the formats whose extracted text is Markdown-shaped
    /// (headings as `#` lines), which the chunker splits along headings.
    pub fn is_markdown_like(self) -> bool {
        matches!(self, Kind::Markdown | Kind::Docx | Kind::Odt | Kind::Epub)
    }

    /// True for zip-based formats, which are binary by nature.
    fn is_archive(self) -> bool {
        matches!(self, Kind::Docx | Kind::Odt | Kind::Epub)
    }

    /// Parses the short name written by [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "text" => Kind::Text,
            "md" => Kind::Markdown,
            "code" => Kind::Code,
            "html" => Kind::Html,
            "pdf" => Kind::Pdf,
            "mail" => Kind::Mail,
            "docx" => Kind::Docx,
            "odt" => Kind::Odt,
            "epub" => Kind::Epub,
            _ => return None,
        })
    }
}

/// What the file name says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameHint {
    /// A known document extension: this file should be extractable.
    Known(Kind),
    /// A known binary format we do not read (images, archives, media).
    Unsupported,
    /// No opinion: sniff the content.
    Unknown,
}

const CODE: &[&str] = &[
    "rs", "py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "c", "h", "cc", "cpp", "cxx",
    "hpp", "hh", "java", "kt", "kts", "scala", "rb", "php", "pl", "pm", "sh", "bash", "zsh",
    "fish", "ps1", "lua", "r", "jl", "swift", "m", "mm", "cs", "fs", "hs", "ml", "mli", "ex",
    "exs", "erl", "clj", "el", "vim", "sql", "toml", "yaml", "yml", "json", "jsonl", "ini",
    "cfg", "conf", "xml", "css", "scss", "sass", "less", "vue", "svelte", "dart", "zig", "nim",
    "proto", "gradle", "cmake", "mk", "dockerfile", "tf", "nix",
];
const TEXT: &[&str] = &[
    "txt", "text", "log", "csv", "tsv", "rst", "org", "adoc", "asciidoc", "tex", "bib", "srt",
    "vtt", "diff", "patch",
];
const MARKDOWN: &[&str] = &["md", "markdown", "mdx", "mkd", "mdown"];
const HTML: &[&str] = &["html", "htm", "xhtml"];
const MAIL: &[&str] = &["eml", "emlx", "mbox", "mbx"];
const UNSUPPORTED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ico", "heic", "svgz", "psd",
    "zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "tar", "jar", "war", "iso", "dmg",
    "mp3", "mp4", "m4a", "m4v", "mov", "avi", "mkv", "webm", "wav", "flac", "ogg", "opus",
    "exe", "dll", "so", "dylib", "o", "a", "lib", "bin", "class", "pyc", "wasm", "rlib",
    "ttf", "otf", "woff", "woff2", "sqlite", "db", "parquet", "arrow", "lance", "safetensors",
    "gguf", "onnx", "pt", "npy", "npz", "doc", "xls", "ppt", "xlsx", "pptx", "ods", "odp",
    "mobi",
    // Mail clients' own indexes beside the mailboxes (Thunderbird's Mork
    // summaries, Apple Mail's tables of contents): text-like, but not mail.
    "msf", "toc", "emlxpart",
];

/// Classifies a path by its extension (case-insensitive).
pub fn from_name(path: &Path) -> NameHint {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return NameHint::Unknown;
    };
    let ext = ext.to_ascii_lowercase();
    let ext = ext.as_str();
    if ext == "pdf" {
        NameHint::Known(Kind::Pdf)
    } else if ext == "docx" {
        NameHint::Known(Kind::Docx)
    } else if ext == "odt" {
        NameHint::Known(Kind::Odt)
    } else if ext == "epub" {
        NameHint::Known(Kind::Epub)
    } else if MAIL.contains(&ext) {
        NameHint::Known(Kind::Mail)
    } else if MARKDOWN.contains(&ext) {
        NameHint::Known(Kind::Markdown)
    } else if HTML.contains(&ext) {
        NameHint::Known(Kind::Html)
    } else if CODE.contains(&ext) {
        NameHint::Known(Kind::Code)
    } else if TEXT.contains(&ext) {
        NameHint::Known(Kind::Text)
    } else if UNSUPPORTED.contains(&ext) {
        NameHint::Unsupported
    } else {
        NameHint::Unknown
    }
}

/// True when the first bytes look like a binary file rather than text.
///
/// Uses the same heuristic as bat (NUL bytes, known magic numbers), which
/// keeps UTF-16 with a byte-order mark on the text side.
pub fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    content_inspector::inspect(head).is_binary()
}

/// True when the bytes start like a PDF.
pub fn looks_pdf(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

/// True when the bytes start like an mbox: a `From ` separator line
/// followed by a header block.
pub fn looks_mbox(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ")
        && bytes.iter().position(|&b| b == b'\n').is_some_and(|nl| looks_message(&bytes[nl + 1..]))
}

/// Bytes of a file's start that [`is_mbox`] needs.
pub const HEAD_BYTES: u64 = 16 * 1024;

/// Whether a file whose first bytes are `head` is an mbox, to be read a
/// message at a time: it starts like one and its name does not say
/// otherwise (a Markdown file is Markdown, whatever its first line).
pub fn is_mbox(path: &Path, head: &[u8]) -> bool {
    looks_mbox(head) && classify(path, head) == Ok(Some(Kind::Mail))
}

/// [`is_mbox`] for the file at `path`, reading its first [`HEAD_BYTES`]
/// (an unreadable file is not one).
pub fn is_mbox_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head));
    read.is_ok() && is_mbox(path, &head)
}

/// True when the bytes start like one RFC 5322 message: a block of header
/// fields that names a sender and at least one of date, subject or message
/// id, ended by a blank line.
pub fn looks_message(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(16 * 1024)];
    let Ok(head) = std::str::from_utf8(head).or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()])) else {
        return false;
    };
    let (mut from, mut other, mut fields) = (false, false, 0);
    for line in head.lines() {
        if line.is_empty() {
            return fields > 0 && from && other;
        }
        if line.starts_with([' ', '\t']) {
            if fields == 0 {
                return false;
            }
            continue; // a folded continuation
        }
        let Some((name, _)) = line.split_once(':') else { return false };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        fields += 1;
        match name.to_ascii_lowercase().as_str() {
            "from" => from = true,
            "date" | "subject" | "message-id" => other = true,
            _ => {}
        }
    }
    // Headers to the very end: a message with no body.
    bytes.len() <= head.len() && fields > 0 && from && other
}

/// Where a file sits in a Maildir: `Some(true)` in `cur/` or `new/` (a
/// delivered message), `Some(false)` in `tmp/` (a delivery in progress, never
/// indexed), `None` outside any Maildir. A folder is a Maildir when it holds
/// all three of `cur`, `new` and `tmp`.
pub fn maildir_slot(path: &Path) -> Option<bool> {
    let dir = path.parent()?;
    let slot = dir.file_name()?.to_str()?;
    if !matches!(slot, "cur" | "new" | "tmp") {
        return None;
    }
    let maildir = dir.parent()?;
    let is_maildir = ["cur", "new", "tmp"].iter().all(|d| maildir.join(d).is_dir());
    is_maildir.then_some(slot != "tmp")
}

/// A file whose name promises text holds binary data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("binary content in a file with a text extension")]
pub struct BinaryContent;

/// Decides the kind of a file from its name and its bytes.
///
/// `Ok(None)` means "not a document we index" (an image, an unknown binary):
/// skipped quietly. `Err` means the name promised text but the bytes are
/// binary: that is reported, because the user likely expected it indexed.
pub fn classify(path: &Path, bytes: &[u8]) -> Result<Option<Kind>, BinaryContent> {
    match maildir_slot(path) {
        Some(false) => return Ok(None),
        Some(true) if !looks_binary(bytes) => return Ok(Some(Kind::Mail)),
        _ => {}
    }
    match from_name(path) {
        NameHint::Known(Kind::Pdf) => Ok(Some(Kind::Pdf)),
        NameHint::Known(kind) if kind.is_archive() => Ok(Some(kind)),
        NameHint::Known(kind) => {
            if looks_pdf(bytes) && bytes.starts_with(b"%PDF-") {
                Ok(Some(Kind::Pdf))
            } else if looks_binary(bytes) {
                Err(BinaryContent)
            } else if kind == Kind::Text && (looks_mbox(bytes) || looks_message(bytes)) {
                Ok(Some(Kind::Mail))
            } else {
                Ok(Some(kind))
            }
        }
        NameHint::Unsupported => Ok(None),
        NameHint::Unknown => Ok(sniff(bytes)),
    }
}

/// The kind of a document by its content alone (a file without a telling
/// name, standard input): PDF, mail (an mbox or one message), HTML,
/// other text; None for binary data.
pub fn sniff(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(b"%PDF-") {
        Some(Kind::Pdf)
    } else if looks_binary(bytes) {
        None
    } else if looks_mbox(bytes) || looks_message(bytes) {
        Some(Kind::Mail)
    } else if looks_html(bytes) {
        Some(Kind::Html)
    } else {
        Some(Kind::Text)
    }
}

/// A page that says it is HTML at its start.
fn looks_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).trim_start().to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_without_a_name() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Some(Kind::Pdf));
        assert_eq!(sniff(b"From a@example.org Mon Mar  4 10:00:00 2024\nFrom: A <a@example.org>\nSubject: Hi\n\nHi\n"), Some(Kind::Mail));
        assert_eq!(sniff(b"  <!DOCTYPE html><title>x</title>"), Some(Kind::Html));
        assert_eq!(sniff(b"commit 1a2b\nAuthor: A\n\n    Fix the crane\n"), Some(Kind::Text));
        assert_eq!(sniff(b"\x00\x01\x02\x00binary"), None);
        // A file without an extension is sniffed the same way.
        assert_eq!(classify(Path::new("NOTES"), b"<html><body>x</body></html>"), Ok(Some(Kind::Html)));
    }

    #[test]
    fn names_decide_first() {
        assert_eq!(from_name(Path::new("a/B.MD")), NameHint::Known(Kind::Markdown));
        assert_eq!(from_name(Path::new("x.rs")), NameHint::Known(Kind::Code));
        assert_eq!(from_name(Path::new("x.jpeg")), NameHint::Unsupported);
        assert_eq!(from_name(Path::new("README")), NameHint::Unknown);
    }

    #[test]
    fn binary_with_text_extension_is_an_error() {
        let bytes = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0";
        assert!(classify(Path::new("notes.txt"), bytes).is_err());
        assert_eq!(classify(Path::new("prog"), bytes), Ok(None));
    }

    #[test]
    fn sniffing_finds_text_and_pdf_without_extension() {
        assert_eq!(classify(Path::new("README"), b"hello\n"), Ok(Some(Kind::Text)));
        assert_eq!(classify(Path::new("scan.dat"), b"%PDF-1.4\n..."), Ok(Some(Kind::Pdf)));
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }

    const MESSAGE: &[u8] = b"Received: from mx.example.org\r\n\tby host; Mon, 4 Mar 2024\r\n\
        From: Ada <ada@example.org>\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn mail_is_recognised_by_content() {
        assert!(looks_message(MESSAGE));
        let mbox = [b"From ada@example.org Mon Mar  4 10:00:00 2024\n".as_slice(), MESSAGE].concat();
        assert!(looks_mbox(&mbox));
        assert_eq!(classify(Path::new("Inbox"), &mbox), Ok(Some(Kind::Mail)));
        // Read a message at a time: an mbox by content, unless its name
        // says it is something else.
        assert!(is_mbox(Path::new("Inbox"), &mbox) && is_mbox(Path::new("a.mbox"), &mbox) && is_mbox(Path::new("saved.txt"), &mbox));
        assert!(!is_mbox(Path::new("notes.md"), &mbox));
        assert!(!is_mbox(Path::new("Inbox"), MESSAGE), "one message without a From_ line is not an mbox");
        assert_eq!(classify(Path::new("saved.txt"), MESSAGE), Ok(Some(Kind::Mail)));
        // Prose that happens to start with a colon line is not mail.
        assert!(!looks_message(b"Note: buy milk\n\nand eggs\n"));
        assert!(!looks_mbox(b"From here on, we walk.\nNothing else.\n"));
        // A Markdown file keeps its kind even with front matter that looks like headers.
        assert_eq!(classify(Path::new("a.md"), MESSAGE), Ok(Some(Kind::Markdown)));
    }

    #[test]
    fn maildir_messages_are_mail_and_tmp_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let cur = dir.path().join("cur/1700000000.M1P1.host:2,S");
        assert_eq!(maildir_slot(&cur), Some(true));
        assert_eq!(classify(&cur, b"Subject: no sender\n\nhi"), Ok(Some(Kind::Mail)));
        assert_eq!(classify(&dir.path().join("tmp/1700000001.M2P2.host"), MESSAGE), Ok(None));
        assert_eq!(maildir_slot(&dir.path().join("x/cur/m")), None);
    }

    #[test]
    fn office_and_ebook_files_are_archives_not_binaries() {
        let zip = b"PK\x03\x04\x14\0\0\0\x08\0";
        assert_eq!(classify(Path::new("r.docx"), zip), Ok(Some(Kind::Docx)));
        assert_eq!(classify(Path::new("r.ODT"), zip), Ok(Some(Kind::Odt)));
        assert_eq!(classify(Path::new("b.epub"), zip), Ok(Some(Kind::Epub)));
    }
}
