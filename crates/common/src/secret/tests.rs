use serde_json::json;

use super::*;

fn keyring() -> (String, Keyring) {
    let key = Keyring::generate_key();
    let ring = Keyring::from_settings(Some(&key), None).unwrap().unwrap();
    (key, ring)
}

#[test]
fn a_sealed_value_opens_to_itself_and_shows_no_plaintext() {
    let (_, ring) = keyring();
    let value = json!({"user": "admin", "password": "hunter2-very-secret"});
    let sealed = ring.seal_value(&value);
    let token = sealed_token(&sealed).unwrap();
    assert!(
        token.starts_with(&format!("v1:{}:", ring.key_id())),
        "{token}"
    );
    assert!(!sealed.to_string().contains("hunter2"), "{sealed}");
    assert_eq!(ring.open_value(&sealed), Ok(value.clone()));
    // The nonce is derived from the value: the same value seals the same
    // way under one key (an idempotent resubmit matches), another does not.
    assert_eq!(ring.seal_value(&value), sealed);
    let other = ring.seal_value(&json!({"user": "admin", "password": "hunter3-very-secret"}));
    let nonce = |v: &Value| sealed_token(v).unwrap().rsplit(':').next().unwrap()[..32].to_owned();
    assert_ne!(nonce(&other), nonce(&sealed));
    let (_, another_key) = keyring();
    assert_ne!(another_key.seal_value(&value), sealed);
}

#[test]
fn another_key_cannot_open_and_says_which_key_it_needs() {
    let (_, ring) = keyring();
    let (_, other) = keyring();
    let sealed = ring.seal_value(&json!("s3cret!"));
    let err = other.open_value(&sealed).unwrap_err();
    assert_eq!(
        err,
        SecretError::UnknownKey {
            id: ring.key_id().to_owned(),
            known: vec![other.key_id().to_owned()],
        }
    );
    assert!(err.to_string().contains(OLD_KEYS_VAR), "{err}");
}

