//! The key-file format: a [`KeyRing`] as text, which an operator keeps outside the
//! repository (a file, an environment variable, a secret store).
//!
//! ```text
//! # chronicle key ring: the first key is the active one
//! 2026-11=7Jq0eG2vO1nM3kPqR5sT8uV0wX2yZ4aB6cD8eF0gH2I=
//! 2026-01=3f1c0a5e9b7d2c4a6e8f0b1d3c5e7a9b2d4f6a8c0e2b4d6f8a1c3e5b7d9f0a2c
//! ```
//!
//! One key a line, `key_id=key`: the id as the store knows it (1 to 255 bytes), the key's
//! 32 bytes as 64 hexadecimal digits or as base64 (standard alphabet, padding optional).
//! Blank lines and lines starting with `#` are ignored; spaces around the id and the key
//! are trimmed. The first key encrypts; all of them decrypt. Errors name the line, never a
//! key.

use super::KeyRing;
use crate::error::{Result, ValidationError};

impl KeyRing {
    /// The ring a key file's `text` holds (the format above).
    ///
    /// ```
    /// use chronicle::KeyRing;
    ///
    /// let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// let ring = KeyRing::from_key_file(&format!("# keys\n2026-11={hex}\n"))?;
    /// assert_eq!(ring.active_key_id(), "2026-11");
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ValidationError::Config`] naming the line (never the key): no `=`, a key that is
    /// not 32 bytes, a bad or repeated id, or no key at all.
    pub fn from_key_file(text: &str) -> Result<KeyRing> {
        parse(text)
            .map_err(|problem| ValidationError::Config(format!("key file: {problem}")).into())
    }
}

/// Parses a key file's text; the problem names the line.
fn parse(text: &str) -> std::result::Result<KeyRing, String> {
    let mut ring: Option<KeyRing> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, key)) = line.split_once('=') else {
            return Err(format!("line {number}: expected `key_id=key`"));
        };
        let id = id.trim();
        let key = decode_key(key.trim()).ok_or_else(|| {
            format!("line {number}: the key of `{id}` is not 32 bytes in hex (64 digits) or base64")
        })?;
        let added = match ring {
            None => KeyRing::new(id, key),
            Some(ring) => ring.with_key(id, key),
        };
        ring = Some(added.map_err(|error| format!("line {number}: {error}"))?);
    }
    ring.ok_or_else(|| "it holds no key (lines `key_id=key`)".to_owned())
}

/// 32 bytes from 64 hex digits or from base64.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        decode_hex(text)?
    } else {
        decode_base64(text)?
    };
    bytes.try_into().ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    digits
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// Standard base64 (`+` and `/`), with or without `=` padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    // Leftover bits must be padding zeros, and a lone 6 bits is no byte.
    (bits < 6 && buffer & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn hex_and_base64_give_the_same_key() {
        assert_eq!(decode_key(HEX), decode_key(BASE64));
        assert_eq!(decode_key(BASE64.trim_end_matches('=')), decode_key(HEX));
        let key = decode_key(HEX).expect("key");
        assert_eq!(key[31], 31);
    }

    #[test]
    fn the_first_key_is_active() {
        let ring = parse(&format!("# ring\n\nnew = {BASE64}\nold={HEX}\n")).expect("ring");
        assert_eq!(ring.active_key_id(), "new");
    }

    #[test]
    fn problems_name_the_line_but_never_the_key() {
        let short = "k=AAEC";
        let error = parse(&format!("a={HEX}\n{short}")).expect_err("short key");
        assert!(error.starts_with("line 2:"), "{error}");
        assert!(!error.contains("AAEC"), "{error}");
        assert!(parse("no separator").expect_err("no =").contains("line 1"));
        assert!(parse("# nothing\n").is_err());
        assert!(
            parse(&format!("a={HEX}\na={BASE64}")).is_err(),
            "duplicate id"
        );
        assert!(decode_key(&"g".repeat(64)).is_none());
        assert!(decode_base64("A").is_none());
    }
}
