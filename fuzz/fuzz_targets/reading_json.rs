//! The collector's front door: the JSON body a device POSTs. Every accepted reading must
//! serialise back to JSON that parses to the same reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardseal_core::reading::json;

fuzz_target!(|data: &[u8]| {
    if let Ok(readings) = json::parse_body(data) {
        for measurement in readings.into_iter().flatten() {
            let text = serde_json::to_string(&measurement).expect("serialises");
            assert_eq!(json::parse_measurement(&text).ok(), Some(measurement));
        }
    }
});
