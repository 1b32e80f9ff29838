//! Pushing to other machines: the snapshot to a hub or any seed-001/000
//! receiver (`--push-url`), through a bounded queue on disk.
//!
//! - [`spool`]: the bounded on-disk first-in, first-out queue of bodies;
//! - [`outbox`]: one thread per receiver posting the queue's oldest body,
//!   with retries and backoff;
//! - [`remote_write`]: `/metrics`' series as Prometheus remote-write
//!   bodies (`--remote-write-url`), through the same outbox.
//!
//! [`Push`] gzips each snapshot (or not: `--push-compression none`) and
//! hands it to the outbox with the key as `X-API-KEY` (seed 000's header)
//! and as a Bearer token.

pub mod outbox;
pub mod remote_write;
pub mod spool;

use std::{io::Write, path::Path, time::Duration};

use flate2::write::GzEncoder;

pub use self::outbox::{Outbox, Stats, Target};

/// Push options (the "Push" part of `--help`).
#[derive(Clone, Debug, Default, clap::Args)]
#[group(id = "push-options")]
pub struct Options {
    /// Receiver of the snapshot (repeatable): a netmon hub's
    /// `/api/v1/ingest`, seed 000's `/ingest`, or any seed-001 receiver.
    /// Each gets `/api/v1/snapshot`'s document (gzip-compressed unless
    /// --push-compression none) every --push-interval.
    #[arg(long = "push-url", value_name = "URL", env = "NETMON_PUSH_URLS", value_delimiter = ',', value_parser = parse_http_url)]
    pub push_urls: Vec<String>,

    /// File holding the key sent with each push, as `X-API-KEY` and as
    /// `Authorization: Bearer` (a hub's per-host token).
    #[arg(long, value_name = "PATH", env = "NETMON_PUSH_KEY_FILE")]
    pub push_key_file: Option<std::path::PathBuf>,

    /// How often to push. Default: the drain interval (--interval).
    #[arg(long, value_parser = crate::units::parse_interval, env = "NETMON_PUSH_INTERVAL")]
    pub push_interval: Option<Duration>,

    /// Most bytes of snapshots queued on disk for each receiver while it
    /// is down; past it the oldest are dropped (counted). Queued snapshots
    /// survive a restart.
    #[arg(long, default_value = "64MiB", value_parser = crate::units::parse_size, env = "NETMON_PUSH_QUEUE_SIZE")]
    pub push_queue_size: u64,

    /// How the pushed body is sent: `gzip` (`Content-Encoding: gzip`), or
    /// `none` for receivers that cannot decompress (the earlier Python
    /// receivers: FastAPI and Flask do not gunzip request bodies).
    #[arg(long, value_enum, default_value_t = Compression::Gzip, env = "NETMON_PUSH_COMPRESSION")]
    pub push_compression: Compression,

    /// Most flows the snapshot lists (`flows.flows`): the busiest by the
    /// last interval's rate, as `/api/v1/flows` orders them; how many were
    /// left out is `flows.omitted`. 0 lists none. Bounds the pushed size:
    /// about 82 bytes gzip-compressed a flow (386 of JSON; README).
    #[arg(long, default_value_t = DEFAULT_PUSH_FLOWS, value_parser = clap::value_parser!(u32).range(0..=10_000), env = "NETMON_PUSH_FLOWS")]
    pub push_flows: u32,

    /// Time limit of one push request.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration, env = "NETMON_PUSH_TIMEOUT")]
    pub push_timeout: Duration,
}

/// Default `--push-flows`.
pub const DEFAULT_PUSH_FLOWS: u32 = 100;

/// How a pushed body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    #[default]
    Gzip,
    /// Plain JSON.
    None,
}

/// An `http://` URL (TLS is not built in: put a proxy in front of a remote
/// receiver, or use a tunnel).
pub fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s:?} is not an http:// URL (https is not supported)"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} names no host"));
    }
    Ok(s.to_owned())
}

/// Encodes snapshots and queues them for every `--push-url`.
pub struct Push {
    outbox: Outbox,
    compression: Compression,
}

impl Push {
    /// Starts the receivers' threads, with their queues under
    /// `<state_dir>/push`. `key` is sent with every body.
    pub fn start(opts: &Options, key: Option<&str>, state_dir: &Path) -> std::io::Result<Push> {
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        if opts.push_compression == Compression::Gzip {
            headers.push(("Content-Encoding".to_owned(), "gzip".to_owned()));
        }
        if let Some(key) = key {
            headers.push(("X-API-KEY".to_owned(), key.to_owned()));
            headers.push(("Authorization".to_owned(), format!("Bearer {key}")));
        }
        let outbox = Outbox::for_urls(
            &opts.push_urls,
            &headers,
            opts.push_queue_size,
            opts.push_timeout,
            &state_dir.join("push"),
            "netmon-push",
        )?;
        Ok(Push {
            outbox,
            compression: opts.push_compression,
        })
    }

    /// Queues one snapshot document (JSON) for every receiver.
    pub fn send(&self, json: &[u8]) {
        match self.compression {
            Compression::Gzip => self.outbox.send(&gzip(json)),
            Compression::None => self.outbox.send(json),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// `data`, gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn urls_are_checked_when_the_configuration_is_read() {
        assert!(parse_http_url("http://10.0.0.1:9713/api/v1/ingest").is_ok());
        assert!(
            parse_http_url("https://hub/ingest")
                .unwrap_err()
                .contains("https")
        );
        assert!(parse_http_url("http:///x").unwrap_err().contains("no host"));
        assert!(parse_http_url("hub:80").is_err());
    }

    #[test]
    fn gzip_round_trips() {
        let doc = br#"{"messageType":"realtimeSnapshot"}"#.repeat(100);
        let packed = gzip(&doc);
        assert!(packed.len() < doc.len() / 10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, doc);
    }
}
