//! Secret inputs: sealed at rest, opened only where they are used, and
//! redacted wherever they are shown.
//!
//! An input declared `secret: true` is stored **sealed**: its value is
//! replaced by `{"$sealed": "v1:<key id>:<base64>"}`, the value's JSON
//! encrypted with XChaCha20-Poly1305 (a 24-byte nonce derived from the
//! value with a key of its own, the version and key id authenticated with
//! it). Read in this order:
//!
//! 1. [`Keyring`] — the current key (`WEFT_SECRET_KEY`, 32 random bytes in
//!    base64) that seals and opens, and older keys (`WEFT_SECRET_KEYS_OLD`)
//!    that only open, so keys can rotate. A key's id is the first 8 hex
//!    digits of its SHA-256; each sealed value names the key that sealed it.
//! 2. [`crate::Workflow::seal_input`] — a run's resolved input with its
//!    secret inputs sealed: what the front ends store.
//! 3. [`open_input`] — a run's stored input opened again (the executors),
//!    with the [`Secrets`] it holds: the plaintexts to keep out of what is
//!    stored and shown.
//! 4. [`seal_task_input`] / [`open_task_input`] — a task input rendered
//!    from a secret is sealed whole, with the secrets it must not leak, for
//!    `executions.input` and the dispatch; the worker opens it right before
//!    the action runs and redacts those secrets from what it reports.
//! 5. [`redact_sealed`] — what is shown of a stored value: every sealed
//!    part is `"***"`.
//!
//! No IO: the keys are given by whoever read them from the environment.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The one key of a sealed value's object: `{"$sealed": "v1:…"}`.
pub const SEALED: &str = "$sealed";
/// What is shown in place of a secret.
pub const REDACTED: &str = "***";
/// The environment variable of the current key.
pub const KEY_VAR: &str = "WEFT_SECRET_KEY";
/// The environment variable of older keys, comma-separated: they open
/// values sealed before a rotation, and seal nothing.
pub const OLD_KEYS_VAR: &str = "WEFT_SECRET_KEYS_OLD";
/// How to make a key, for messages.
pub const MAKE_A_KEY: &str = "head -c32 /dev/urandom | base64";

/// The format of the sealed values this build writes and reads.
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Secret texts shorter than this are not searched for in free text (logs,
/// results, errors): they would match everywhere. They are still sealed
/// where they are stored as values.
pub const MIN_REDACTED_LEN: usize = 4;

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64.
    #[error("{which} is not base64 ({reason}); make a key with `{MAKE_A_KEY}`")]
    NotBase64 {
        /// Which setting, and which key of a list.
        which: String,
        /// The decoder's words.
        reason: String,
    },
    /// Not 32 bytes.
    #[error("{which} must be 32 bytes in base64, not {len} bytes; make a key with `{MAKE_A_KEY}`")]
    WrongLength {
        /// Which setting, and which key of a list.
        which: String,
        /// How many bytes it decodes to.
        len: usize,
    },
    /// Old keys without a current one.
    #[error(
        "{OLD_KEYS_VAR} is set but {KEY_VAR} is not: old keys only open values, set the current key too"
    )]
    OldWithoutCurrent,
}

/// A sealed value that cannot be opened, or a secret that cannot be
/// sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// This process has no key.
    #[error(
        "secret inputs need a key and none is set: set {KEY_VAR} to 32 random bytes in base64 (`{MAKE_A_KEY}`), the same on the submitting side, the executors and the workers"
    )]
    MissingKey,
    /// Sealed with a key this process does not have.
    #[error(
        "a secret was sealed with key `{id}`, which this process does not have (it has {}); set {KEY_VAR} to that key, or list it in {OLD_KEYS_VAR}",
        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    )]
    UnknownKey {
        /// The id the sealed value names.
        id: String,
        /// The ids of the keys this process has.
        known: Vec<String>,
    },
    /// The key's id matches but the value does not open: altered, or a
    /// different key with a colliding id.
    #[error(
        "a secret sealed with key `{id}` does not open: it was altered, or sealed with another key"
    )]
    Tampered {
        /// The id the sealed value names.
        id: String,
    },
    /// Not a sealed value of this format.
    #[error("not a sealed secret: {0}")]
    Malformed(String),
}