#[test]
fn an_altered_value_does_not_open() {
    let (_, ring) = keyring();
    let token = ring.seal(b"\"s3cret!\"");
    let (head, data) = token.rsplit_once(':').unwrap();
    let mut bytes = STANDARD_NO_PAD.decode(data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let altered = format!("{head}:{}", STANDARD_NO_PAD.encode(&bytes));
    assert_eq!(
        ring.open(&altered),
        Err(SecretError::Tampered {
            id: ring.key_id().to_owned()
        })
    );
    // The key id is authenticated too: a token relabelled to another key
    // of the ring does not open with it.
    let (old_key, old) = keyring();
    let (new_key, _) = keyring();
    let both = Keyring::from_settings(Some(&new_key), Some(&old_key))
        .unwrap()
        .unwrap();
    let sealed_old = old.seal(b"1");
    let relabelled = sealed_old.replacen(old.key_id(), both.key_id(), 1);
    assert!(matches!(
        both.open(&relabelled),
        Err(SecretError::Tampered { .. })
    ));
    assert!(matches!(
        ring.open("v2:ab:cd"),
        Err(SecretError::Malformed(_))
    ));
    assert!(matches!(
        ring.open("nonsense"),
        Err(SecretError::Malformed(_))
    ));
}

#[test]
fn after_a_rotation_old_keys_open_and_the_new_key_seals() {
    let (old_key, old) = keyring();
    let before = old.seal_value(&json!("rotated-secret"));
    let new_key = Keyring::generate_key();
    let rotated = Keyring::from_settings(Some(&new_key), Some(&format!(" {old_key} ,")))
        .unwrap()
        .unwrap();
    assert_ne!(rotated.key_id(), old.key_id());
    assert_eq!(rotated.open_value(&before), Ok(json!("rotated-secret")));
    let after = rotated.seal_value(&json!("x"));
    assert!(sealed_token(&after).unwrap().contains(rotated.key_id()));
    // The old key alone cannot open what the new one sealed.
    assert!(matches!(
        old.open_value(&after),
        Err(SecretError::UnknownKey { .. })
    ));
}

#[test]
fn bad_keys_are_refused_naming_the_setting() {
    assert_eq!(
        Keyring::from_settings(None, None).map(|k| k.is_none()),
        Ok(true)
    );
    assert_eq!(
        Keyring::from_settings(Some("  "), None).map(|k| k.is_none()),
        Ok(true)
    );
    let err = Keyring::from_settings(Some("not base64!"), None).unwrap_err();
    assert!(
        matches!(&err, KeyError::NotBase64 { which, .. } if which == KEY_VAR),
        "{err}"
    );
    assert!(err.to_string().contains(MAKE_A_KEY), "{err}");
    let short = STANDARD.encode([7u8; 16]);
    let err = Keyring::from_settings(Some(&short), None).unwrap_err();
    assert_eq!(
        err,
        KeyError::WrongLength {
            which: KEY_VAR.to_owned(),
            len: 16
        }
    );
    let good = Keyring::generate_key();
    let err = Keyring::from_settings(Some(&good), Some(&format!("{good},{short}"))).unwrap_err();
    assert!(
        err.to_string().contains("WEFT_SECRET_KEYS_OLD (key 2)"),
        "{err}"
    );
    assert_eq!(
        Keyring::from_settings(None, Some(&good)).unwrap_err(),
        KeyError::OldWithoutCurrent
    );
}

#[test]
fn key_ids_are_stable_short_digests() {
    let key = STANDARD.encode([1u8; 32]);
    let a = SecretKey::from_base64(&key, KEY_VAR).unwrap();
    let b = SecretKey::from_base64(&key, KEY_VAR).unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(a.id().len(), 8);
    assert!(!format!("{a:?}").contains(&key));
}

#[test]
fn a_run_input_opens_with_its_secrets_and_needs_a_key_only_when_sealed() {
    let (_, ring) = keyring();
    let mut input = Map::new();
    input.insert("user".into(), json!("admin"));
    input.insert("token".into(), ring.seal_value(&json!("tok-123456")));
    let (opened, secrets) = open_input(Some(&ring), &input).unwrap();
    assert_eq!(opened["token"], json!("tok-123456"));
    assert_eq!(opened["user"], json!("admin"));
    assert_eq!(secrets.texts(), ["tok-123456"]);
    assert_eq!(
        open_input(None, &input).unwrap_err(),
        SecretError::MissingKey
    );
    let plain: Map<String, Value> = [("user".to_owned(), json!("admin"))].into_iter().collect();
    assert_eq!(open_input(None, &plain).unwrap().0, plain);
}

#[test]
fn a_task_input_round_trips_with_the_secrets_it_carries() {
    let (_, ring) = keyring();
    let secrets = Secrets::of(&[json!("tok-123456")]);
    let input = json!({"command": ["login", "--token", "tok-123456"]});
    let sealed = seal_task_input(&ring, &input, &secrets);
    assert!(!sealed.to_string().contains("tok-123456"));
    let (opened, carried) = open_task_input(Some(&ring), sealed.clone()).unwrap();
    assert_eq!(opened, input);
    assert_eq!(carried, secrets);
    assert_eq!(open_task_input(None, sealed), Err(SecretError::MissingKey));
    let plain = json!({"a": 1});
    assert_eq!(
        open_task_input(None, plain.clone()),
        Ok((plain, Secrets::default()))
    );
}

#[test]
fn secrets_are_redacted_from_values_and_text() {
    let secrets = Secrets::of(&[json!({"pw": "hunter22", "pin": 98765, "short": "ab"})]);
    let mut value = json!({
        "line": "login with hunter22 now",
        "n": 98765,
        "hunter22": "as a key",
        "list": ["ab", "x", "cab"],
    });
    assert!(secrets.found_in(&value));
    assert!(secrets.redact(&mut value));
    assert_eq!(
        value,
        json!({"line": "login with *** now", "n": "***", "***": "as a key", "list": ["***", "x", "cab"]})
    );
    assert!(!secrets.found_in(&value));
    assert_eq!(secrets.redact_text("pw=hunter22;"), "pw=***;");
    assert!(matches!(secrets.redact_text("nothing"), Cow::Borrowed(_)));
}

#[test]
fn sealed_parts_are_shown_as_stars() {
    let (_, ring) = keyring();
    let mut value =
        json!({"a": ring.seal_value(&json!("x")), "b": [ring.seal_value(&json!(1))], "c": 3});
    assert!(has_sealed(&value));
    redact_sealed(&mut value);
    assert_eq!(value, json!({"a": "***", "b": ["***"], "c": 3}));
    assert!(!has_sealed(&value));
}
