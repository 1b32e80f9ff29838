//! API key authentication and roles: checking the keys (loaded by
//! [`crate::keys`], which is not HTTP) on every protected request.
//!
//! - `keyring.rs`: [`Keyring`], every key with its [`Role`], and the check
//!   of a presented key (constant-time compares, argon2 verdicts
//!   remembered, the failure limit applied);
//! - `failures.rs`: failed authentications per source, in a bounded table
//!   (the hub's limiter uses it too);
//! - `middleware.rs`: [`require_key`] and [`require_role`], which take the
//!   key from `X-API-KEY: <key>` or `Authorization: Bearer <key>`.
//!
//! Failed authentications (no key or a wrong one) are counted per source
//! address (IPv6 per /64) in a bounded table; a source over
//! `--auth-max-failures` within `--auth-failure-window` gets 429 with
//! `Retry-After` until its window ends, without any key check that could cost
//! argon2. A correct key that needs no argon2 (plain, sha-256, or an argon2
//! key already verified) still works from such a source: the limit bounds
//! the work and the noise of failures, while guessing is bounded by the keys'
//! length (at least 16 characters; generated keys have 256 bits).
//!
//! Wire [`require_key`] with `route_layer` so it runs only for matched routes
//! (unknown paths stay 404) and leave `/health` outside it; it puts the
//! key's [`Role`] into the request's extensions. A route that needs more than
//! reading adds [`require_role`] inside it:
//!
//! ```ignore
//! let admin = Router::new()
//!     .route("/v1/purge", post(purge))
//!     .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require_role));
//! let protected = Router::new()
//!     .route("/v1/rates", get(rates))
//!     .merge(admin)
//!     .route_layer(middleware::from_fn_with_state(keys.clone(), auth::require_key));
//! let app = Router::new()
//!     .route("/health", get(health))
//!     .merge(protected)
//!     .fallback(error::not_found);
//! ```

mod failures;
mod keyring;
mod middleware;

use std::fmt;

use serde::Serialize;

pub(crate) use self::failures::{Failures, source_key};
pub use self::{
    keyring::Keyring,
    middleware::{require_key, require_role},
};

/// What a key may do. Ordered: a role includes every role below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read every `GET` endpoint (a dashboard's key).
    ReadOnly,
    /// Everything, including endpoints that change the agent's state.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadOnly => "read-only",
            Self::Admin => "admin",
        })
    }
}

/// Keys the tests of the keyring and the middleware share.
#[cfg(test)]
mod test_keys {
    use super::{Keyring, Role};
    use crate::keys::{ApiKey, hash_key};

    pub(super) const KEY: &str = "0123456789abcdef-test";

    /// A read-only key, and the same given as hashes (see `hashes_of_ro_keys`).
    pub(super) const RO_KEY: &str = "dashboard-key-0123456789";
    pub(super) const RO_SHA_KEY: &str = "dashboard-sha-key-0123456789";
    pub(super) const RO_ARGON_KEY: &str = "dashboard-argon-key-0123456789";

    /// `RO_ARGON_KEY`'s argon2 form, hashed once: argon2 is slow unoptimised.
    pub(super) fn ro_argon_phc() -> &'static str {
        static PHC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PHC.get_or_init(|| hash_key(RO_ARGON_KEY).unwrap().1)
    }

    pub(super) fn keyring() -> Keyring {
        let (sha, _) = hash_key(RO_SHA_KEY).unwrap();
        Keyring::new(ApiKey::new(KEY).unwrap()).with(
            Role::ReadOnly,
            [RO_KEY, &sha, ro_argon_phc()].map(|k| ApiKey::new(k).unwrap()),
        )
    }
}
