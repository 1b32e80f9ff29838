//! The hub's failure limit: a source address (IPv6 by its /64) that made
//! `--auth-max-failures` failed authentications (401s) within
//! `--auth-failure-window` gets 429 with `Retry-After` until its window
//! ends, counted. The table of sources is the agent's
//! ([`crate::api::auth::Failures`]), bounded by `--auth-max-sources`, its
//! evictions counted.
//!
//! As on the agent, a correct token still works from a limited source:
//! many agents often share one address (a NAT), and one of them pushing
//! with a revoked token must not lock the others out. Checking a token
//! costs one sha-256, so the limit bounds the noise of failures, not work.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State as Axum},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::http::{Fail, State, presented};
use crate::api::auth::{Failures, source_key};

/// The limit's settings.
#[derive(Clone, Copy, Debug)]
pub struct AuthLimits {
    pub max_failures: u32,
    pub window: Duration,
    pub max_sources: usize,
}

/// Failed authentications by source, and what the limit refused.
pub struct Limiter {
    limits: AuthLimits,
    failures: Mutex<Failures>,
    rate_limited: AtomicU64,
    sources_evicted: AtomicU64,
}

/// [`Limiter`]'s settings and counters, for `GET /api/v1/hub`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimiterView {
    max_failures: u32,
    failure_window_seconds: f64,
    max_sources: usize,
    pub rate_limited: u64,
    sources_evicted: u64,
}

impl Limiter {
    pub fn new(limits: AuthLimits) -> Limiter {
        Limiter {
            limits,
            failures: Mutex::new(Failures::default()),
            rate_limited: AtomicU64::new(0),
            sources_evicted: AtomicU64::new(0),
        }
    }

    /// How long `source` stays refused, if it is.
    fn refused_for(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused_for(source, now, self.limits.max_failures, self.limits.window)
    }

    fn failed(&self, source: IpAddr, now: Instant) {
        let evicted = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(source, now, self.limits.window, self.limits.max_sources);
        if evicted {
            self.sources_evicted.fetch_add(1, Relaxed);
        }
    }

    pub fn view(&self) -> LimiterView {
        LimiterView {
            max_failures: self.limits.max_failures,
            failure_window_seconds: self.limits.window.as_secs_f64(),
            max_sources: self.limits.max_sources,
            rate_limited: self.rate_limited.load(Relaxed),
            sources_evicted: self.sources_evicted.load(Relaxed),
        }
    }
}

/// Middleware over every route that checks a token: a limited source
/// without a correct token gets 429; a 401 counts a failure of its source.
/// Without the peer's address (no connect info) nothing is limited.
pub async fn limit(Axum(s): Axum<State>, req: Request, next: Next) -> Response {
    let Some(source) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| source_key(a.ip()))
    else {
        return next.run(req).await;
    };
    if let Some(left) = s.limiter.refused_for(source, Instant::now()) {
        let correct = presented(req.headers()).and_then(|t| s.tokens.check(t));
        if correct.is_none() {
            s.limiter.rate_limited.fetch_add(1, Relaxed);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let mut r = Fail::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed authentications from this address; retry in {secs} s"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    }
    let r = next.run(req).await;
    if r.status() == StatusCode::UNAUTHORIZED {
        s.limiter.failed(source, Instant::now());
    }
    r
}
