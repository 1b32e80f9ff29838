//! API key authentication and roles: where the keys come from, and the
//! middleware that checks them on every protected request.
//!
//! The admin key is taken, first match wins, from `NETMON_API_KEY`, from a
//! key file named on the command line (`--api-key-file`), from the systemd
//! credential `api-key`, or from `<state_dir>/api-key`, which is created with
//! a fresh random key on first start. Read-only keys (a dashboard's) come
//! from `--read-only-key-file` files, one key a line, `#` comments. Clients
//! send a key as `X-API-KEY: <key>` or `Authorization: Bearer <key>`.
//!
//! Any configured key may be given as a hash instead of the key itself:
//! `sha256:<64 hex digits>` or an argon2 PHC string (`$argon2id$v=19$...`);
//! `netmon-agent hash-key` prints both forms of a key read on stdin.
//! Plain and sha-256 keys are compared in constant time; argon2 is slow by
//! design, so what argon2 said about a presented key is remembered by the
//! key's sha-256 (correct keys in a table as small as the key list, wrong
//! ones in a bounded table), and no key pays argon2 twice: not an argon2
//! key, and not a read-only key checked against an argon2 admin key.
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

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use super::{
    error::ApiError,
    limits::{Counters, Options as LimitOptions},
};

/// Environment variable the caller reads the key from.
pub const KEY_ENV_VAR: &str = "NETMON_API_KEY";
/// Name of the key file inside the state directory.
pub const KEY_FILE_NAME: &str = "api-key";
/// The credential name the units' `LoadCredential=` uses for the key.
pub const CREDENTIAL_NAME: &str = "api-key";
/// Shortest key accepted from the environment or a file.
pub const MIN_KEY_LEN: usize = 16;
/// Random bytes in a generated key; hex-encoded it is twice as long.
const GENERATED_KEY_BYTES: usize = 32;
/// Header carrying the key as is.
const API_KEY_HEADER: &str = "x-api-key";
/// Prefix of a key given as its sha-256 in hex.
pub const SHA256_PREFIX: &str = "sha256:";
/// Prefix of a key given as an argon2 PHC string.
const ARGON2_PREFIX: &str = "$argon2";

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

/// A key clients must present, as configured: the key itself or a hash of
/// it. Its `Debug` never prints it.
pub struct ApiKey(Secret);

enum Secret {
    /// The key itself.
    Plain(Box<[u8]>),
    /// The key's sha-256.
    Sha256([u8; 32]),
    /// An argon2 PHC string, checked at load to parse with valid parameters.
    Argon2(Box<str>),
}

impl ApiKey {
    /// Checks and wraps a key given in code (tests, embedding), with the same
    /// rules as keys from the environment or a file.
    pub fn new(secret: &str) -> Result<Self, AuthError> {
        Self::checked(secret, "given to ApiKey::new")
    }

    /// `origin` completes "API key … is too short", e.g. "from NETMON_API_KEY".
    /// A `sha256:` or `$argon2` prefix makes `secret` a hash of the key.
    fn checked(secret: &str, origin: &str) -> Result<Self, AuthError> {
        let bad_hash = |reason: String| AuthError::BadHash {
            origin: origin.to_owned(),
            reason,
        };
        if let Some(hex) = secret.strip_prefix(SHA256_PREFIX) {
            return parse_sha256_hex(hex)
                .map(|d| Self(Secret::Sha256(d)))
                .ok_or_else(|| {
                    bad_hash(format!(
                        "`{SHA256_PREFIX}` must be followed by 64 hex digits, found {} characters",
                        hex.chars().count()
                    ))
                });
        }
        if secret.starts_with(ARGON2_PREFIX) {
            check_argon2(secret).map_err(bad_hash)?;
            return Ok(Self(Secret::Argon2(secret.into())));
        }
        let len = secret.chars().count();
        if len < MIN_KEY_LEN {
            return Err(AuthError::TooShort {
                origin: origin.to_owned(),
                len,
            });
        }
        // Anything else could not be sent in a header, or would be trimmed or
        // split on the way, and the key would silently never match.
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::BadCharacters {
                origin: origin.to_owned(),
            });
        }
        Ok(Self(Secret::Plain(secret.as_bytes().into())))
    }

    /// Whether `presented` is this key. For plain and sha-256 keys the time
    /// taken depends on the lengths only, never on where the first differing
    /// byte is; the key's length is not a secret worth guarding (generated
    /// keys are always 64 characters). Argon2 keys take argon2's time.
    /// (Requests go through [`Keyring::authenticate`].)
    #[cfg(test)]
    fn matches(&self, presented: &[u8]) -> bool {
        match &self.0 {
            Secret::Argon2(phc) => argon2_verify(phc, presented),
            _ => self.matches_fast(presented, &sha256(presented)),
        }
    }

    /// [`ApiKey::matches`] for plain and sha-256 keys, given the presented
    /// key's sha-256; false for argon2 keys.
    fn matches_fast(&self, presented: &[u8], digest: &[u8; 32]) -> bool {
        match &self.0 {
            Secret::Plain(key) => key.ct_eq(presented).into(),
            Secret::Sha256(hash) => hash.ct_eq(digest).into(),
            Secret::Argon2(_) => false,
        }
    }

    fn argon2(&self) -> Option<&str> {
        match &self.0 {
            Secret::Argon2(phc) => Some(phc),
            _ => None,
        }
    }
}

/// The 32 bytes of a 64-digit hex string (either case), else `None`.
fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    let (pairs, _) = digits.as_chunks::<2>();
    for (byte, &[hi, lo]) in out.iter_mut().zip(pairs) {
        *byte = nibble(hi)? << 4 | nibble(lo)?;
    }
    Some(out)
}

/// Why `phc` is not a usable argon2 hash, if it is not.
fn check_argon2(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not an argon2 PHC string: {e}"))?;
    argon2::Algorithm::try_from(hash.algorithm)
        .map_err(|e| format!("not an argon2 PHC string: {e}"))?;
    argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if hash.hash.is_none() {
        return Err("the argon2 PHC string has no hash".to_owned());
    }
    Ok(())
}

