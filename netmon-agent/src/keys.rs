//! The API keys: where they come from (environment, key file, systemd
//! credential, generated file in the state directory), the read-only key
//! lists, their checks, and their hashed forms (`sha256:` and argon2).
//!
//! The admin key is taken, first match wins, from `NETMON_API_KEY`, from a
//! key file named on the command line (`--api-key-file`), from the systemd
//! credential `api-key`, or from `<state_dir>/api-key`, which is created with
//! a fresh random key on first start. Read-only keys (a dashboard's) come
//! from `--read-only-key-file` files, one key a line, `#` comments.
//!
//! Any configured key may be given as a hash instead of the key itself:
//! `sha256:<64 hex digits>` or an argon2 PHC string (`$argon2id$v=19$...`);
//! `netmon-agent hash-key` prints both forms of a key read on stdin.
//!
//! Not HTTP: the configuration, the preflight (`check`) and start-up use it;
//! [`crate::api::auth`] checks the keys on requests.

use std::{
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use subtle::ConstantTimeEq;
use tracing::warn;

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
/// Prefix of a key given as its sha-256 in hex.
pub const SHA256_PREFIX: &str = "sha256:";
/// Prefix of a key given as an argon2 PHC string.
const ARGON2_PREFIX: &str = "$argon2";

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
    pub(crate) fn matches_fast(&self, presented: &[u8], digest: &[u8; 32]) -> bool {
        match &self.0 {
            Secret::Plain(key) => key.ct_eq(presented).into(),
            Secret::Sha256(hash) => hash.ct_eq(digest).into(),
            Secret::Argon2(_) => false,
        }
    }

    pub(crate) fn argon2(&self) -> Option<&str> {
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
pub(crate) fn argon2_verify(phc: &str, presented: &[u8]) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(presented, &hash).is_ok())
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
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
    Ok((sha256_form(key), phc))
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

/// A key this agent sends to another machine (`--push-key-file`): the
/// file's contents, trimmed; a missing, unreadable or blank file is an
/// error naming it.
pub fn read_secret_file(path: &Path) -> Result<String, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadKeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(AuthError::EmptyKeyFile {
            path: path.to_path_buf(),
        });
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AuthError::BadCharacters {
            origin: format!("in {}", path.display()),
        });
    }
    Ok(key.to_owned())
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

    let secret = random_key()?;

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

/// A new random key: [`GENERATED_KEY_BYTES`] from the OS, hex-encoded (a
/// hub's host tokens are made the same way as the generated API key).
pub fn random_key() -> Result<String, AuthError> {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(AuthError::Random)?;
    Ok(hex(&bytes))
}

/// The `sha256:<hex>` form of `key`, as [`hash_key`] prints it (without
/// argon2's cost: for keys as random as [`random_key`]'s, which nobody
/// guesses from their sha-256).
pub fn sha256_form(key: &str) -> String {
    format!("{SHA256_PREFIX}{}", hex(&sha256(key.as_bytes())))
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

    use super::*;

    const KEY: &str = "0123456789abcdef-test";
    const RO_KEY: &str = "dashboard-key-0123456789";
    const RO_SHA_KEY: &str = "dashboard-sha-key-0123456789";

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
}
