//! The big-endian, length-checked byte layout shared by the canonical encodings of
//! readings and batch headers. Fixed widths, no varints, no maps: one value has exactly
//! one encoding, and a decoder accepts only that encoding.

use crate::decimal::Decimal;
use crate::identity::SubjectId;

/// Appends canonical fields to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    /// A string of at most 255 bytes, preceded by its length. Callers hold validated
    /// strings whose limits are far below 255.
    pub(crate) fn short_str(&mut self, value: &str) {
        let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
        self.u8(len);
        self.bytes(&value.as_bytes()[..usize::from(len)]);
    }

    pub(crate) fn decimal(&mut self, value: Decimal) {
        self.i64(value.mantissa());
        self.u8(value.scale());
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads canonical fields; every read fails cleanly at the end of input.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

/// The input ended before a field, or held bytes after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecError {
    Truncated { position: usize },
    Trailing { position: usize },
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CodecError::Truncated {
                position: self.position,
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// The bytes of a length-prefixed string (validation is the caller's).
    pub(crate) fn short_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A short string that must be a subject id (batch headers, gap records): `None` when
    /// its bytes are not one, for the caller to name the field in its own error.
    pub(crate) fn short_subject(&mut self) -> Result<Option<SubjectId>, CodecError> {
        let bytes = self.short_bytes()?;
        Ok(std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok()))
    }

    /// The raw (mantissa, scale) of a decimal; the caller checks normal form.
    pub(crate) fn decimal_parts(&mut self) -> Result<(i64, u8), CodecError> {
        Ok((self.i64()?, self.u8()?))
    }

    /// Succeeds only when every byte was read.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err(CodecError::Trailing {
                position: self.position,
            })
        }
    }
}
