//! The fingerprint of a server's TLS certificate: what `victor serve --tls` prints and what a
//! client pins. It lives here because server and clients must agree on its one text format,
//! which is the SHA-256 of the certificate (DER) written `SHA256:AB:CD:…`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_certificate(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

/// Constant time, like every comparison of something that guards a connection, although a
/// certificate is public: no timing ever tells how close a forged one came.
impl PartialEq for Fingerprint {
    fn eq(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// `SHA256:` and the 32 bytes as uppercase hex pairs separated by colons, as OpenSSL prints
/// them (`openssl x509 -noout -fingerprint -sha256` shows the same pairs).
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a certificate fingerprint: expected the 64 hex digits of a SHA-256, with or \
     without colons and the `SHA256:` prefix (victor serve --tls prints it)"
)]
pub struct BadFingerprint(String);

/// Accepts what people copy: with or without the `SHA256:` prefix, with or without colons (or
/// spaces), in any case.
impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(text: &str) -> Result<Fingerprint, BadFingerprint> {
        let bad = || BadFingerprint(text.to_string());
        let trimmed = text.trim();
        let hex_part = match trimmed.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
            _ => trimmed,
        };
        let digits: Vec<u8> = hex_part
            .bytes()
            .filter(|b| !matches!(b, b':' | b' '))
            .collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_sha256_as_uppercase_pairs_and_parses_what_people_paste() {
        let fingerprint = Fingerprint::of_certificate(b"not really a certificate");
        let text = fingerprint.to_string();
        assert!(text.starts_with("SHA256:"));
        assert_eq!(text.len(), 7 + 32 * 2 + 31);
        assert_eq!(text, text.to_uppercase());
        let bare: String = text[7..].chars().filter(|c| *c != ':').collect();
        for pasted in [
            text.clone(),
            text.to_lowercase(),
            bare.clone(),
            bare.to_lowercase(),
            format!("  sha256:{bare}\n"),
            text[7..].to_string(),
        ] {
            assert_eq!(pasted.parse::<Fingerprint>(), Ok(fingerprint), "{pasted}");
        }
    }

    #[test]
    fn refuses_anything_but_64_hex_digits() {
        for bad in [
            "",
            "SHA256:",
            "AB:CD",
            &"G".repeat(64),
            &"A".repeat(66),
            "SHA1:AB",
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
        // A multibyte character must not panic the pairing.
        assert!(
            format!("é{}", "A".repeat(62))
                .parse::<Fingerprint>()
                .is_err()
        );
    }

    #[test]
    fn round_trips_through_serde_as_its_text() {
        let fingerprint = Fingerprint::of_certificate(b"x");
        let json = serde_json::to_string(&fingerprint).unwrap();
        assert_eq!(json, format!("\"{fingerprint}\""));
        assert_eq!(
            serde_json::from_str::<Fingerprint>(&json).unwrap(),
            fingerprint
        );
    }
}
