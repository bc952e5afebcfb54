//! EPC SGTIN-96 parsers: every text form and the binary form. Whatever parses must print
//! and parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardseal_core::epc::Sgtin96;

fuzz_target!(|data: &[u8]| {
    if let Ok(epc) = Sgtin96::try_from(data) {
        assert_eq!(epc.to_bytes().as_slice(), data);
        assert_eq!(epc.tag_uri().parse::<Sgtin96>().ok(), Some(epc.clone()));
        assert_eq!(epc.to_hex().parse::<Sgtin96>().ok(), Some(epc));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(epc) = text.parse::<Sgtin96>() {
            let again: Sgtin96 = epc.tag_uri().parse().expect("a printed tag URI parses");
            assert_eq!(again, epc);
            assert_eq!(Sgtin96::try_from(epc.to_bytes().as_slice()).ok(), Some(epc));
        }
    }
});
