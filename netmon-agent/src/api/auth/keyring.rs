//! The keyring: every key the API accepts with its [`Role`], and the
//! checks of presented keys.
//!
//! Plain and sha-256 keys are compared in constant time; argon2 is slow by
//! design, so what argon2 said about a presented key is remembered by the
//! key's sha-256 (correct keys in a table as small as the key list, wrong
//! ones in a bounded table), and no key pays argon2 twice: not an argon2
//! key, and not a read-only key checked against an argon2 admin key.
//! Argon2 runs one verification at a time, off the async threads.
//!
//! [`Keyring::check`] also applies the failure limit (the table is in
//! `failures.rs`): a source over it gets 429 before anything could cost
//! argon2, while a key known correct without argon2 still works.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use super::{
    Role,
    failures::{Failures, source_key},
};
use crate::{
    api::{
        error::ApiError,
        limits::{Counters, Options as LimitOptions},
    },
    keys::{ApiKey, argon2_verify, sha256},
};

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

/// The limits of the key check (from [`LimitOptions`]).
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
        let left = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused_for(
                source,
                Instant::now(),
                self.limits.max_failures,
                self.limits.window,
            );
        let Some(left) = left else { return Ok(()) };
        Counters::bump(&self.counters.auth_rate_limited);
        Err(ApiError::RateLimited {
            retry_after: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        })
    }

    /// Counts a failure of `source` at `now`.
    fn failed(&self, source: IpAddr, now: Instant) {
        let evicted = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(source, now, self.limits.window, self.limits.max_sources);
        if evicted {
            Counters::bump(&self.counters.auth_sources_evicted);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::auth::test_keys::{KEY, RO_ARGON_KEY, RO_KEY, RO_SHA_KEY, keyring},
        keys::hash_key,
    };

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
        assert_eq!(keys.failures.lock().unwrap().len(), 16);
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
}