/// Whether `presented` hashes to `phc` (checked by [`check_argon2`]).
fn argon2_verify(phc: &str, presented: &[u8]) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(presented, &hash).is_ok())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The two hashed forms of `key` (which must pass the rules for plain keys):
/// `sha256:<hex>` and an argon2id PHC string with a random salt and
/// argon2's default parameters.
pub fn hash_key(key: &str) -> Result<(String, String), AuthError> {
    let key = key.trim();
    let checked = ApiKey::checked(key, "to hash")?;
    if !matches!(checked.0, Secret::Plain(_)) {
        return Err(AuthError::BadHash {
            origin: "to hash".to_owned(),
            reason: "it is already a hash".to_owned(),
        });
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(AuthError::Random)?;
    let internal = |e: argon2::password_hash::Error| AuthError::BadHash {
        origin: "to hash".to_owned(),
        reason: e.to_string(),
    };
    let salt = SaltString::encode_b64(&salt).map_err(internal)?;
    let phc = Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .map_err(internal)?
        .to_string();
    Ok((
        format!("{SHA256_PREFIX}{}", hex(&sha256(key.as_bytes()))),
        phc,
    ))
}

/// Every key the API accepts, with its role; what argon2 said about keys
/// presented before; and the addresses that failed authentication lately.
pub struct Keyring {
    keys: Vec<(ApiKey, Role)>,
    /// sha-256 of a presented key that some key accepts → the highest role
    /// among the argon2 keys it matched (`None`: it matched none of them).
    /// Only correct keys get here, and each configured key accepts one
    /// string, so the table never holds more entries than there are keys.
    known: Mutex<HashMap<[u8; 32], Option<Role>>>,
    /// sha-256 of presented keys that no key accepts, oldest first; bounded
    /// by `--auth-cache-entries`.
    rejected: Mutex<Fifo>,
    /// One argon2 verification at a time: a flood of wrong keys costs at
    /// most one core.
    argon2_slot: tokio::sync::Semaphore,
    /// Failed authentications by source.
    failures: Mutex<Failures>,
    limits: AuthLimits,
    counters: Arc<Counters>,
}

/// The limits of the key check (from [`super::limits::Options`]).
#[derive(Clone, Copy, Debug)]
struct AuthLimits {
    max_failures: u32,
    window: Duration,
    max_sources: usize,
    cache_entries: usize,
}

impl From<&LimitOptions> for AuthLimits {
    fn from(o: &LimitOptions) -> Self {
        Self {
            max_failures: o.auth_max_failures,
            window: o.auth_failure_window,
            max_sources: o.auth_max_sources as usize,
            cache_entries: o.auth_cache_entries as usize,
        }
    }
}

/// A set of digests that forgets the oldest when full.
#[derive(Default)]
struct Fifo {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Fifo {
    /// Adds `digest`; true when an older entry had to be forgotten.
    fn insert(&mut self, digest: [u8; 32], capacity: usize) -> bool {
        if !self.set.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        let evict = self.order.len() > capacity;
        if evict && let Some(old) = self.order.pop_front() {
            self.set.remove(&old);
        }
        evict
    }
}

/// Failed authentications per source in the current window.
#[derive(Default)]
struct Failures {
    by_source: HashMap<IpAddr, (Instant, u32)>,
}

/// Whom failures are counted against: the address, or an IPv6 address's
/// /64 (one host often holds a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

/// What the cheap part of a key check decided.
enum Cheap {
    /// The answer, without argon2.
    Decided(Option<Role>),
    /// Only argon2 can tell.
    NeedsArgon2,
}

impl Keyring {
    /// A keyring holding `admin` only, with the default limits.
    pub fn new(admin: ApiKey) -> Self {
        Self {
            keys: vec![(admin, Role::Admin)],
            known: Mutex::new(HashMap::new()),
            rejected: Mutex::new(Fifo::default()),
            argon2_slot: tokio::sync::Semaphore::new(1),
            failures: Mutex::new(Failures::default()),
            limits: AuthLimits::from(&LimitOptions::default()),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Adds `keys` with `role`.
    pub fn with(mut self, role: Role, keys: impl IntoIterator<Item = ApiKey>) -> Self {
        self.keys.extend(keys.into_iter().map(|k| (k, role)));
        self
    }

    /// The same keys under `opts`' limits, counting into `counters`.
    pub fn limited(mut self, opts: &LimitOptions, counters: Arc<Counters>) -> Self {
        self.limits = AuthLimits::from(opts);
        self.counters = counters;
        self
    }

    /// How many keys have `role`.
    pub fn count(&self, role: Role) -> usize {
        self.keys.iter().filter(|(_, r)| *r == role).count()
    }

    /// The highest role of a key `presented` matches, if any (with no rate
    /// limit: see [`Keyring::check`]).
    pub async fn authenticate(&self, presented: &[u8]) -> Option<Role> {
        let digest = sha256(presented);
        match self.cheap(presented, &digest) {
            Cheap::Decided(role) => role,
            Cheap::NeedsArgon2 => self.slow(presented, digest).await,
        }
    }

    /// The role of the key a request presents (`None`: none presented),
    /// coming from `source` (when known). A source that failed too often
    /// lately gets [`ApiError::RateLimited`] unless its key is known to be
    /// correct without argon2 (a plain or sha-256 key, or an argon2 key that
    /// verified before), so a correct key keeps working from a source that
    /// others behind the same address abuse; while limited, nothing costs
    /// an argon2 verification.
    pub async fn check(
        &self,
        presented: Option<&[u8]>,
        source: Option<IpAddr>,
    ) -> Result<Role, ApiError> {
        let source = source.map(source_key);
        let role = match presented {
            None => None,
            Some(presented) => {
                let digest = sha256(presented);
                match self.cheap(presented, &digest) {
                    Cheap::Decided(role) => role,
                    Cheap::NeedsArgon2 => {
                        self.refuse_if_limited(source)?;
                        self.slow(presented, digest).await
                    }
                }
            }
        };
        if let Some(role) = role {
            return Ok(role);
        }
        self.refuse_if_limited(source)?;
        Counters::bump(&self.counters.auth_failures);
        if let Some(source) = source {
            self.failed(source, Instant::now());
        }
        Err(ApiError::Unauthorized)
    }

    /// A 429 (counted) when `source` has used up its failures.
    fn refuse_if_limited(&self, source: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(source) = source else { return Ok(()) };
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(&(start, count)) = failures.by_source.get(&source) else {
            return Ok(());
        };
        let end = start + self.limits.window;
        if count < self.limits.max_failures || now >= end {
            return Ok(());
        }
        Counters::bump(&self.counters.auth_rate_limited);
        let left = end.saturating_duration_since(now);
        Err(ApiError::RateLimited {
            retry_after: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        })
    }

    /// Counts a failure of `source` at `now`.
    fn failed(&self, source: IpAddr, now: Instant) {
        let window = self.limits.window;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut failures.by_source;
        if !table.contains_key(&source) && table.len() >= self.limits.max_sources {
            table.retain(|_, (start, _)| now < *start + window);
            if table.len() >= self.limits.max_sources {
                // The entry whose window ends first.
                let oldest = table.iter().min_by_key(|(_, (start, _))| *start);
                if let Some(oldest) = oldest.map(|(ip, _)| *ip) {
                    table.remove(&oldest);
                    Counters::bump(&self.counters.auth_sources_evicted);
                }
            }
        }
        let entry = table.entry(source).or_insert((now, 0));
        if now >= entry.0 + window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// What can be decided without argon2: plain and sha-256 keys, and the
    /// remembered argon2 results.
    fn cheap(&self, presented: &[u8], digest: &[u8; 32]) -> Cheap {
        // Every cheap key is compared, so the time does not say which matched.
        let fast = self
            .keys
            .iter()
            .filter(|(key, _)| key.matches_fast(presented, digest))
            .map(|(_, role)| *role)
            .max();
        let higher_argon2 = self
            .keys
            .iter()
            .any(|(key, role)| key.argon2().is_some() && fast.is_none_or(|f| *role > f));
        if !higher_argon2 {
            return Cheap::Decided(fast);
        }
        if let Some(outcome) = self.remembered(digest) {
            return Cheap::Decided(fast.max(outcome));
        }
        if fast.is_none()
            && self
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set
                .contains(digest)
        {
            return Cheap::Decided(None);
        }
        Cheap::NeedsArgon2
    }

    /// Verifies `presented` against the argon2 keys above its cheap role,
    /// one verification at a time, and remembers the outcome.
    async fn slow(&self, presented: &[u8], digest: [u8; 32]) -> Option<Role> {
        let _slot = self.argon2_slot.acquire().await.ok()?;
        // A request queued behind another with the same key finds it here.
        if let Cheap::Decided(role) = self.cheap(presented, &digest) {
            return role;
        }
        let fast = self
            .keys
            .iter()
            .filter(|(key, _)| key.matches_fast(presented, &digest))
            .map(|(_, role)| *role)
            .max();
        let argon2: Vec<(Box<str>, Role)> = self
            .keys
            .iter()
            .filter(|(_, role)| fast.is_none_or(|f| *role > f))
            .filter_map(|(key, role)| Some((key.argon2()?.into(), *role)))
            .collect();
        let presented = presented.to_vec();
        let counters = Arc::clone(&self.counters);
        let outcome = tokio::task::spawn_blocking(move || {
            argon2
                .iter()
                .filter(|(phc, _)| {
                    Counters::bump(&counters.argon2_verifications);
                    argon2_verify(phc, &presented)
                })
                .map(|(_, role)| *role)
                .max()
        })
        .await
        .ok()?;
        if fast.is_some() || outcome.is_some() {
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(digest, outcome);
        } else if self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest, self.limits.cache_entries)
        {
            Counters::bump(&self.counters.auth_cache_evicted);
        }
        fast.max(outcome)
    }

    fn remembered(&self, digest: &[u8; 32]) -> Option<Option<Role>> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .copied()
    }
}

impl From<ApiKey> for Keyring {
    fn from(admin: ApiKey) -> Self {
        Self::new(admin)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Secret::Plain(_) => "ApiKey(***)",
            Secret::Sha256(_) => "ApiKey(sha256:***)",
            Secret::Argon2(_) => "ApiKey($argon2***)",
        })
    }
}

/// Where the key in use came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `NETMON_API_KEY` environment variable.
    Env,
    /// An existing file: the one given on the command line, or the key file
    /// in the state directory from an earlier start.
    File(PathBuf),
    /// A key generated on this start and written to this file.
    Generated(PathBuf),
    /// A systemd credential (`LoadCredential=api-key:...`).
    Credential(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str(KEY_ENV_VAR),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Generated(path) => write!(f, "{} (newly generated)", path.display()),
            Self::Credential(path) => write!(f, "systemd credential {}", path.display()),
        }
    }
}

