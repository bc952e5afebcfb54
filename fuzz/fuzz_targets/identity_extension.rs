//! The identity extension's strict DER decoder: what decodes must re-encode to the same
//! bytes (DER has one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardseal_core::identity::Identity;

fuzz_target!(|data: &[u8]| {
    if let Ok(identity) = Identity::from_der(data) {
        assert_eq!(identity.to_der(), data);
    }
});
