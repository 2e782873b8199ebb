//! The encoding Kroki URLs carry diagrams in: the source compressed with deflate (zlib framing,
//! as Kroki's own clients write it; raw deflate is accepted too), then base64url.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use flate2::Compression;
use flate2::read::{DeflateDecoder, ZlibDecoder};
use flate2::write::ZlibEncoder;

use crate::render::RenderError;

/// Encodes a diagram for a `GET /{type}/svg/{encoded}` URL.
pub fn encode(source: &str) -> String {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(source.as_bytes());
    let compressed = encoder.finish().unwrap_or_default();
    URL_SAFE_NO_PAD.encode(compressed)
}

/// Decodes a URL's diagram, reading at most `limit` bytes of source: a small URL must not
/// inflate into gigabytes.
pub fn decode(encoded: &str, limit: usize) -> Result<String, RenderError> {
    let trimmed = encoded.trim().trim_end_matches('=');
    let compressed = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE.decode(encoded.trim()))
        .map_err(|e| {
            RenderError::Invalid(format!(
                "the diagram in the URL is not base64url (Kroki's encoding: deflate, then \
                 base64url): {e}"
            ))
        })?;
    let mut source = Vec::new();
    let zlib = ZlibDecoder::new(compressed.as_slice())
        .take(limit as u64 + 1)
        .read_to_end(&mut source);
    if zlib.is_err() {
        source.clear();
        DeflateDecoder::new(compressed.as_slice())
            .take(limit as u64 + 1)
            .read_to_end(&mut source)
            .map_err(|e| {
                RenderError::Invalid(format!(
                    "the diagram in the URL does not inflate (Kroki's encoding: deflate, then \
                     base64url): {e}"
                ))
            })?;
    }
    if source.len() > limit {
        return Err(RenderError::PayloadTooLarge {
            size: source.len(),
            limit,
        });
    }
    String::from_utf8(source)
        .map_err(|_| RenderError::Invalid("the diagram in the URL is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_raw_deflate() {
        let source = "digraph { a -> b [label=\"é\"] }";
        assert_eq!(decode(&encode(source), 1000).unwrap(), source);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(source.as_bytes()).unwrap();
        let raw = URL_SAFE.encode(raw.finish().unwrap());
        assert_eq!(decode(&raw, 1000).unwrap(), source);
    }

    #[test]
    fn refuses_junk_and_bombs() {
        assert!(matches!(decode("!!!", 100), Err(RenderError::Invalid(_))));
        let big = "x".repeat(10_000);
        assert!(matches!(
            decode(&encode(&big), 100),
            Err(RenderError::PayloadTooLarge { .. })
        ));
    }
}