/// Why no API key could be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The key is shorter than [`MIN_KEY_LEN`] characters.
    #[error("API key {origin} is too short: {len} characters, need at least {MIN_KEY_LEN}")]
    TooShort {
        /// Where the key came from, e.g. "from NETMON_API_KEY" or "in /etc/netmon/api-key".
        origin: String,
        /// Its length in characters.
        len: usize,
    },

    /// The key holds whitespace, control or non-ASCII characters.
    #[error("API key {origin} may only contain printable ASCII characters, without spaces")]
    BadCharacters {
        /// Where the key came from.
        origin: String,
    },

    /// A key file exists but holds nothing but whitespace.
    #[error("API key file {} is empty", path.display())]
    EmptyKeyFile {
        /// The empty file.
        path: PathBuf,
    },

    /// A key file is missing, unreadable or not UTF-8.
    #[error("cannot read API key file {}", path.display())]
    ReadKeyFile {
        /// The file that could not be read.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// The state directory for a generated key could not be created.
    #[error("cannot create state directory {} for the API key", path.display())]
    CreateStateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// A newly generated key could not be written out.
    #[error("cannot write new API key file {}", path.display())]
    WriteKeyFile {
        /// The file being created.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// A key given as a hash (`sha256:` or `$argon2` prefix) is malformed.
    #[error("API key {origin} is not a valid hash: {reason}")]
    BadHash {
        /// Where the key came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A read-only key file holds no key (only blank lines and comments).
    #[error("read-only key file {} holds no key", path.display())]
    NoKeysInFile {
        /// The file.
        path: PathBuf,
    },

    /// The OS random number generator failed.
    #[error("cannot get random bytes from the OS for a new API key")]
    Random(#[source] getrandom::Error),
}

/// Finds the API key: `env_value` (the caller's reading of `NETMON_API_KEY`)
/// if set and not blank, else `key_file` if given, else
/// `<state_dir>/api-key`, which is created with a new random key if missing.
///
/// Keys from the environment or a file are trimmed and must be at least
/// [`MIN_KEY_LEN`] printable ASCII characters. A key file that group or others
/// may access is used, with a warning.
pub fn load_or_generate(
    env_value: Option<String>,
    key_file: Option<&Path>,
    state_dir: &Path,
) -> Result<(ApiKey, KeySource), AuthError> {
    load_or_generate_with_credentials(env_value, key_file, None, state_dir)
}

/// [`load_or_generate`], with systemd's credentials directory
/// (`$CREDENTIALS_DIRECTORY`, from `LoadCredential=api-key:...`) tried
/// after `key_file` and before the state directory: its file
/// [`CREDENTIAL_NAME`] is used when present.
pub fn load_or_generate_with_credentials(
    env_value: Option<String>,
    key_file: Option<&Path>,
    credentials_dir: Option<&Path>,
    state_dir: &Path,
) -> Result<(ApiKey, KeySource), AuthError> {
    if let Some(value) = env_value.as_deref().map(str::trim)
        && !value.is_empty()
    {
        let key = ApiKey::checked(value, &format!("from {KEY_ENV_VAR}"))?;
        return Ok((key, KeySource::Env));
    }
    if let Some(path) = key_file {
        let key = read_key_file(path)?;
        return Ok((key, KeySource::File(path.to_owned())));
    }
    if let Some(dir) = credentials_dir {
        let path = dir.join(CREDENTIAL_NAME);
        if path.exists() {
            let key = read_key_file(&path)?;
            return Ok((key, KeySource::Credential(path)));
        }
    }
    let path = state_dir.join(KEY_FILE_NAME);
    match read_key_file(&path) {
        Ok(key) => Ok((key, KeySource::File(path))),
        Err(AuthError::ReadKeyFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            generate_key_file(state_dir, &path)
        }
        Err(err) => Err(err),
    }
}

fn read_key_file(path: &Path) -> Result<ApiKey, AuthError> {
    let contents = read_private_file(path)?;
    let secret = contents.trim();
    if secret.is_empty() {
        return Err(AuthError::EmptyKeyFile {
            path: path.to_owned(),
        });
    }
    ApiKey::checked(secret, &format!("in {}", path.display()))
}

/// Reads every `--read-only-key-file`: see [`parse_key_list`].
pub fn read_key_lists(paths: &[PathBuf]) -> Result<Vec<ApiKey>, AuthError> {
    let mut keys = Vec::new();
    for path in paths {
        let contents = read_private_file(path)?;
        let found = parse_key_list(&contents, path)?;
        if found.is_empty() {
            return Err(AuthError::NoKeysInFile { path: path.clone() });
        }
        keys.extend(found);
    }
    Ok(keys)
}

/// The keys in a key list file's `contents`: one a line, each the key
/// itself or a hash of it; blank lines and lines starting with `#` are
/// skipped, surrounding whitespace is trimmed. Errors name `path` and the line.
pub fn parse_key_list(contents: &str, path: &Path) -> Result<Vec<ApiKey>, AuthError> {
    contents
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| ApiKey::checked(line, &format!("on line {n} of {}", path.display())))
        .collect()
}

/// A key file's text; warns when group or others may access it.
fn read_private_file(path: &Path) -> Result<String, AuthError> {
    let read_err = |source: io::Error| AuthError::ReadKeyFile {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    // Metadata of the opened file, so the check and the read see the same file.
    let mode = file.metadata().map_err(read_err)?.mode();
    if mode & 0o077 != 0 {
        warn!(
            path = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "API key file is accessible by group or others; chmod 600 it."
        );
    }
    let mut contents = String::new();
    file.read_to_string(&mut contents).map_err(read_err)?;
    Ok(contents)
}

/// Writes a new random key to `path` (inside `state_dir`), mode 0600 from the
/// moment it exists. If another process created it first, that key is used.
fn generate_key_file(state_dir: &Path, path: &Path) -> Result<(ApiKey, KeySource), AuthError> {
    // 0700 applies to directories created here; an existing one keeps its mode.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| AuthError::CreateStateDir {
            path: state_dir.to_owned(),
            source,
        })?;

    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(AuthError::Random)?;
    let secret = hex(&bytes);

    let write_err = |source: io::Error| AuthError::WriteKeyFile {
        path: path.to_owned(),
        source,
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let key = read_key_file(path)?;
            return Ok((key, KeySource::File(path.to_owned())));
        }
        Err(err) => return Err(write_err(err)),
    };
    let written = file
        .write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        // Make the new directory entry durable too.
        .and_then(|()| File::open(state_dir)?.sync_all());
    if let Err(err) = written {
        // Leave no empty or partial key behind for the next start to trip on.
        let _ = fs::remove_file(path);
        return Err(write_err(err));
    }
    // 64 lowercase hex digits: valid by construction.
    let key = ApiKey(Secret::Plain(secret.into_bytes().into()));
    Ok((key, KeySource::Generated(path.to_owned())))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The key a request presents: `X-API-KEY` if present, else the token of an
/// `Authorization: Bearer` header (scheme matched case-insensitively).
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        return Some(value.as_bytes().trim_ascii());
    }
    let value = headers.get(header::AUTHORIZATION)?.as_bytes().trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Middleware letting through only requests that present a key in `keys`,
