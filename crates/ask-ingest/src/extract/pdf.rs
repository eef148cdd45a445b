//! PDF text, page by page, with pdf-extract.
//!
//! pdf-extract panics on some malformed files instead of returning an error,
//! so extraction runs under `catch_unwind`, and a panic hook keeps those
//! expected panics from printing a backtrace-style message to the user.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use super::{Document, ExtractError, Section};

thread_local! {
    static IN_EXTRACTOR: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics raised inside
/// an extractor, which are turned into [`ExtractError`]s, and defers to the
/// previous hook for every other panic.
pub fn silence_extractor_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_EXTRACTOR.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

pub(super) fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    if !bytes.starts_with(b"%PDF-") && !super::super::kind::looks_pdf(bytes) {
        return Err(ExtractError::Pdf("no PDF header".into()));
    }
    IN_EXTRACTOR.with(|f| f.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
    }));
    IN_EXTRACTOR.with(|f| f.set(false));
    let pages = match result {
        Ok(Ok(pages)) => pages,
        Ok(Err(e)) => {
            let msg = e.to_string();
            if msg.to_ascii_lowercase().contains("encrypt") || msg.contains("password") {
                return Err(ExtractError::Encrypted);
            }
            return Err(ExtractError::Pdf(msg));
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the PDF parser failed".into());
            if msg.to_ascii_lowercase().contains("encrypt") {
                return Err(ExtractError::Encrypted);
            }
            return Err(ExtractError::Pdf(first_line(&msg)));
        }
    };
    let sections = pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| Section { text, page: Some(i as u32 + 1) })
        .collect();
    Ok(Document { sections, lossy: false, mail: None })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        silence_extractor_panics();
        assert!(extract(b"%PDF-1.7\n this is not really a pdf \n%%EOF").is_err());
        assert!(extract(b"not a pdf at all").is_err());
    }
}
