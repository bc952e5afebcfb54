//! The canonical decoders storage runs on what collectors send: readings and batch
//! headers. Whatever decodes must re-encode to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardseal_core::batch::BatchHeader;
use wardseal_core::reading::Reading;

fuzz_target!(|data: &[u8]| {
    if let Ok(reading) = Reading::from_canonical_bytes(data) {
        assert_eq!(reading.canonical_bytes(), data);
    }
    if let Ok(header) = BatchHeader::from_canonical_bytes(data) {
        assert_eq!(header.canonical_bytes(), data);
    }
});
