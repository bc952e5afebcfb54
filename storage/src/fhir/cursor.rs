//! Keyset cursors for paged searches: where the next (or previous) page starts, as the
//! sort key of the row it starts after, never an offset. Rows stored meanwhile neither
//! shift a page nor repeat one, and a page deep in a week of ECG costs what the first does.
//!
//! A cursor is opaque to clients: base64url of the direction and the key, followed by an
//! HMAC-SHA-256 tag (truncated to 128 bits) over the resource type, the search's canonical
//! parameters and the payload. The key is random per server process: a cursor altered, or
//! replayed on another search, or presented after a restart, is refused
//! ([`FhirError::BadCursor`]) and the client searches again. Access is checked on every
//! page anyway; the tag keeps a client from steering a search it did not make.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use crate::error::{Error, FhirError};

/// The version of the cursor layout.
const VERSION: u8 = 1;
/// Bytes of the tag kept.
const TAG_BYTES: usize = 16;

/// Which way a page goes from its cursor's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The rows after the key, in the search's order (a `next` link).
    After,
    /// The rows before the key (a `previous` link).
    Before,
}

/// A position in a search: the sort key of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Which way the page goes.
    pub direction: Direction,
    /// The row's primary sort value (µs).
    pub time: i64,
    /// The row's tie-breaker: its batch's header hash and position.
    pub batch: [u8; 32],
    /// Its position in the batch.
    pub position: i64,
}

/// The process's MAC key: one SHA-256 block, HMAC's natural key length.
fn key() -> &'static [u8; 64] {
    static KEY: OnceLock<[u8; 64]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0_u8; 64];
        OsRng.fill_bytes(&mut key);
        key
    })
}

fn tag(kind: &str, search: &[(String, String)], payload: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new(key().into());
    // Lengths before contents: no two searches feed the MAC the same bytes.
    for part in std::iter::once(kind).chain(
        search
            .iter()
            .flat_map(|(name, value)| [name.as_str(), value.as_str()]),
    ) {
        mac.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac.update(payload);
    let full = mac.finalize().into_bytes();
    let mut tag = [0_u8; TAG_BYTES];
    tag.copy_from_slice(&full[..TAG_BYTES]);
    tag
}

impl Cursor {
    /// The token for this cursor in search `search` of `kind`.
    pub fn encode(&self, kind: &str, search: &[(String, String)]) -> String {
        let mut payload = Vec::with_capacity(50 + TAG_BYTES);
        payload.push(VERSION);
        payload.push(match self.direction {
            Direction::After => 0,
            Direction::Before => 1,
        });
        payload.extend_from_slice(&self.time.to_be_bytes());
        payload.extend_from_slice(&self.position.to_be_bytes());
        payload.extend_from_slice(&self.batch);
        let tag = tag(kind, search, &payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Reads a token issued by [`Cursor::encode`] for the same search of `kind`.
    pub fn decode(token: &str, kind: &str, search: &[(String, String)]) -> Result<Self, Error> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| FhirError::BadCursor("not a cursor"))?;
        if bytes.len() != 50 + TAG_BYTES || bytes[0] != VERSION {
            return Err(FhirError::BadCursor("not a cursor of this version").into());
        }
        let (payload, given) = bytes.split_at(50);
        let expected = tag(kind, search, payload);
        // Constant time: the tag is a MAC.
        let difference = expected
            .iter()
            .zip(given)
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(FhirError::BadCursor(
                "altered, issued for another search, or issued before the server restarted",
            )
            .into());
        }
        let direction = match payload[1] {
            0 => Direction::After,
            1 => Direction::Before,
            _ => return Err(FhirError::BadCursor("unknown direction").into()),
        };
        let number = |range: std::ops::Range<usize>| {
            let mut array = [0_u8; 8];
            array.copy_from_slice(&payload[range]);
            i64::from_be_bytes(array)
        };
        let mut batch = [0_u8; 32];
        batch.copy_from_slice(&payload[18..50]);
        Ok(Self {
            direction,
            time: number(2..10),
            position: number(10..18),
            batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(value: &str) -> Vec<(String, String)> {
        vec![("patient".to_owned(), value.to_owned())]
    }

    #[test]
    fn a_cursor_reads_back_only_for_its_own_search() {
        let cursor = Cursor {
            direction: Direction::Before,
            time: 1_800_000_000_000_000,
            batch: [7; 32],
            position: 1023,
        };
        let token = cursor.encode("Observation", &search("p-1"));
        assert_eq!(
            Cursor::decode(&token, "Observation", &search("p-1")).unwrap(),
            cursor
        );
        assert!(Cursor::decode(&token, "Observation", &search("p-2")).is_err());
        assert!(Cursor::decode(&token, "AuditEvent", &search("p-1")).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[5] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(Cursor::decode(&altered, "Observation", &search("p-1")).is_err());
        assert!(Cursor::decode("!!", "Observation", &search("p-1")).is_err());
        assert!(Cursor::decode("", "Observation", &search("p-1")).is_err());
    }
}
