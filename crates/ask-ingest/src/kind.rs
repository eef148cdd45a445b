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
        }
    }

    /// Parses the short name written by [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "text" => Kind::Text,
            "md" => Kind::Markdown,
            "code" => Kind::Code,
            "html" => Kind::Html,
            "pdf" => Kind::Pdf,
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
const UNSUPPORTED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ico", "heic", "svgz", "psd",
    "zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "tar", "jar", "war", "iso", "dmg",
    "mp3", "mp4", "m4a", "m4v", "mov", "avi", "mkv", "webm", "wav", "flac", "ogg", "opus",
    "exe", "dll", "so", "dylib", "o", "a", "lib", "bin", "class", "pyc", "wasm", "rlib",
    "ttf", "otf", "woff", "woff2", "sqlite", "db", "parquet", "arrow", "lance", "safetensors",
    "gguf", "onnx", "pt", "npy", "npz", "doc", "xls", "ppt", "docx", "xlsx", "pptx", "odt",
    "ods", "odp", "epub", "mobi",
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

/// Decides the kind of a file from its name and its bytes.
///
/// `Ok(None)` means "not a document we index" (an image, an unknown binary):
/// skipped quietly. `Err` means the name promised text but the bytes are
/// binary: that is reported, because the user likely expected it indexed.
pub fn classify(path: &Path, bytes: &[u8]) -> Result<Option<Kind>, &'static str> {
    match from_name(path) {
        NameHint::Known(Kind::Pdf) => Ok(Some(Kind::Pdf)),
        NameHint::Known(kind) => {
            if looks_pdf(bytes) && bytes.starts_with(b"%PDF-") {
                Ok(Some(Kind::Pdf))
            } else if looks_binary(bytes) {
                Err("binary content in a file with a text extension")
            } else {
                Ok(Some(kind))
            }
        }
        NameHint::Unsupported => Ok(None),
        NameHint::Unknown => {
            if bytes.starts_with(b"%PDF-") {
                Ok(Some(Kind::Pdf))
            } else if looks_binary(bytes) {
                Ok(None)
            } else {
                Ok(Some(Kind::Text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for k in [Kind::Text, Kind::Markdown, Kind::Code, Kind::Html, Kind::Pdf] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
