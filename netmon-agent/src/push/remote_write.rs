//! Prometheus remote-write (protocol 1.0): netmon's `/metrics` series as a
//! snappy-compressed protobuf `WriteRequest`, for anything that speaks it
//! (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos
//! Receive, VictoriaMetrics, Cortex).
//!
//! The series are exactly the scrape's: the exposition text is parsed back
//! into labels and values ([`parse_exposition`]), so remote-write can never
//! disagree with `/metrics`. Each sample carries the time the text was
//! made.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use super::outbox::Outbox;

/// `prometheus.WriteRequest`, field numbers as in Prometheus's
/// `prompb/remote.proto` (metadata, field 3, is not sent).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, `__name__` included.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Remote-write options (the "Remote write" part of `--help`).
#[derive(Clone, Debug, Default, clap::Args)]
#[group(id = "remote-write-options")]
pub struct Options {
    /// Prometheus remote-write endpoint (repeatable), e.g. Prometheus's
    /// `http://tsdb:9090/api/v1/write` (started with
    /// --web.enable-remote-write-receiver), Mimir's `/api/v1/push`,
    /// VictoriaMetrics' `/api/v1/write`. Gets every /metrics series every
    /// --remote-write-interval.
    #[arg(long = "remote-write-url", value_name = "URL", env = "NETMON_REMOTE_WRITE_URLS", value_delimiter = ',', value_parser = super::parse_http_url)]
    pub remote_write_urls: Vec<String>,

    /// How often the series are sent.
    #[arg(long, default_value = "15s", value_parser = crate::units::parse_interval, env = "NETMON_REMOTE_WRITE_INTERVAL")]
    pub remote_write_interval: Duration,

    /// File holding a token sent as `Authorization: Bearer` with each
    /// write (none by default).
    #[arg(long, value_name = "PATH", env = "NETMON_REMOTE_WRITE_BEARER_FILE")]
    pub remote_write_bearer_file: Option<std::path::PathBuf>,

    /// Most bytes of writes queued on disk for each endpoint while it is
    /// down; past it the oldest are dropped (counted).
    #[arg(long, default_value = "64MiB", value_parser = crate::units::parse_size, env = "NETMON_REMOTE_WRITE_QUEUE_SIZE")]
    pub remote_write_queue_size: u64,
}

/// The endpoints' queues and threads.
pub struct RemoteWrite {
    outbox: Outbox,
}

impl RemoteWrite {
    /// Starts a thread per endpoint with its queue under
    /// `<state_dir>/remote-write`.
    pub fn start(
        opts: &Options,
        bearer: Option<&str>,
        state_dir: &std::path::Path,
    ) -> std::io::Result<RemoteWrite> {
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-protobuf".to_owned(),
            ),
            ("Content-Encoding".to_owned(), "snappy".to_owned()),
            (
                "X-Prometheus-Remote-Write-Version".to_owned(),
                "0.1.0".to_owned(),
            ),
            (
                "User-Agent".to_owned(),
                concat!("netmon/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        if let Some(token) = bearer {
            headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
        }
        let outbox = Outbox::for_urls(
            &opts.remote_write_urls,
            &headers,
            opts.remote_write_queue_size,
            Duration::from_secs(30),
            &state_dir.join("remote-write"),
            "netmon-remote-write",
        )?;
        Ok(RemoteWrite { outbox })
    }

    /// Queues the series of one exposition `text`, stamped `at`.
    pub fn send(&self, text: &str, at: SystemTime) {
        self.outbox.send(&encode(text, at));
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// The body of one write: [`parse_exposition`]'s series, protobuf, then
/// snappy's block format.
pub fn encode(text: &str, at: SystemTime) -> Vec<u8> {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let request = WriteRequest {
        timeseries: parse_exposition(text, ms),
    };
    let proto = request.encode_to_vec();
    // Compressing a buffer in memory cannot fail for inputs under 4 GiB.
    snap::raw::Encoder::new()
        .compress_vec(&proto)
        .unwrap_or_default()
}

/// The samples of a Prometheus text exposition as time series stamped
/// `timestamp_ms`; comment lines are skipped, and so is a line that does
/// not parse (the exposition is ours, so none should).
pub fn parse_exposition(text: &str, timestamp_ms: i64) -> Vec<TimeSeries> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| parse_line(l, timestamp_ms))
        .collect()
}

fn parse_line(line: &str, timestamp_ms: i64) -> Option<TimeSeries> {
    let name_end = line.find(['{', ' '])?;
    let mut labels = vec![Label {
        name: "__name__".to_owned(),
        value: line[..name_end].to_owned(),
    }];
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let (more, after) = parse_labels(inner)?;
        labels.extend(more);
        rest = after;
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Some(TimeSeries {
        labels,
        samples: vec![Sample {
            value,
            timestamp: timestamp_ms,
        }],
    })
}

/// `name="value",...}` (what follows a series name's `{`): the labels,
/// values unescaped (`\\`, `\"`, `\n`), and the text after the `}`.
fn parse_labels(s: &str) -> Option<(Vec<Label>, &str)> {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        match s.as_bytes().get(i)? {
            b'}' => return Some((labels, &s[i + 1..])),
            b',' => i += 1,
            _ => {
                let eq = s[i..].find('=')? + i;
                let name = &s[i..eq];
                if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    return None;
                }
                i = eq + 1;
                if s.as_bytes().get(i)? != &b'"' {
                    return None;
                }
                i += 1;
                let mut value = String::new();
                loop {
                    let c = s[i..].chars().next()?;
                    i += c.len_utf8();
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = s[i..].chars().next()?;
                            i += e.len_utf8();
                            value.push(if e == 'n' { '\n' } else { e });
                        }
                        c => value.push(c),
                    }
                }
                labels.push(Label {
                    name: name.to_owned(),
                    value,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn an_exposition_becomes_sorted_labelled_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 7\n\
            b{z=\"1\",iface=\"eth0\"} 2.5\n\
            c{name=\"quote \\\" back \\\\ nl \\n, comma}\"} +Inf\n";
        let series = parse_exposition(text, 1_700_000_000_000);
        assert_eq!(series.len(), 3);
        assert_eq!(labels(&series[0]), [("__name__", "a_total")]);
        assert_eq!(
            series[0].samples,
            [Sample {
                value: 7.0,
                timestamp: 1_700_000_000_000
            }]
        );
        assert_eq!(
            labels(&series[1]),
            [("__name__", "b"), ("iface", "eth0"), ("z", "1")]
        );
        assert_eq!(series[1].samples[0].value, 2.5);
        assert_eq!(
            labels(&series[2]),
            [
                ("__name__", "c"),
                ("name", "quote \" back \\ nl \n, comma}")
            ]
        );
        assert_eq!(series[2].samples[0].value, f64::INFINITY);
    }

    #[test]
    fn broken_lines_are_skipped_not_fatal() {
        let text = "ok 1\nbad{x=\"1\" 2\nnovalue\nalso{x=1} 3\nfine{} 4\n";
        let names: Vec<String> = parse_exposition(text, 0)
            .iter()
            .map(|t| t.labels[0].value.clone())
            .collect();
        assert_eq!(names, ["ok", "fine"]);
    }

    #[test]
    fn the_body_is_snappy_over_protobuf() {
        let body = encode("x{a=\"b\"} 1\n", UNIX_EPOCH + Duration::from_millis(42));
        let proto = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(&proto[..]).unwrap();
        assert_eq!(req.timeseries.len(), 1);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 42);
        assert_eq!(labels(&req.timeseries[0]), [("__name__", "x"), ("a", "b")]);
    }
}
