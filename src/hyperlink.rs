//! Sources that open: on a terminal, a passage's file and lines are an OSC 8
//! hyperlink (`file://HOST/PATH#LINE`, the form ripgrep's
//! `--hyperlink-format kitty` writes), which terminals that know OSC 8 open
//! on a click and others print as the plain text. Off when standard output
//! is not a terminal, under `NO_COLOR` (no-color.org: set and not empty),
//! and for `TERM=dumb`.

use std::io::IsTerminal;

/// Whether and how to link the sources printed on standard output.
pub struct Links {
    /// This machine's name, for the URI's host (empty if unknown, which
    /// terminals read as the local machine too).
    host: Option<String>,
}

impl Links {
    /// Links for standard output, as the environment allows.
    pub fn for_stdout() -> Links {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let on = std::io::stdout().is_terminal() && !no_color && !dumb;
        Links { host: on.then(hostname) }
    }

    /// `text`, linked to line `line` of the file whose path key (as the
    /// index stores it) is `path`, when links are on.
    pub fn wrap(&self, text: &str, path: &ask_ingest::PathKey, line: u32) -> String {
        use std::os::unix::ffi::OsStrExt;
        match &self.host {
            Some(host) => {
                let path = path.to_path();
                format!("\x1b]8;;{}\x1b\\{text}\x1b]8;;\x1b\\", file_uri(host, path.as_os_str().as_bytes(), line))
            }
            None => text.to_owned(),
        }
    }
}

/// `file://HOST/PATH#LINE`, the path percent-encoded but for its slashes
/// and the characters URIs leave as they are (RFC 3986's unreserved).
fn file_uri(host: &str, path: &[u8], line: u32) -> String {
    let mut uri = format!("file://{host}");
    for &b in path {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str(&format!("#{line}"));
    uri
}

/// The machine's name, as uname(2) gives it; empty if a URI could not
/// carry it as it is.
fn hostname() -> String {
    match rustix::system::uname().nodename().to_str() {
        Ok(name) if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') => name.to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_but_for_slashes() {
        assert_eq!(file_uri("box", b"/home/me/notes/a.md", 3), "file://box/home/me/notes/a.md#3");
        assert_eq!(file_uri("", b"/home/me/Ma note #1.md", 1), "file:///home/me/Ma%20note%20%231.md#1");
        assert_eq!(file_uri("box", "/tmp/café".as_bytes(), 9), "file://box/tmp/caf%C3%A9#9");
        // A name that is not UTF-8 (Latin-1 é), byte for byte.
        assert_eq!(file_uri("box", b"/tmp/caf\xe9", 1), "file://box/tmp/caf%E9#1");
    }

    #[test]
    fn a_link_wraps_its_text_and_none_leaves_it() {
        let on = Links { host: Some("box".into()) };
        let key = ask_ingest::PathKey::of(std::path::Path::new("/n/a.md"));
        assert_eq!(on.wrap("a.md:3-9", &key, 3), "\x1b]8;;file://box/n/a.md#3\x1b\\a.md:3-9\x1b]8;;\x1b\\");
        assert_eq!(Links { host: None }.wrap("a.md:3-9", &key, 3), "a.md:3-9");
    }
}
