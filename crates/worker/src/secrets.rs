//! The secret keys of a process, read from the environment: the one
//! place `WEFT_SECRET_KEY` and `WEFT_SECRET_KEYS_OLD` are read (the
//! worker reads them when it starts; the `weft` binary for its executor,
//! server and direct submits). What they do is [`weft_common::secret`].

use std::sync::Arc;

use weft_common::Keyring;
use weft_common::secret::{KEY_VAR, KeyError, OLD_KEYS_VAR};

/// The keyring `WEFT_SECRET_KEY` (and `WEFT_SECRET_KEYS_OLD`) describe;
/// `None` when no key is set.
///
/// # Errors
/// [`KeyError`] naming the variable whose key cannot be used.
pub fn keyring_from_env() -> Result<Option<Arc<Keyring>>, KeyError> {
    let current = std::env::var(KEY_VAR).ok();
    let old = std::env::var(OLD_KEYS_VAR).ok();
    Keyring::from_settings(current.as_deref(), old.as_deref()).map(|k| k.map(Arc::new))
}
