//! Who may do what through `weft server`: API tokens and their roles.
//!
//! A token is `weft_` and 64 hex digits (32 random bytes). It is shown
//! once, when created; only its SHA-256 digest is stored, and a request's
//! token is found by its digest. The token carries 256 bits of entropy, so
//! a fast digest is the right one (a password hash's slowness protects
//! guessable secrets, which these are not).

use std::fmt;
use std::str::FromStr;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a token may do. Each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads runs, workflows, workers, logs.
    Viewer,
    /// Also submits, cancels and retries runs.
    Operator,
    /// Also creates, lists and revokes tokens.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: &'static [Self] = &[Self::Viewer, Self::Operator, Self::Admin];

    /// The role's name, as stored and typed.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Whether a holder of this role may do what `needed` may.
    #[must_use]
    pub fn allows(self, needed: Self) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role (one of: viewer, operator, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What every token starts with: tells a Weft token from other secrets
/// (in a leaked file, to a secret scanner).
pub const TOKEN_PREFIX: &str = "weft_";

/// A new random token.
#[must_use]
pub fn generate_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 64);
    token.push_str(TOKEN_PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// The digest stored for a token and looked up for a request's.
#[must_use]
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_what_the_lesser_ones_may() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(Role::Viewer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
    }

    #[test]
    fn roles_parse_by_name_and_say_what_is_wrong() {
        assert_eq!("operator".parse(), Ok(Role::Operator));
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("`root`") && err.contains("viewer"), "{err}");
    }

    #[test]
    fn tokens_are_prefixed_random_and_digested_stably() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), token_digest(&b));
        assert_eq!(token_digest(&a).len(), 32);
    }
}
