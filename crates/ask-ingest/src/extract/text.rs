//! Text decoding that never drops a file: UTF-8 when it is UTF-8, the
//! byte-order mark's encoding when there is one, Windows-1252 (a superset of
//! Latin-1, and what most non-UTF-8 Western text really is) otherwise.

/// Decodes bytes to text. The flag is true when UTF-8 failed and a fallback
/// decoding was used.
pub fn decode(bytes: &[u8]) -> (String, bool) {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return (text.into_owned(), encoding != encoding_rs::UTF_8);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => {
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
            (text.into_owned(), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn utf8_passes_through() {
        assert_eq!(decode("naïve café".as_bytes()), ("naïve café".to_owned(), false));
    }

    #[test]
    fn latin1_is_decoded_not_dropped() {
        // "café" in ISO-8859-1: é is the single byte 0xE9.
        assert_eq!(decode(b"caf\xe9"), ("café".to_owned(), true));
    }

    #[test]
    fn utf16_with_bom() {
        let bytes = [0xFF, 0xFE, b'h', 0, b'i', 0];
        assert_eq!(decode(&bytes).0, "hi");
    }
}
