use super::*;

#[test]
fn finds_the_module() {
    let module = find_module().unwrap();
    assert!(module.ends_with("libsofthsm2.so"), "{module:?}");
}

#[test]
fn store_is_private_and_removed_on_drop() {
    let hsm = SoftHsm::new().unwrap();
    let dir = hsm.conf_path().parent().unwrap().to_owned();
    let conf = fs::read_to_string(hsm.conf_path()).unwrap();
    assert!(conf.contains(&format!(
        "directories.tokendir = {}",
        hsm.token_dir().display()
    )));
    let token = hsm.init_token(&TokenSpec::new("fixture-a")).unwrap();
    assert_eq!(token.serial().len(), 16, "{token:?}");
    // The token lives in this store's directory, nowhere else.
    assert_eq!(fs::read_dir(hsm.token_dir()).unwrap().count(), 1);
    drop(hsm);
    assert!(!dir.exists());
}

#[test]
fn tokens_are_found_by_label_and_hold_generated_keys() {
    let hsm = SoftHsm::new().unwrap();
    let a = hsm.init_token(&TokenSpec::new("fixture-a")).unwrap();
    let b = hsm
        .init_token(&TokenSpec::new("fixture-b").with_user_pin("987654"))
        .unwrap();
    assert_ne!(a.serial(), b.serial());
    hsm.generate_ec_p256(&b, "bee key", &[0xb1]).unwrap();
    hsm.generate_rsa(&a, 2048, "aye key", &[0xa1], true)
        .unwrap();
    let listing_a = hsm.list_objects(&a).unwrap();
    let listing_b = hsm.list_objects(&b).unwrap();
    assert!(
        listing_a.contains("aye key") && !listing_a.contains("bee key"),
        "{listing_a}"
    );
    assert!(
        listing_b.contains("bee key") && listing_b.contains("EC"),
        "{listing_b}"
    );
    assert!(
        listing_a.contains("Always Authenticate") || listing_a.contains("always"),
        "{listing_a}"
    );
}

#[test]
fn a_tool_failure_names_the_tool_and_hides_pins() {
    let hsm = SoftHsm::new().unwrap();
    let token = hsm.init_token(&TokenSpec::new("fixture-a")).unwrap();
    let wrong = Token {
        spec: TokenSpec::new("fixture-a").with_user_pin("0000"),
        serial: token.serial().to_owned(),
    };
    let error = hsm.generate_ec_p256(&wrong, "k", &[1]).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::ToolFailed { .. }), "{text}");
    assert!(
        text.contains("pkcs11-tool") && !text.contains("0000"),
        "{text}"
    );
}

#[test]
fn token_spec_debug_hides_pins() {
    let spec = TokenSpec::new("x").with_user_pin("424242");
    let text = format!("{spec:?}");
    assert!(
        text.contains("[secret elided]") && !text.contains("424242"),
        "{text}"
    );
}

#[test]
fn a_locked_pin_is_reported_by_the_real_module() {
    let hsm = SoftHsm::new().unwrap();
    let token = hsm.init_token(&TokenSpec::new("fixture-a")).unwrap();
    hsm.init_token(&TokenSpec::new("fixture-b")).unwrap();
    hsm.lock_user_pin(&token).unwrap();
    let output = hsm.pkcs11_tool().arg("--list-slots").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // Exactly one token (fixture-a) now says its user PIN is locked.
    assert_eq!(text.matches("user PIN locked").count(), 1, "{text}");
    let locked_block = text
        .split("Slot ")
        .find(|block| block.contains("user PIN locked"));
    assert!(locked_block.unwrap().contains("fixture-a"), "{text}");
}
