//! API key authentication: where the key comes from, and the middleware that
//! checks it on every protected request.
//!
//! The key is taken, first match wins, from `NETMON_API_KEY`, from a key file
//! named on the command line, or from `<state_dir>/api-key`, which is created
//! with a fresh random key on first start. Clients send it as
//! `X-API-KEY: <key>` or `Authorization: Bearer <key>`.
//!
//! Wire [`require_key`] with `route_layer` so it runs only for matched routes
//! (unknown paths stay 404) and leave `/health` outside it:
//!
//! ```ignore
//! let protected = Router::new()
//!     .route("/v1/rates", get(rates))
//!     .route_layer(middleware::from_fn_with_state(key.clone(), auth::require_key));
//! let app = Router::new()
//!     .route("/health", get(health))
//!     .merge(protected)
//!     .fallback(error::not_found);
//! ```

use std::{
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use super::error::ApiError;

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

/// The shared secret clients must present. Its `Debug` never prints it.
pub struct ApiKey(Box<[u8]>);

impl ApiKey {
    /// Checks and wraps a key given in code (tests, embedding), with the same
    /// rules as keys from the environment or a file.
    pub fn new(secret: &str) -> Result<Self, AuthError> {
        Self::checked(secret, "given to ApiKey::new")
    }

    /// `origin` completes "API key … is too short", e.g. "from NETMON_API_KEY".
    fn checked(secret: &str, origin: &str) -> Result<Self, AuthError> {
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
        Ok(Self(secret.as_bytes().into()))
    }

    /// Whether `presented` is this key. The time taken depends on the lengths
    /// only, never on where the first differing byte is; the key's length is
    /// not a secret worth guarding (generated keys are always 64 characters).
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
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
    let secret = contents.trim();
    if secret.is_empty() {
        return Err(AuthError::EmptyKeyFile {
            path: path.to_owned(),
        });
    }
    ApiKey::checked(secret, &format!("in {}", path.display()))
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
    let key = ApiKey(secret.into_bytes().into());
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

/// Middleware letting through only requests that present `key`; the rest get
/// [`ApiError::Unauthorized`]. Use with
/// `route_layer(middleware::from_fn_with_state(key, require_key))`; it works
/// with any router state.
pub async fn require_key(
    State(key): State<Arc<ApiKey>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let failure = match presented_key(req.headers()) {
        Some(presented) if key.matches(presented) => return Ok(next.run(req).await),
        Some(_) => "invalid key",
        None => "no key",
    };
    // Present only when the server was started with connect info.
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| tracing::field::display(*addr));
    debug!(
        remote,
        path = req.uri().path(),
        reason = failure,
        "Rejected API request."
    );
    Err(ApiError::Unauthorized)
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

    fn app() -> Router {
        let key = Arc::new(ApiKey::new(KEY).unwrap());
        let protected = Router::new()
            .route("/v1/secret", get(|| async { "secret" }))
            .route_layer(middleware::from_fn_with_state(key, require_key));
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .merge(protected)
            .fallback(super::super::error::not_found)
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
}