/// One key: its id and its cipher.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    cipher: XChaCha20Poly1305,
    /// Derives each seal's nonce from the plaintext (see [`Keyring::seal`]).
    nonce_key: [u8; 32],
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish()
    }
}

impl SecretKey {
    /// The key in `text` (base64 of 32 bytes); `which` names it in errors.
    ///
    /// # Errors
    /// [`KeyError`] when it is not base64 or not 32 bytes.
    pub fn from_base64(text: &str, which: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| KeyError::NotBase64 {
                which: which.to_owned(),
                reason: e.to_string(),
            })?;
        if bytes.len() != KEY_LEN {
            return Err(KeyError::WrongLength {
                which: which.to_owned(),
                len: bytes.len(),
            });
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let cipher =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError::WrongLength {
                which: which.to_owned(),
                len: bytes.len(),
            })?;
        let nonce_key = Sha256::new()
            .chain_update(b"weft secret nonce v1")
            .chain_update(&bytes)
            .finalize()
            .into();
        Ok(Self {
            id,
            cipher,
            nonce_key,
        })
    }

    /// A short digest of the key, stored with what it seals.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(id: &str) -> String {
        format!("weft:{VERSION}:{id}")
    }
}

/// The keys of a process: the current one seals and opens; older ones
/// (during a rotation) only open.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: SecretKey,
    old: Vec<SecretKey>,
}

impl Keyring {
    /// A keyring of these keys.
    #[must_use]
    pub fn new(current: SecretKey, old: Vec<SecretKey>) -> Self {
        Self { current, old }
    }

    /// The keyring the settings describe: `current` is `WEFT_SECRET_KEY`,
    /// `old` is `WEFT_SECRET_KEYS_OLD` (comma-separated). No current key,
    /// no keyring.
    ///
    /// # Errors
    /// [`KeyError`] naming the key that cannot be used; old keys without a
    /// current one.
    pub fn from_settings(
        current: Option<&str>,
        old: Option<&str>,
    ) -> Result<Option<Self>, KeyError> {
        let old_texts: Vec<&str> = old
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let Some(current) = current.map(str::trim).filter(|c| !c.is_empty()) else {
            return if old_texts.is_empty() {
                Ok(None)
            } else {
                Err(KeyError::OldWithoutCurrent)
            };
        };
        let current = SecretKey::from_base64(current, KEY_VAR)?;
        let old = old_texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                SecretKey::from_base64(text, &format!("{OLD_KEYS_VAR} (key {})", i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Self::new(current, old)))
    }

    /// A new random key, in base64 (what `head -c32 /dev/urandom | base64`
    /// prints).
    #[must_use]
    pub fn generate_key() -> String {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// The id of the key that seals.
    #[must_use]
    pub fn key_id(&self) -> &str {
        self.current.id()
    }

    /// `plaintext` sealed with the current key: `v1:<key id>:<base64 of
    /// nonce and ciphertext>`.
    ///
    /// The nonce is a keyed digest of the plaintext (synthetic, as in
    /// AES-SIV): the same value sealed twice with one key seals the same
    /// way, so a resubmit with the same idempotency key and secret is
    /// recognised, and a retried fan-out keeps its items; two different
    /// values never share a nonce. What it reveals is only whether two
    /// sealed values are equal.
    #[must_use]
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let digest = Sha256::new()
            .chain_update(self.current.nonce_key)
            .chain_update(plaintext)
            .finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        let aad = SecretKey::aad(&self.current.id);
        // Encrypting into a Vec fails only past the cipher's message
        // limit (256 GiB), which no input reaches (`--max-result-bytes`
        // bounds them): an empty token would lose the value silently.
        let sealed = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{VERSION}:{}:{}",
            self.current.id,
            STANDARD_NO_PAD.encode(bytes)
        )
    }

    /// The plaintext of a token [`Keyring::seal`] made, with whichever
    /// of the keys it names.
    ///
    /// # Errors
    /// [`SecretError`]: not a token, a key this keyring lacks, or a token
    /// that does not open (altered).
    pub fn open(&self, token: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = token.splitn(3, ':');
        let (Some(version), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Malformed(
                "expected `v1:<key id>:<data>`".into(),
            ));
        };
        if version != VERSION {
            return Err(SecretError::Malformed(format!(
                "format `{version}`, this build reads `{VERSION}`"
            )));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey {
                id: id.to_owned(),
                known: std::iter::once(&self.current)
                    .chain(&self.old)
                    .map(|k| k.id.clone())
                    .collect(),
            })?;
        let bytes = STANDARD_NO_PAD
            .decode(data)
            .map_err(|e| SecretError::Malformed(format!("its data is not base64 ({e})")))?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Tampered { id: id.to_owned() });
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretError::Tampered { id: id.to_owned() })?;
        let aad = SecretKey::aad(id);
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Tampered { id: id.to_owned() })
    }

    /// `value` sealed: `{"$sealed": "v1:…"}`.
    #[must_use]
    pub fn seal_value(&self, value: &Value) -> Value {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let mut sealed = Map::new();
        sealed.insert(SEALED.to_owned(), Value::String(self.seal(&json)));
        Value::Object(sealed)
    }

    /// The value a [`Keyring::seal_value`] sealed.
    ///
    /// # Errors
    /// [`SecretError`] as [`Keyring::open`]; not a sealed value.
    pub fn open_value(&self, sealed: &Value) -> Result<Value, SecretError> {
        let token = sealed_token(sealed)
            .ok_or_else(|| SecretError::Malformed("expected `{\"$sealed\": \"v1:…\"}`".into()))?;
        let json = self.open(token)?;
        serde_json::from_slice(&json)
            .map_err(|e| SecretError::Malformed(format!("its plaintext is not JSON ({e})")))
    }
}

