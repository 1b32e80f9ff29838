//! The HTTP API's limits as options: what bounds connections, time, stream
//! clients and tickets, history queries and points, failed authentications
//! and device labels, with their defaults and ranges.
//! [`crate::api::limits`] enforces them and counts what they refuse; they
//! are here, not in `api/`, because the configuration flattens them and
//! sits below the API.

use std::time::Duration;

/// Options bounding the API's use of the machine.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "api-limit-options")]
pub struct Options {
    /// Most API connections open at once. Over it a connection is answered
    /// 503 and closed at once (closed before the handshake with TLS); those
    /// already open keep being served.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536), env = "NETMON_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: u32,

    /// Longest a client may take to send a request's line and headers,
    /// counted from the connection's opening (or, on a kept-alive
    /// connection, from the request's first byte); then the connection is
    /// closed.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_interval, env = "NETMON_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Duration,

    /// A kept-alive connection with no new request for this long is closed,
    /// and so is one whose client reads nothing of a response for this long.
    #[arg(long, default_value = "60s", value_parser = crate::units::parse_interval, env = "NETMON_HTTP_IDLE_TIMEOUT")]
    pub http_idle_timeout: Duration,

    /// Longest a TLS handshake may take (with --tls-cert); then the
    /// connection is closed.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_interval, env = "NETMON_TLS_HANDSHAKE_TIMEOUT")]
    pub tls_handshake_timeout: Duration,

    /// Most /api/v1/stream clients at once; more get 503.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000), env = "NETMON_SSE_MAX_CLIENTS")]
    pub sse_max_clients: u32,

    /// Most bytes of /api/v1/stream events a client may leave unread (sent
    /// but not acknowledged by its TCP stack); a client further behind has
    /// its stream ended.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(4096..=64 * 1024 * 1024), env = "NETMON_SSE_MAX_BACKLOG")]
    pub sse_max_backlog: u32,

    /// Most history queries running on the store at once; more get 503 with
    /// Retry-After.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), env = "NETMON_HISTORY_MAX_QUERIES")]
    pub history_max_queries: u32,

    /// Most points of one series in a history answer. Without `step` the
    /// finest tier that stays under it is used; an explicit `step` that
    /// would exceed it gets 400.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000), env = "NETMON_HISTORY_MAX_POINTS")]
    pub history_max_points: u32,

    /// Failed authentications (a missing or wrong key) one address may make
    /// within --auth-failure-window; then it gets 429 until the window ends.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_AUTH_MAX_FAILURES")]
    pub auth_max_failures: u32,

    /// The window over which failed authentications are counted.
    #[arg(long, default_value = "1m", value_parser = crate::units::parse_interval, env = "NETMON_AUTH_FAILURE_WINDOW")]
    pub auth_failure_window: Duration,

    /// Addresses whose failed authentications are remembered (IPv6 by /64);
    /// when full, the one whose window ends first is forgotten.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=1_000_000), env = "NETMON_AUTH_MAX_SOURCES")]
    pub auth_max_sources: u32,

    /// Presented keys whose argon2 verification result (match or not) is
    /// remembered by their sha-256, so no key pays argon2 twice; when full,
    /// the oldest entry is forgotten.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=1_000_000), env = "NETMON_AUTH_CACHE_ENTRIES")]
    pub auth_cache_entries: u32,

    /// Most stream tickets (POST /api/v1/stream/ticket, each good for one
    /// /api/v1/stream connection within 30 s) waiting unused at once; more
    /// get 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000), env = "NETMON_STREAM_MAX_TICKETS")]
    pub stream_max_tickets: u32,

    /// Most devices with a name or note (PUT /api/v1/devices/{mac}/label,
    /// kept in the history file); a label for one more is refused (400).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "NETMON_MAX_LABELS")]
    pub max_labels: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http_max_connections: 256,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            sse_max_clients: 32,
            sse_max_backlog: 256 * 1024,
            history_max_queries: 4,
            history_max_points: 10_000,
            auth_max_failures: 60,
            auth_failure_window: Duration::from_secs(60),
            auth_max_sources: 4096,
            auth_cache_entries: 1024,
            stream_max_tickets: 64,
            max_labels: 16_384,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_options_defaults() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: Options,
        }
        let parsed = Cli::parse_from(["x"]).limits;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Options::default()));
    }
}
