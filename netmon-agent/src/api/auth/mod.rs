//! API key authentication and roles: the middleware that checks the keys
//! (loaded by [`crate::keys`]) on every protected request.
//!
//! Clients send a key as `X-API-KEY: <key>` or `Authorization: Bearer <key>`.
//!
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
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::debug;

use super::{
    error::ApiError,
    limits::{Counters, Options as LimitOptions},
};
use crate::keys::{ApiKey, argon2_verify, sha256};

/// Header carrying the key as is.
const API_KEY_HEADER: &str = "x-api-key";

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

#[cfg(test)]
mod tests {
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
    use crate::keys::hash_key;

    const KEY: &str = "0123456789abcdef-test";

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