/// The token of a sealed value (`{"$sealed": "…"}` and nothing else).
#[must_use]
pub fn sealed_token(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(SEALED)?.as_str(),
        _ => None,
    }
}

/// Whether `value` has a sealed part anywhere.
#[must_use]
pub fn has_sealed(value: &Value) -> bool {
    match value {
        v if sealed_token(v).is_some() => true,
        Value::Array(items) => items.iter().any(has_sealed),
        Value::Object(map) => map.values().any(has_sealed),
        _ => false,
    }
}

/// What is shown of a stored value: every sealed part becomes `"***"`.
pub fn redact_sealed(value: &mut Value) {
    if sealed_token(value).is_some() {
        *value = Value::String(REDACTED.to_owned());
        return;
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(redact_sealed),
        Value::Object(map) => map.values_mut().for_each(redact_sealed),
        _ => {}
    }
}

/// The plaintexts of a run's secrets, to keep out of what is stored and
/// shown: the text of every string (and number) within the secret values.
/// Those of at least [`MIN_REDACTED_LEN`] characters are searched for
/// within text; shorter ones are redacted only where a whole value is one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    texts: Vec<String>,
    /// The shorter ones: redacted only where a whole value is one.
    short: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.texts.len())
    }
}

impl Secrets {
    /// The secrets within these values.
    pub fn of<'a>(values: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut texts = Vec::new();
        for value in values {
            leaves(value, &mut texts);
        }
        Self::from_texts(texts)
    }

    /// These texts as secrets (as a sealed task input carries them).
    #[must_use]
    pub fn from_texts(texts: Vec<String>) -> Self {
        let (mut texts, mut short): (Vec<String>, Vec<String>) = texts
            .into_iter()
            .filter(|t| !t.is_empty())
            .partition(|t| t.chars().count() >= MIN_REDACTED_LEN);
        texts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        texts.dedup();
        short.sort();
        short.dedup();
        Self { texts, short }
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.short.is_empty()
    }

    /// The texts searched for, longest first.
    #[must_use]
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Every text, the short ones too (what a sealed task input carries).
    #[must_use]
    pub fn all_texts(&self) -> Vec<&str> {
        self.texts
            .iter()
            .chain(&self.short)
            .map(String::as_str)
            .collect()
    }

    /// Whether `value` contains one of the secrets.
    #[must_use]
    pub fn found_in(&self, value: &Value) -> bool {
        if self.is_empty() {
            // Every input of a run without secrets comes here: walk none.
            return false;
        }
        match value {
            Value::String(s) => {
                self.short.contains(s) || self.texts.iter().any(|t| s.contains(t.as_str()))
            }
            Value::Number(n) => {
                let n = n.to_string();
                self.texts.contains(&n) || self.short.contains(&n)
            }
            Value::Array(items) => items.iter().any(|v| self.found_in(v)),
            Value::Object(map) => map.iter().any(|(k, v)| {
                self.texts.iter().any(|t| k.contains(t.as_str())) || self.found_in(v)
            }),
            _ => false,
        }
    }

    /// `text` with every secret in it replaced by `***`.
    #[must_use]
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.texts {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// An attempt's captured output with every secret replaced by `***`.
    pub fn redact_logs(&self, logs: &mut crate::AttemptLogs) {
        for stream in [&mut logs.stdout, &mut logs.stderr] {
            if let Cow::Owned(redacted) = self.redact_text(&stream.text) {
                stream.text = redacted;
            }
        }
    }

    /// `value` with every secret in its strings replaced by `***` (a
    /// number that is a secret becomes `"***"`); whether anything changed.
    pub fn redact(&self, value: &mut Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            Value::String(s) if self.short.contains(s) => {
                *s = REDACTED.to_owned();
                true
            }
            Value::String(s) => match self.redact_text(s) {
                Cow::Owned(redacted) => {
                    *s = redacted;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Number(n)
                if self.texts.contains(&n.to_string()) || self.short.contains(&n.to_string()) =>
            {
                *value = Value::String(REDACTED.to_owned());
                true
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.redact(item);
                }
                changed
            }
            Value::Object(map) => {
                let secret_keys = map
                    .keys()
                    .any(|k| matches!(self.redact_text(k), Cow::Owned(_)));
                if secret_keys {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.redact(&mut v);
                        map.insert(self.redact_text(&k).into_owned(), v);
                    }
                    return true;
                }
                let mut changed = false;
                for v in map.values_mut() {
                    changed |= self.redact(v);
                }
                changed
            }
            _ => false,
        }
    }
}

fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

/// A run's stored input opened: each sealed input's value, and the
/// secrets they hold. An input with nothing sealed needs no key.
///
/// # Errors
/// [`SecretError::MissingKey`] when something is sealed and there is no
/// keyring; whatever [`Keyring::open_value`] says of a value.
pub fn open_input(
    keyring: Option<&Keyring>,
    input: &Map<String, Value>,
) -> Result<(Map<String, Value>, Secrets), SecretError> {
    if !input.values().any(|v| sealed_token(v).is_some()) {
        return Ok((input.clone(), Secrets::default()));
    }
    let keyring = keyring.ok_or(SecretError::MissingKey)?;
    let mut opened = Map::with_capacity(input.len());
    let mut secret_values = Vec::new();
    for (name, value) in input {
        if sealed_token(value).is_some() {
            let plain = keyring.open_value(value)?;
            secret_values.push(plain.clone());
            opened.insert(name.clone(), plain);
        } else {
            opened.insert(name.clone(), value.clone());
        }
    }
    Ok((opened, Secrets::of(&secret_values)))
}

/// A task's rendered input that holds secrets, sealed whole together with
/// the secrets it holds (so the worker can keep them out of its report).
#[must_use]
pub fn seal_task_input(keyring: &Keyring, input: &Value, secrets: &Secrets) -> Value {
    let payload = serde_json::json!({ "input": input, "secrets": secrets.all_texts() });
    keyring.seal_value(&payload)
}

/// A dispatch's input as the action takes it, and the secrets to redact
/// from its report: a sealed one is opened; any other is returned as it
/// is, with no secrets.
///
/// # Errors
/// [`SecretError`]: a sealed input and no keyring, or one that does not
/// open.
pub fn open_task_input(
    keyring: Option<&Keyring>,
    input: Value,
) -> Result<(Value, Secrets), SecretError> {
    if sealed_token(&input).is_none() {
        return Ok((input, Secrets::default()));
    }
    let keyring = keyring.ok_or(SecretError::MissingKey)?;
    let mut payload = keyring.open_value(&input)?;
    let texts = payload
        .get("secrets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let input = payload
        .get_mut("input")
        .map(Value::take)
        .ok_or_else(|| SecretError::Malformed("a sealed task input without its `input`".into()))?;
    Ok((input, Secrets::from_texts(texts)))
}

#[cfg(test)]
mod tests;
