//! Lists the tokens of a PKCS#11 module and the PC/SC readers: what `wardseal-pki card
//! list` will print.
//!
//! `cargo run -p wardseal-card --example card_list -- [MODULE]` (default: OpenSC's module).

#![expect(
    clippy::print_stdout,
    reason = "a command-line example prints its answer"
)]

use wardseal_card::CardWatcher;
use wardseal_card::pkcs11::Module;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let module = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so".to_owned());
    let module = Module::load(std::path::Path::new(&module))?;
    println!("PKCS#11 tokens in {}:", module.path().display());
    for token in module.tokens()? {
        let locked = if token.user_pin_locked {
            ", PIN LOCKED"
        } else {
            ""
        };
        println!(
            "  {:?} serial {} ({} {}) in {:?}{locked}",
            token.label, token.serial, token.manufacturer, token.model, token.slot_description
        );
    }
    println!("PC/SC readers:");
    match CardWatcher::readers() {
        Ok(readers) => readers.iter().for_each(|reader| println!("  {reader}")),
        Err(error) => println!("  ({error})"),
    }
    Ok(())
}
