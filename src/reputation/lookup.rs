//! [`LookupKey`]: the one hash of a file that is sent to providers and
//! used as the cache and queue key.
//!
//! A Sysmon event may carry MD5, SHA-1, SHA-256 and IMPHASH at once. Every
//! provider accepts any of the first three, so one is enough, and using the
//! same one every time keeps the cache from holding the same file under
//! three keys. SHA-256 is preferred (VirusTotal's object id, collision
//! free), then SHA-1, then MD5. IMPHASH names an import table, not a file,
//! so it is never looked up.
//!
//! Keys are stored algorithm-tagged (`sha256:<hex>`), lower-case, so an
//! MD5 and an IMPHASH with the same digits can never meet in the cache.

use crate::sysmon::hashes::{FileHashes, Md5, Sha1, Sha256};
use std::fmt;

/// The hash a file is looked up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupKey {
    /// SHA-256 (preferred).
    Sha256(Sha256),
    /// SHA-1.
    Sha1(Sha1),
    /// MD5.
    Md5(Md5),
}

impl LookupKey {
    /// The preferred key of a file: SHA-256, else SHA-1, else MD5; `None`
    /// when only an IMPHASH (or nothing) is known.
    pub fn from_hashes(h: &FileHashes) -> Option<LookupKey> {
        h.sha256
            .map(LookupKey::Sha256)
            .or(h.sha1.map(LookupKey::Sha1))
            .or(h.md5.map(LookupKey::Md5))
    }

    /// Every lookup-able hash of a file, preferred first (for matching a
    /// list that may name the file by any of them).
    pub fn all_of(h: &FileHashes) -> impl Iterator<Item = LookupKey> {
        [
            h.sha256.map(LookupKey::Sha256),
            h.sha1.map(LookupKey::Sha1),
            h.md5.map(LookupKey::Md5),
        ]
        .into_iter()
        .flatten()
    }

    /// A bare hex hash of any supported width (32, 40 or 64 characters,
    /// any case); the width decides the algorithm.
    pub fn parse_hex(text: &str) -> Option<LookupKey> {
        let t = text.trim().as_bytes();
        match t.len() {
            64 => Sha256::parse(t).map(LookupKey::Sha256),
            40 => Sha1::parse(t).map(LookupKey::Sha1),
            32 => Md5::parse(t).map(LookupKey::Md5),
            _ => None,
        }
    }

    /// The tagged form written by [`LookupKey::tagged`].
    pub fn parse_tagged(text: &str) -> Option<LookupKey> {
        let (alg, hex) = text.split_once(':')?;
        let hex = hex.as_bytes();
        match alg {
            "sha256" => Sha256::parse(hex).map(LookupKey::Sha256),
            "sha1" => Sha1::parse(hex).map(LookupKey::Sha1),
            "md5" => Md5::parse(hex).map(LookupKey::Md5),
            _ => None,
        }
    }

    /// `md5`, `sha1` or `sha256` (also the path segment CIRCL expects).
    pub fn algorithm(&self) -> &'static str {
        match self {
            LookupKey::Sha256(_) => "sha256",
            LookupKey::Sha1(_) => "sha1",
            LookupKey::Md5(_) => "md5",
        }
    }

    /// The lower-case hex digest.
    pub fn hex(&self) -> &str {
        match self {
            LookupKey::Sha256(d) => d.as_str(),
            LookupKey::Sha1(d) => d.as_str(),
            LookupKey::Md5(d) => d.as_str(),
        }
    }

    /// `algorithm:hex`, the cache and queue key.
    pub fn tagged(&self) -> String {
        format!("{}:{}", self.algorithm(), self.hex())
    }
}

impl fmt::Display for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "596B3DBF07A287DCF76860B5E54762C3";
    const SHA1: &str = "a34fd5e57d75d17bc2d84055ca4752e5ee2e92f5";
    const SHA256: &str = "0661d87116f44cbd5b5c6bec7fb06c4e5cd5b6ecbc5455d959e65f1ee46c54c8";

    #[test]
    fn prefers_sha256_then_sha1_then_md5_never_imphash() {
        let all = FileHashes::parse_sysmon(
            format!("MD5={MD5},SHA1={SHA1},SHA256={SHA256},IMPHASH={MD5}").as_bytes(),
        );
        assert_eq!(LookupKey::from_hashes(&all).unwrap().algorithm(), "sha256");
        let no256 = FileHashes {
            sha256: None,
            ..all
        };
        assert_eq!(LookupKey::from_hashes(&no256).unwrap().algorithm(), "sha1");
        let md5 = FileHashes {
            sha1: None,
            ..no256
        };
        let k = LookupKey::from_hashes(&md5).unwrap();
        assert_eq!(k.tagged(), format!("md5:{}", MD5.to_ascii_lowercase()));
        let imphash_only = FileHashes { md5: None, ..md5 };
        assert!(LookupKey::from_hashes(&imphash_only).is_none());
        assert_eq!(LookupKey::all_of(&all).count(), 3);
    }

    #[test]
    fn tagged_and_hex_round_trip() {
        for hex in [MD5, SHA1, SHA256] {
            let k = LookupKey::parse_hex(hex).unwrap();
            assert_eq!(k.hex(), hex.to_ascii_lowercase());
            assert_eq!(LookupKey::parse_tagged(&k.tagged()), Some(k));
        }
        assert!(LookupKey::parse_hex("abc").is_none());
        assert!(LookupKey::parse_tagged(&format!("imphash:{MD5}")).is_none());
        assert!(LookupKey::parse_tagged(&format!("sha1:{MD5}")).is_none());
    }
}