/// with the key's [`Role`] added to the request's extensions; the rest get
/// [`ApiError::Unauthorized`]. Use with
/// `route_layer(middleware::from_fn_with_state(keys, require_key))`; it works
/// with any router state.
pub async fn require_key(
    State(keys): State<Arc<Keyring>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // Present when served by `api::server` (and axum's connect info).
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let presented = presented_key(req.headers());
    let reason = if presented.is_some() {
        "invalid key"
    } else {
        "no key"
    };
    match keys.check(presented, remote.map(|a| a.ip())).await {
        Ok(role) => {
            req.extensions_mut().insert(role);
            Ok(next.run(req).await)
        }
        Err(e) => {
            debug!(
                remote = remote.map(tracing::field::display),
                path = req.uri().path(),
                reason,
                status = e.status().as_u16(),
                "Rejected API request."
            );
            Err(e)
        }
    }
}

/// Middleware, inside [`require_key`], letting through only requests whose
/// key has at least the role given as its state; the rest get a 403 with
/// the JSON error body. Use with
/// `route_layer(middleware::from_fn_with_state(Role::Admin, require_role))`.
pub async fn require_role(State(needed): State<Role>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(role) if *role >= needed => next.run(req).await,
        role => {
            debug!(
                path = req.uri().path(),
                role = role.map(tracing::field::display),
                %needed,
                "Refused API request: role too low."
            );
            forbidden(needed)
        }
    }
}

/// A 403 in the shape of [`ApiError`]'s JSON body (which has no 403 yet).
fn forbidden(needed: Role) -> Response {
    super::error::ApiError::Forbidden(format!("this endpoint needs an {needed} key"))
        .into_response()
}

/// Options for who may use the API and how it is reached.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Options {
    /// File of read-only API keys (repeatable): one key a line, the key
    /// itself or `sha256:<hex>` or an argon2 PHC string (`netmon-agent
    /// hash-key` prints both); `#` starts a comment line. A read-only key
    /// reads every GET endpoint.
    #[arg(
        long = "read-only-key-file",
        value_name = "PATH",
        env = "NETMON_READ_ONLY_KEY_FILES",
        value_delimiter = ','
    )]
    pub read_only_key_files: Vec<PathBuf>,

    /// PEM certificate chain: serve the API over HTTPS (needs --tls-key).
    #[arg(
        long,
        value_name = "PATH",
        env = "NETMON_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        value_name = "PATH",
        env = "NETMON_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use axum::{
        Router,
        body::Body,
        http::{self, StatusCode, header},
        middleware,
        routing::get,
    };
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;

    const KEY: &str = "0123456789abcdef-test";

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn write_key(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = ApiKey::new(KEY).unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
    }

    #[test]
    fn env_wins_over_file_and_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_key(dir.path(), "key", "file-key-0123456789", 0o600);
        let (key, source) =
            load_or_generate(Some(format!(" {KEY}\n")), Some(&file), dir.path()).unwrap();
        assert_eq!(source, KeySource::Env);
        assert!(key.matches(KEY.as_bytes()));
        assert!(!dir.path().join(KEY_FILE_NAME).exists());
    }

    #[test]
    fn blank_env_falls_through_to_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_key(dir.path(), "key", "  file-key-0123456789\n", 0o600);
        for env in [None, Some(String::new()), Some("  ".to_owned())] {
            let (key, source) = load_or_generate(env, Some(&file), dir.path()).unwrap();
            assert_eq!(source, KeySource::File(file.clone()));
            assert!(key.matches(b"file-key-0123456789"));
        }
        assert!(!dir.path().join(KEY_FILE_NAME).exists());
    }

    #[test]
    fn key_file_wins_over_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), KEY_FILE_NAME, "state-key-0123456789", 0o600);
        let file = write_key(dir.path(), "key", "file-key-0123456789", 0o600);
        let (key, source) = load_or_generate(None, Some(&file), dir.path()).unwrap();
        assert_eq!(source, KeySource::File(file));
        assert!(key.matches(b"file-key-0123456789"));
    }

    #[test]
    fn generates_a_private_key_once_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state/netmon");
        let path = state_dir.join(KEY_FILE_NAME);

        let (first, source) = load_or_generate(None, None, &state_dir).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        assert_eq!(mode(&state_dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let secret = fs::read_to_string(&path).unwrap();
        let secret = secret.trim_end();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(first.matches(secret.as_bytes()));

        let (second, source) = load_or_generate(None, None, &state_dir).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert!(second.matches(secret.as_bytes()));
    }

    #[test]
    fn generated_keys_differ() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        load_or_generate(None, None, a.path()).unwrap();
        load_or_generate(None, None, b.path()).unwrap();
        let read = |dir: &Path| fs::read_to_string(dir.join(KEY_FILE_NAME)).unwrap();
        assert_ne!(read(a.path()), read(b.path()));
    }

    #[test]
    fn short_env_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_or_generate(Some("hunter2".to_owned()), None, dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "API key from NETMON_API_KEY is too short: 7 characters, need at least 16"
        );
    }

    #[test]
    fn short_file_key_is_rejected_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_key(dir.path(), "key", "short\n", 0o600);
        let err = load_or_generate(None, Some(&file), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "API key in {} is too short: 5 characters, need at least 16",
                file.display()
            )
        );
    }

    #[test]
    fn key_with_inner_space_is_rejected() {
        let err = ApiKey::new("correct horse battery staple").unwrap_err();
        assert!(matches!(err, AuthError::BadCharacters { .. }), "{err}");
    }

    #[test]
    fn missing_or_empty_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load_or_generate(None, Some(&missing), dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::ReadKeyFile { .. }));
        assert!(err.to_string().contains(&missing.display().to_string()));

        let empty = write_key(dir.path(), "empty", " \n", 0o600);
        let err = load_or_generate(None, Some(&empty), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("API key file {} is empty", empty.display())
        );
    }

    #[test]
    fn empty_state_key_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), KEY_FILE_NAME, "", 0o600);
        let err = load_or_generate(None, None, dir.path()).unwrap_err();
        assert!(matches!(err, AuthError::EmptyKeyFile { .. }), "{err}");
    }

    #[test]
    fn world_readable_key_file_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_key(dir.path(), "key", KEY, 0o644);
        let (key, _) = load_or_generate(None, Some(&file), dir.path()).unwrap();
        assert!(key.matches(KEY.as_bytes()));
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn matches_requires_the_exact_key() {
        let key = ApiKey::new(KEY).unwrap();
        assert!(key.matches(KEY.as_bytes()));
        assert!(!key.matches(b""));
        assert!(!key.matches(&KEY.as_bytes()[..KEY.len() - 1]));
        assert!(!key.matches(format!("{KEY}x").as_bytes()));
        assert!(!key.matches(KEY.to_uppercase().as_bytes()));
    }

    /// A read-only key, and the same given as hashes (see `hashes_of_ro_keys`).
    const RO_KEY: &str = "dashboard-key-0123456789";
    const RO_SHA_KEY: &str = "dashboard-sha-key-0123456789";
    const RO_ARGON_KEY: &str = "dashboard-argon-key-0123456789";

    /// `RO_ARGON_KEY`'s argon2 form, hashed once: argon2 is slow unoptimised.
    fn ro_argon_phc() -> &'static str {
        static PHC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PHC.get_or_init(|| hash_key(RO_ARGON_KEY).unwrap().1)
    }

    fn keyring() -> Keyring {
        let (sha, _) = hash_key(RO_SHA_KEY).unwrap();
        Keyring::new(ApiKey::new(KEY).unwrap()).with(
            Role::ReadOnly,
            [RO_KEY, &sha, ro_argon_phc()].map(|k| ApiKey::new(k).unwrap()),
        )
    }

    /// `/v1/secret` for any key, `/v1/admin` for admin keys only, and
    /// `/v1/role` echoing the role the middleware put in the extensions.
    fn app_with(keys: Keyring) -> Router {
        let keys = Arc::new(keys);
        let admin = Router::new()
            .route("/v1/admin", get(|| async { "admin" }))
            .route_layer(middleware::from_fn_with_state(Role::Admin, require_role));
        let protected = Router::new()
            .route("/v1/secret", get(|| async { "secret" }))
            .route(
                "/v1/role",
                get(|axum::Extension(role): axum::Extension<Role>| async move { role.to_string() }),
            )
            .merge(admin)
            .route_layer(middleware::from_fn_with_state(keys, require_key));
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(protected)
            .fallback(super::super::error::not_found)
    }

    fn app() -> Router {
        app_with(Keyring::new(ApiKey::new(KEY).unwrap()))
    }

    async fn call(uri: &str, header: Option<(&str, &str)>) -> Response {
        let mut request = http::Request::get(uri);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).expect("response body should be JSON")
    }

    async fn assert_unauthorized(response: Response) {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="netmon""#
        );
        assert_eq!(
            body_json(response).await,
            json!({"error": {"code": "unauthorized", "message": "missing or invalid API key"}})
        );
    }

    #[tokio::test]
    async fn no_key_is_401_with_challenge() {
        assert_unauthorized(call("/v1/secret", None).await).await;
    }

    #[tokio::test]
    async fn wrong_key_is_401() {
        let wrong = "0123456789abcdef-tesT";
        assert_unauthorized(call("/v1/secret", Some(("x-api-key", wrong))).await).await;
        let bearer = format!("Bearer {wrong}");
        assert_unauthorized(call("/v1/secret", Some(("authorization", &bearer))).await).await;
    }

    #[tokio::test]
    async fn other_auth_schemes_are_401() {
        let basic = format!("Basic {KEY}");
        assert_unauthorized(call("/v1/secret", Some(("authorization", &basic))).await).await;
        assert_unauthorized(call("/v1/secret", Some(("authorization", KEY))).await).await;
    }

    #[tokio::test]
    async fn accepted_key_forms_reach_the_handler() {
        let bearer = format!("Bearer {KEY}");
        let lower = format!("bearer {KEY}");
        let shouting = format!("BEARER   {KEY}");
        for header in [
            ("X-API-KEY", KEY),
            ("x-api-key", KEY),
            ("Authorization", bearer.as_str()),
            ("authorization", lower.as_str()),
            ("Authorization", shouting.as_str()),
        ] {
            let response = call("/v1/secret", Some(header)).await;
            assert_eq!(response.status(), StatusCode::OK, "with {header:?}");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&body[..], b"secret");
        }
    }

    #[tokio::test]
    async fn health_needs_no_key() {
        assert_eq!(call("/health", None).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_path_is_json_404_without_key() {
        let response = call("/v1/nope", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(response).await,
            json!({"error": {"code": "not_found", "message": "no such endpoint"}})
        );
    }

    #[test]
    fn systemd_credential_comes_after_the_key_file_and_before_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        fs::create_dir(&creds).unwrap();
        let cred = creds.join(CREDENTIAL_NAME);
        fs::write(&cred, format!("{KEY}\n")).unwrap();
        fs::set_permissions(&cred, fs::Permissions::from_mode(0o400)).unwrap();
        let state = dir.path().join("state");
        let (key, source) =
            load_or_generate_with_credentials(None, None, Some(&creds), &state).unwrap();
        assert!(key.matches(KEY.as_bytes()));
        assert_eq!(source, KeySource::Credential(cred));
        assert!(
            !state.exists(),
            "a key was generated despite the credential"
        );
        // No credential file: the state directory's key is generated.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let (_, source) =
            load_or_generate_with_credentials(None, None, Some(&empty), &state).unwrap();
        assert!(matches!(source, KeySource::Generated(_)), "{source:?}");
    }

    #[test]
    fn sha256_key_matches_the_plain_key_only() {
        let (real, _) = hash_key(KEY).unwrap();
        let key = ApiKey::new(&real).unwrap();
        assert!(key.matches(KEY.as_bytes()));
        assert!(!key.matches(b"0123456789abcdef-tesT"));
        assert!(!key.matches(real.as_bytes()));
        // Upper-case hex is the same hash.
        assert!(
            ApiKey::new(&real.to_uppercase().replace("SHA256:", "sha256:"))
                .unwrap()
                .matches(KEY.as_bytes())
        );
    }

    #[test]
    fn sha256_form_is_the_hex_digest() {
        let (sha, _) = hash_key(KEY).unwrap();
        assert_eq!(sha, format!("sha256:{}", hex(&sha256(KEY.as_bytes()))),);
        // The digest of a known vector (FIPS 180-2, "abc").
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn argon2_key_matches_the_plain_key_only() {
        let (_, phc) = hash_key(KEY).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        let key = ApiKey::new(&phc).unwrap();
        assert!(key.matches(KEY.as_bytes()));
        assert!(!key.matches(b"0123456789abcdef-tesT"));
        assert!(!key.matches(phc.as_bytes()));
        // A fresh salt each time.
        assert_ne!(hash_key(KEY).unwrap().1, phc);
    }

    #[test]
    fn bad_hashes_are_rejected_naming_the_source() {
        for (bad, needle) in [
            ("sha256:abc", "64 hex digits, found 3 characters"),
            (
                "sha256:zz00000000000000000000000000000000000000000000000000000000000000",
                "64 hex digits",
            ),
            ("$argon2id$v=19$nonsense", "has no hash"),
            (
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!!",
                "not an argon2 PHC string",
            ),
            ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ", "has no hash"),
            (
                "$argon2xx$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
                "argon2",
            ),
            (
                "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                "parameters",
            ),
        ] {
            let err = ApiKey::checked(bad, "in /etc/k").unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, AuthError::BadHash { .. }), "{bad}: {text}");
            assert!(
                text.starts_with("API key in /etc/k is not a valid hash"),
                "{text}"
            );
            assert!(text.contains(needle), "{bad}: {text}");
        }
    }

    #[test]
    fn hash_key_refuses_short_keys_and_hashes() {
        assert!(matches!(
            hash_key("short").unwrap_err(),
            AuthError::TooShort { .. }
        ));
        let (sha, phc) = hash_key(KEY).unwrap();
        for h in [sha, phc] {
            assert!(matches!(
                hash_key(&h).unwrap_err(),
                AuthError::BadHash { .. }
            ));
        }
    }

    #[test]
    fn key_lists_skip_comments_and_blanks_and_name_bad_lines() {
        let path = Path::new("/etc/netmon/ro-keys");
        let (sha, phc) = hash_key(RO_SHA_KEY).unwrap();
        let text = format!("# dashboards\n\n  {RO_KEY}  \n{sha}\n# old: {KEY}\n{phc}\n");
        let keys = parse_key_list(&text, path).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys[0].matches(RO_KEY.as_bytes()));
        assert!(keys[1].matches(RO_SHA_KEY.as_bytes()));
        assert!(keys[2].matches(RO_SHA_KEY.as_bytes()));
        assert!(!keys.iter().any(|k| k.matches(KEY.as_bytes())));

        let err = parse_key_list("# ok\nvalid-key-0123456789\nshort\n", path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "API key on line 3 of /etc/netmon/ro-keys is too short: 5 characters, need at least 16"
        );
        assert!(parse_key_list("# nothing\n\n", path).unwrap().is_empty());
    }

    #[test]
    fn read_key_lists_reads_every_file_and_refuses_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_key(dir.path(), "a", &format!("{RO_KEY}\n"), 0o600);
        let b = write_key(dir.path(), "b", &format!("# b\n{RO_SHA_KEY}\n"), 0o640);
        let keys = read_key_lists(&[a.clone(), b]).unwrap();
        assert_eq!(keys.len(), 2);
        let empty = write_key(dir.path(), "empty", "# none yet\n", 0o600);
        let err = read_key_lists(&[a.clone(), empty.clone()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("read-only key file {} holds no key", empty.display())
        );
        let missing = dir.path().join("missing");
        let err = read_key_lists(&[a, missing.clone()]).unwrap_err();
        assert!(matches!(err, AuthError::ReadKeyFile { ref path, .. } if *path == missing));
    }

    #[test]
    fn admin_key_file_may_hold_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (sha, _) = hash_key(KEY).unwrap();
        let file = write_key(dir.path(), "key", &format!("{sha}\n"), 0o600);
        let (key, _) = load_or_generate(None, Some(&file), dir.path()).unwrap();
        assert!(key.matches(KEY.as_bytes()));
        assert!(!key.matches(sha.as_bytes()));
        assert_eq!(format!("{key:?}"), "ApiKey(sha256:***)");
    }

    #[tokio::test]
    async fn keyring_gives_each_key_its_role() {
        let keys = keyring();
        assert_eq!(keys.count(Role::Admin), 1);
        assert_eq!(keys.count(Role::ReadOnly), 3);
        assert_eq!(keys.authenticate(KEY.as_bytes()).await, Some(Role::Admin));
        for ro in [RO_KEY, RO_SHA_KEY, RO_ARGON_KEY] {
            assert_eq!(
                keys.authenticate(ro.as_bytes()).await,
                Some(Role::ReadOnly),
                "{ro}"
            );
        }
        assert_eq!(keys.authenticate(b"dashboard-key-012345678").await, None);
        assert_eq!(keys.authenticate(b"").await, None);
        // The same key listed with both roles has the higher one.
        let both = Keyring::new(ApiKey::new(KEY).unwrap())
            .with(Role::ReadOnly, [ApiKey::new(KEY).unwrap()]);
        assert_eq!(both.authenticate(KEY.as_bytes()).await, Some(Role::Admin));
    }

    fn verifications(keys: &Keyring) -> u64 {
        Counters::get(&keys.counters.argon2_verifications)
    }

    #[tokio::test]
    async fn no_key_pays_argon2_twice() {
        let keys = keyring();
        // An argon2 key: one verification (the only argon2 key above no
        // role), then none.
        for _ in 0..3 {
            assert_eq!(
                keys.authenticate(RO_ARGON_KEY.as_bytes()).await,
                Some(Role::ReadOnly)
            );
        }
        assert_eq!(verifications(&keys), 1);
        // A wrong key: one verification, then remembered as wrong.
        for _ in 0..3 {
            assert_eq!(keys.authenticate(b"wrong-key-0123456789").await, None);
        }
        assert_eq!(verifications(&keys), 2);
        // Cheap keys never reach argon2 when no argon2 key is above them.
        assert_eq!(
            keys.authenticate(RO_KEY.as_bytes()).await,
            Some(Role::ReadOnly)
        );
        assert_eq!(keys.authenticate(KEY.as_bytes()).await, Some(Role::Admin));
        assert_eq!(verifications(&keys), 2);
    }

    #[tokio::test]
    async fn an_argon2_admin_key_costs_a_read_only_key_one_verification_in_all() {
        let (_, admin_phc) = hash_key(KEY).unwrap();
        let keys = Keyring::new(ApiKey::new(&admin_phc).unwrap())
            .with(Role::ReadOnly, [ApiKey::new(RO_KEY).unwrap()]);
        for _ in 0..5 {
            assert_eq!(
                keys.authenticate(RO_KEY.as_bytes()).await,
                Some(Role::ReadOnly)
            );
        }
        assert_eq!(
            verifications(&keys),
            1,
            "the read-only key was checked against the admin hash more than once"
        );
        for _ in 0..3 {
            assert_eq!(keys.authenticate(KEY.as_bytes()).await, Some(Role::Admin));
        }
        assert_eq!(verifications(&keys), 2);
        assert_eq!(keys.known.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn wrong_keys_are_remembered_in_a_bounded_table() {
        let opts = LimitOptions {
            auth_cache_entries: 16,
            ..LimitOptions::default()
        };
        let keys = keyring().limited(&opts, Arc::new(Counters::default()));
        for i in 0..20 {
            let wrong = format!("wrong-key-{i:04}-0123456789");
            assert_eq!(keys.authenticate(wrong.as_bytes()).await, None);
        }
        assert_eq!(keys.rejected.lock().unwrap().set.len(), 16);
        assert_eq!(keys.rejected.lock().unwrap().order.len(), 16);
        assert_eq!(Counters::get(&keys.counters.auth_cache_evicted), 4);
        assert_eq!(verifications(&keys), 20);
        // The newest are remembered, the oldest forgotten.
        assert_eq!(keys.authenticate(b"wrong-key-0019-0123456789").await, None);
        assert_eq!(verifications(&keys), 20);
        assert_eq!(keys.authenticate(b"wrong-key-0000-0123456789").await, None);
        assert_eq!(verifications(&keys), 21);
        // Correct keys are not in that table and stay remembered.
        assert_eq!(
            keys.authenticate(RO_ARGON_KEY.as_bytes()).await,
            Some(Role::ReadOnly)
        );
        let before = verifications(&keys);
        for i in 100..140 {
            let wrong = format!("wrong-key-{i:04}-0123456789");
            keys.authenticate(wrong.as_bytes()).await;
        }
        let spent = verifications(&keys) - before;
        assert_eq!(
            keys.authenticate(RO_ARGON_KEY.as_bytes()).await,
            Some(Role::ReadOnly)
        );
        assert_eq!(verifications(&keys) - before, spent);
    }

    fn limited_keyring(max_failures: u32, window: Duration, sources: u32) -> Keyring {
        let opts = LimitOptions {
            auth_max_failures: max_failures,
            auth_failure_window: window,
            auth_max_sources: sources,
            ..LimitOptions::default()
        };
        keyring().limited(&opts, Arc::new(Counters::default()))
    }

    #[tokio::test]
    async fn a_source_failing_too_often_gets_429_and_a_correct_key_still_works() {
        let keys = limited_keyring(3, Duration::from_secs(60), 16);
        let bad: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        let wrong = Some(&b"wrong-key-0123456789"[..]);
        for _ in 0..3 {
            let err = keys.check(wrong, Some(bad)).await.unwrap_err();
            assert!(matches!(err, ApiError::Unauthorized), "{err}");
        }
        let err = keys.check(None, Some(bad)).await.unwrap_err();
        match err {
            ApiError::RateLimited { retry_after } => {
                assert!((1..=60).contains(&retry_after), "{retry_after}")
            }
            e => panic!("not a 429: {e}"),
        }
        assert!(matches!(
            keys.check(wrong, Some(bad)).await.unwrap_err(),
            ApiError::RateLimited { .. }
        ));
        // A correct cheap key from the same source still works...
        assert_eq!(
            keys.check(Some(RO_KEY.as_bytes()), Some(bad))
                .await
                .unwrap(),
            Role::ReadOnly
        );
        // ...but an argon2 key not verified before would cost argon2: 429.
        let before = verifications(&keys);
        assert!(matches!(
            keys.check(Some(RO_ARGON_KEY.as_bytes()), Some(bad))
                .await
                .unwrap_err(),
            ApiError::RateLimited { .. }
        ));
        assert_eq!(verifications(&keys), before);
        // Other sources are not affected; once verified there, the argon2
        // key works from the limited source too.
        assert_eq!(
            keys.check(Some(RO_ARGON_KEY.as_bytes()), Some(other))
                .await
                .unwrap(),
            Role::ReadOnly
        );
        assert_eq!(
            keys.check(Some(RO_ARGON_KEY.as_bytes()), Some(bad))
                .await
                .unwrap(),
            Role::ReadOnly
        );
        assert_eq!(Counters::get(&keys.counters.auth_failures), 3);
        assert_eq!(Counters::get(&keys.counters.auth_rate_limited), 3);
        // Without a known source there is nothing to count against.
        assert!(matches!(
            keys.check(wrong, None).await.unwrap_err(),
            ApiError::Unauthorized
        ));
    }

    #[tokio::test]
    async fn the_window_ends_and_ipv6_counts_per_64() {
        let keys = limited_keyring(2, Duration::from_millis(300), 16);
        let a: IpAddr = "fd00:1:2:3::1".parse().unwrap();
        let b: IpAddr = "fd00:1:2:3:ffff::2".parse().unwrap();
        assert!(keys.check(None, Some(a)).await.is_err());
        assert!(keys.check(None, Some(b)).await.is_err());
        assert!(matches!(
            keys.check(None, Some(a)).await.unwrap_err(),
            ApiError::RateLimited { .. }
        ));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(matches!(
            keys.check(None, Some(a)).await.unwrap_err(),
            ApiError::Unauthorized
        ));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(
            source_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn the_source_table_is_bounded_and_evictions_counted() {
        let keys = limited_keyring(1, Duration::from_secs(60), 16);
        for i in 0..20u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(keys.check(None, Some(ip)).await.is_err());
        }
        assert_eq!(keys.failures.lock().unwrap().by_source.len(), 16);
        assert_eq!(Counters::get(&keys.counters.auth_sources_evicted), 4);
        // The newest are still limited; the first were forgotten.
        assert!(matches!(
            keys.check(None, Some(IpAddr::from([10, 0, 0, 19])))
                .await
                .unwrap_err(),
            ApiError::RateLimited { .. }
        ));
        assert!(matches!(
            keys.check(None, Some(IpAddr::from([10, 0, 0, 0])))
                .await
                .unwrap_err(),
            ApiError::Unauthorized
        ));
    }

    async fn call_with(app: Router, uri: &str, key: &str) -> (StatusCode, Value) {
        let response = app
            .oneshot(
                http::Request::get(uri)
                    .header("x-api-key", key)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    #[tokio::test]
    async fn read_only_keys_read_but_only_admin_passes_require_role() {
        let app = app_with(keyring());
        for ro in [RO_KEY, RO_SHA_KEY, RO_ARGON_KEY] {
            let (status, body) = call_with(app.clone(), "/v1/secret", ro).await;
            assert_eq!((status, body), (StatusCode::OK, json!("secret")), "{ro}");
            let (status, body) = call_with(app.clone(), "/v1/role", ro).await;
            assert_eq!((status, body), (StatusCode::OK, json!("read-only")), "{ro}");
            let (status, body) = call_with(app.clone(), "/v1/admin", ro).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{ro}");
            assert_eq!(
                body,
                json!({"error": {"code": "forbidden", "message": "this endpoint needs an admin key"}})
            );
        }
        let (status, body) = call_with(app.clone(), "/v1/role", KEY).await;
        assert_eq!((status, body), (StatusCode::OK, json!("admin")));
        let (status, body) = call_with(app.clone(), "/v1/admin", KEY).await;
        assert_eq!((status, body), (StatusCode::OK, json!("admin")));
        // A wrong key is 401 before any role check.
        let (status, _) = call_with(app, "/v1/admin", "dashboard-key-01234567890").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn require_role_without_require_key_refuses() {
        let app = Router::new()
            .route("/v1/admin", get(|| async { "admin" }))
            .route_layer(middleware::from_fn_with_state(Role::Admin, require_role));
        let (status, _) = call_with(app, "/v1/admin", KEY).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
