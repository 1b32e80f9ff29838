//! The interfaces collector: every interface in `/sys/class/net` (not only
//! the watched ones) with its MAC, addresses, operational state, MTU, link
//! speed and the kernel's `statistics/` counters as totals, rates and
//! utilization of the link speed.
//!
//! Reading is kept apart from parsing: [`read_interface`] only gathers the
//! files of one interface directory under [`Interfaces::root`] (the real
//! `/sys/class/net`, or a fixture tree in tests), [`parse_interface`] turns
//! them into numbers, and [`Rates::between`] is the counter arithmetic.
//!
//! Conventions of the report:
//! - Link speed is `{"unavailable": ...}` when the kernel does not know it:
//!   reading `speed` fails (EINVAL on virtual links and links without
//!   carrier) or gives a negative value (-1, "unknown").
//! - Rates are per second over the measured time between this cycle and the
//!   previous one; unavailable on an interface's first cycle. A counter that
//!   went backwards means the interface's counters were reset: every counter
//!   of it then counts from zero (as [`crate::rates::delta`] does), so a rate
//!   is never negative and never larger than what the interface counted
//!   since the reset.
//! - Utilization is given per direction: rx bits/s and tx bits/s each over
//!   the link speed, in percent; only where the speed is known. It is not
//!   clamped: brief readings above 100 % come from counter timing.
//! - An interface whose counters cannot be parsed (garbage in a file) keeps
//!   its other fields and reports `counters` unavailable with the reason.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;
use tracing::debug;

mod history;
mod metrics;

pub use self::history::SERIES;
use super::{Avail, CollectorName, Context, Problems, Reading, Sample, SeriesFamily};
use crate::ifaces::{IfAddr, SYS_CLASS_NET, addresses_by_name, format_mac, parse_mac};
use crate::shutdown::Stop;

/// Options of the interfaces collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "interfaces-options")]
pub struct Options {
    /// How often the interfaces collector runs.
    #[arg(long, default_value = "1s", value_parser = crate::units::parse_interval, env = "NETMON_INTERFACES_INTERVAL")]
    pub interfaces_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InterfacesReport)]
pub struct Report {
    /// Every interface, by ifindex.
    pub interfaces: Avail<Vec<InterfaceStats>>,
}

/// One interface as the kernel describes it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InterfaceStats {
    pub name: String,
    pub ifindex: u32,
    /// Whether the traffic core watches it (has hooks attached).
    pub watched: bool,
    /// `aa:bb:cc:dd:ee:ff`; unavailable for links without an Ethernet-style address.
    pub mac: Avail<String>,
    pub addresses: Avail<Vec<IfAddr>>,
    /// `operstate`: up, down, dormant, lowerlayerdown, notpresent, testing or unknown.
    pub oper_state: String,
    pub mtu: Avail<u32>,
    pub speed_mbps: Avail<u64>,
    pub counters: Avail<Counters>,
    pub rates: Avail<Rates>,
    pub utilization: Avail<Utilization>,
}

/// The kernel's cumulative counters (`statistics/`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = InterfaceCounters)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl Counters {
    /// The files under `statistics/`, in field order.
    pub const FILES: [&str; 8] = [
        "rx_bytes",
        "rx_packets",
        "rx_errors",
        "rx_dropped",
        "tx_bytes",
        "tx_packets",
        "tx_errors",
        "tx_dropped",
    ];

    fn as_array(&self) -> [u64; 8] {
        [
            self.rx_bytes,
            self.rx_packets,
            self.rx_errors,
            self.rx_dropped,
            self.tx_bytes,
            self.tx_packets,
            self.tx_errors,
            self.tx_dropped,
        ]
    }

    fn from_array(a: [u64; 8]) -> Counters {
        Counters {
            rx_bytes: a[0],
            rx_packets: a[1],
            rx_errors: a[2],
            rx_dropped: a[3],
            tx_bytes: a[4],
            tx_packets: a[5],
            tx_errors: a[6],
            tx_dropped: a[7],
        }
    }

    /// Growth from `prev` to `self`. If any counter went backwards the
    /// counters were reset in between and all of `self` is new.
    pub fn since(&self, prev: &Counters) -> Counters {
        let (now, before) = (self.as_array(), prev.as_array());
        if now.iter().zip(&before).any(|(n, p)| n < p) {
            return *self;
        }
        Counters::from_array(std::array::from_fn(|i| now[i] - before[i]))
    }
}

/// Per-second rates over the last interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = InterfaceRates)]
pub struct Rates {
    pub interval_seconds: f64,
    pub rx_bits_per_second: f64,
    pub rx_packets_per_second: f64,
    pub rx_errors_per_second: f64,
    pub rx_dropped_per_second: f64,
    pub tx_bits_per_second: f64,
    pub tx_packets_per_second: f64,
    pub tx_errors_per_second: f64,
    pub tx_dropped_per_second: f64,
}

impl Rates {
    /// Rates from `prev` to `now` over `elapsed`; `None` for an empty interval.
    pub fn between(prev: &Counters, now: &Counters, elapsed: Duration) -> Option<Rates> {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let d = now.since(prev);
        let per_sec = |v: u64| v as f64 / secs;
        Some(Rates {
            interval_seconds: secs,
            rx_bits_per_second: per_sec(d.rx_bytes) * 8.0,
            rx_packets_per_second: per_sec(d.rx_packets),
            rx_errors_per_second: per_sec(d.rx_errors),
            rx_dropped_per_second: per_sec(d.rx_dropped),
            tx_bits_per_second: per_sec(d.tx_bytes) * 8.0,
            tx_packets_per_second: per_sec(d.tx_packets),
            tx_errors_per_second: per_sec(d.tx_errors),
            tx_dropped_per_second: per_sec(d.tx_dropped),
        })
    }
}

/// Each direction's bit rate over the link speed, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = LinkUtilization)]
pub struct Utilization {
    pub rx_percent: f64,
    pub tx_percent: f64,
}

impl Utilization {
    pub fn of(rates: &Rates, speed_mbps: u64) -> Option<Utilization> {
        if speed_mbps == 0 {
            return None;
        }
        let bps = speed_mbps as f64 * 1e6;
        Some(Utilization {
            rx_percent: rates.rx_bits_per_second * 100.0 / bps,
            tx_percent: rates.tx_bits_per_second * 100.0 / bps,
        })
    }
}

/// The files of one interface directory, as read (each may have failed).
#[derive(Debug)]
pub struct RawInterface {
    pub name: String,
    pub ifindex: io::Result<String>,
    pub address: io::Result<String>,
    pub operstate: io::Result<String>,
    pub mtu: io::Result<String>,
    pub speed: io::Result<String>,
    /// `statistics/<file>` for each of [`Counters::FILES`].
    pub statistics: Vec<io::Result<String>>,
}

/// Reads one interface directory; no parsing.
pub fn read_interface(dir: &Path, name: String) -> RawInterface {
    let read = |f: &str| fs::read_to_string(dir.join(f));
    RawInterface {
        name,
        ifindex: read("ifindex"),
        address: read("address"),
        operstate: read("operstate"),
        mtu: read("mtu"),
        speed: read("speed"),
        statistics: Counters::FILES
            .iter()
            .map(|f| read(&format!("statistics/{f}")))
            .collect(),
    }
}

/// An interface's fields parsed from its files; `None` when it has no
/// readable ifindex (it vanished while being read, or is not an interface).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub name: String,
    pub ifindex: u32,
    pub mac: Avail<String>,
    pub oper_state: String,
    pub mtu: Avail<u32>,
    pub speed_mbps: Avail<u64>,
    pub counters: Avail<Counters>,
}

const OPER_STATES: [&str; 7] = [
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
];

/// Parses what [`read_interface`] read. Problems worth a log line (garbage
/// where the kernel writes numbers) are pushed to `problems`.
pub fn parse_interface(raw: &RawInterface, problems: &mut Vec<String>) -> Option<Parsed> {
    let name = &raw.name;
    let ifindex = raw.ifindex.as_ref().ok()?.trim().parse::<u32>();
    let Ok(ifindex) = ifindex else {
        problems.push(format!("interface {name:?}: unreadable ifindex"));
        return None;
    };
    let mac = match &raw.address {
        Ok(a) => match parse_mac(a.trim()) {
            Some(m) => Avail::Value(format_mac(m)),
            None => Avail::unavailable("no Ethernet address"),
        },
        Err(e) => Avail::unavailable(format!("cannot read address: {e}")),
    };
    let oper_state = match &raw.operstate {
        Ok(s) if OPER_STATES.contains(&s.trim()) => s.trim().to_owned(),
        Ok(s) => {
            problems.push(format!(
                "interface {name:?}: unknown operstate {:?}",
                short(s)
            ));
            "unknown".to_owned()
        }
        Err(_) => "unknown".to_owned(),
    };
    let mtu = match &raw.mtu {
        Ok(s) => match s.trim().parse() {
            Ok(m) => Avail::Value(m),
            Err(_) => {
                problems.push(format!("interface {name:?}: unparsable mtu {:?}", short(s)));
                Avail::unavailable(format!("unparsable mtu {:?}", short(s)))
            }
        },
        Err(e) => Avail::unavailable(format!("cannot read mtu: {e}")),
    };
    let speed_mbps = parse_speed(&raw.speed, name, problems);
    let counters = parse_counters(&raw.statistics, name, problems);
    Some(Parsed {
        name: name.clone(),
        ifindex,
        mac,
        oper_state,
        mtu,
        speed_mbps,
        counters,
    })
}

/// `speed` in Mb/s. The kernel fails the read (EINVAL) or writes -1 when it
/// does not know the speed; both are "unknown", not problems.
pub fn parse_speed(
    speed: &io::Result<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> Avail<u64> {
    const UNKNOWN: &str = "link speed unknown (virtual link or no carrier)";
    match speed {
        Err(_) => Avail::unavailable(UNKNOWN),
        Ok(s) => match s.trim().parse::<i64>() {
            Ok(v) if v > 0 => Avail::Value(v as u64),
            Ok(_) => Avail::unavailable(UNKNOWN),
            Err(_) => {
                problems.push(format!(
                    "interface {name:?}: unparsable speed {:?}",
                    short(s)
                ));
                Avail::unavailable(format!("unparsable speed {:?}", short(s)))
            }
        },
    }
}

fn parse_counters(
    files: &[io::Result<String>],
    name: &str,
    problems: &mut Vec<String>,
) -> Avail<Counters> {
    let mut values = [0u64; 8];
    for (i, file) in Counters::FILES.iter().enumerate() {
        match files.get(i) {
            Some(Ok(text)) => match text.trim().parse() {
                Ok(v) => values[i] = v,
                Err(_) => {
                    let why = format!("unparsable statistics/{file} {:?}", short(text));
                    problems.push(format!("interface {name:?}: {why}"));
                    return Avail::unavailable(why);
                }
            },
            Some(Err(e)) => {
                return Avail::unavailable(format!("cannot read statistics/{file}: {e}"));
            }
            None => return Avail::unavailable(format!("statistics/{file} not read")),
        }
    }
    Avail::Value(Counters::from_array(values))
}

/// At most 40 characters of a bad input, for log lines.
fn short(s: &str) -> String {
    s.trim().chars().take(40).collect()
}

pub struct Interfaces {
    /// Where interfaces are listed: [`SYS_CLASS_NET`] in production.
    pub root: PathBuf,
    /// Last counters by (ifindex, name), with when they were read.
    prev: HashMap<(u32, String), (Instant, Counters)>,
    problems: Problems,
}

impl Interfaces {
    pub fn new(_opts: &Options) -> Self {
        Interfaces::with_root(PathBuf::from(SYS_CLASS_NET))
    }

    /// A collector reading interfaces under `root` instead of /sys/class/net.
    pub fn with_root(root: PathBuf) -> Self {
        Interfaces {
            root,
            prev: HashMap::new(),
            problems: Problems::default(),
        }
    }

    fn interfaces(
        &mut self,
        ctx: &Context,
        problems: &mut Vec<String>,
    ) -> Avail<Vec<InterfaceStats>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) => {
                return Avail::unavailable(format!("cannot list {}: {e}", self.root.display()));
            }
        };
        let mut parsed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let raw = read_interface(&entry.path(), name);
            let now = Instant::now();
            match parse_interface(&raw, problems) {
                Some(p) => parsed.push((now, p)),
                None => debug!(
                    iface = raw.name,
                    "Interface vanished while being read; skipped."
                ),
            }
        }
        parsed.sort_by_key(|(_, p)| p.ifindex);

        let addrs = addresses_by_name();
        if let Err(e) = &addrs {
            problems.push(format!("cannot list interface addresses: {e}"));
        }
        let watched = ctx.traffic.get();
        let mut prev = HashMap::with_capacity(parsed.len());
        let out = parsed
            .into_iter()
            .map(|(read_at, p)| {
                let key = (p.ifindex, p.name.clone());
                let rates = match (p.counters.value(), self.prev.get(&key)) {
                    (Some(now), Some((then, before))) => {
                        match Rates::between(before, now, read_at.duration_since(*then)) {
                            Some(r) => Avail::Value(r),
                            None => Avail::unavailable("no time between readings"),
                        }
                    }
                    (Some(_), None) => Avail::unavailable("first reading; rates need two"),
                    (None, _) => Avail::unavailable("counters unavailable"),
                };
                if let Some(c) = p.counters.value() {
                    prev.insert(key, (read_at, *c));
                }
                let utilization = match (rates.value(), p.speed_mbps.value()) {
                    (Some(r), Some(s)) => match Utilization::of(r, *s) {
                        Some(u) => Avail::Value(u),
                        None => Avail::unavailable("link speed unknown"),
                    },
                    (_, None) => Avail::unavailable("link speed unknown"),
                    (None, _) => Avail::unavailable("rates unavailable"),
                };
                InterfaceStats {
                    watched: watched
                        .interfaces
                        .iter()
                        .any(|w| w.ifindex == p.ifindex && w.name == p.name),
                    addresses: match &addrs {
                        Ok(a) => Avail::Value(
                            a.get(&p.name)
                                .map(|a| a.addresses.clone())
                                .unwrap_or_default(),
                        ),
                        Err(e) => Avail::unavailable(format!("cannot list addresses: {e}")),
                    },
                    name: p.name,
                    ifindex: p.ifindex,
                    mac: p.mac,
                    oper_state: p.oper_state,
                    mtu: p.mtu,
                    speed_mbps: p.speed_mbps,
                    counters: p.counters,
                    rates,
                    utilization,
                }
            })
            .collect();
        // Interfaces gone since the last cycle are forgotten.
        self.prev = prev;
        Avail::Value(out)
    }
}

impl super::Collector for Interfaces {
    const NAME: CollectorName = CollectorName::Interfaces;
    type Report = Report;
    type Options = Options;
    type History = history::Previous;
    const SERIES: &'static [SeriesFamily] = SERIES;

    fn new(opts: &Options, _: &Stop) -> Self {
        Interfaces::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.interfaces_interval
    }

    fn metrics(report: &Report, out: &mut Vec<crate::exposition::Family>) {
        metrics::families(report, out);
    }

    fn history(
        prev: &mut history::Previous,
        r: &Reading<Report>,
        since: Option<Duration>,
        out: &mut Vec<Sample>,
    ) {
        history::samples(prev, r, since, out);
    }

    fn collect(&mut self, ctx: &Context) -> Report {
        let mut problems = Vec::new();
        let interfaces = self.interfaces(ctx, &mut problems);
        self.problems.report(Self::NAME, problems);
        Report { interfaces }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Collector as _;

    /// A fake `/sys/class/net` in a temp dir.
    struct FakeSys(tempfile::TempDir);

    impl FakeSys {
        fn new() -> FakeSys {
            FakeSys(tempfile::tempdir().unwrap())
        }

        fn root(&self) -> PathBuf {
            self.0.path().to_owned()
        }

        /// Writes `files` (path, content) under interface `name`.
        fn iface(&self, name: &str, files: &[(&str, &str)]) {
            let dir = self.0.path().join(name);
            fs::create_dir_all(dir.join("statistics")).unwrap();
            for (f, content) in files {
                fs::write(dir.join(f), content).unwrap();
            }
        }

        fn stats(&self, name: &str, c: Counters) {
            let dir = self.0.path().join(name).join("statistics");
            fs::create_dir_all(&dir).unwrap();
            for (f, v) in Counters::FILES.iter().zip(c.as_array()) {
                fs::write(dir.join(f), format!("{v}\n")).unwrap();
            }
        }
    }

    fn counters(rx_bytes: u64, rx_packets: u64, tx_bytes: u64, tx_packets: u64) -> Counters {
        Counters {
            rx_bytes,
            rx_packets,
            tx_bytes,
            tx_packets,
            ..Counters::default()
        }
    }

    fn collect_all(c: &mut Interfaces) -> Vec<InterfaceStats> {
        c.collect(&Context::default())
            .interfaces
            .value()
            .expect("the fake root is listable")
            .clone()
    }

    #[test]
    fn fixture_tree_is_parsed_with_unknown_speed_for_virtual_links() {
        let fake = FakeSys::new();
        fake.iface(
            "eth0",
            &[
                ("ifindex", "2\n"),
                ("address", "02:00:00:00:00:0a\n"),
                ("operstate", "up\n"),
                ("mtu", "1500\n"),
                ("speed", "1000\n"),
            ],
        );
        fake.stats("eth0", counters(1000, 10, 2000, 20));
        // veth: speed exists but says -1; lo: no speed file (EINVAL on real sysfs).
        fake.iface(
            "veth0",
            &[
                ("ifindex", "3\n"),
                ("address", "02:00:00:00:00:0b\n"),
                ("operstate", "lowerlayerdown\n"),
                ("mtu", "9000\n"),
                ("speed", "-1\n"),
            ],
        );
        fake.stats("veth0", Counters::default());
        fake.iface(
            "lo",
            &[
                ("ifindex", "1\n"),
                ("address", "00:00:00:00:00:00\n"),
                ("operstate", "unknown\n"),
                ("mtu", "65536\n"),
            ],
        );
        fake.stats("lo", counters(5, 1, 5, 1));
        let all = collect_all(&mut Interfaces::with_root(fake.root()));
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "veth0"], "sorted by ifindex");
        let eth0 = &all[1];
        assert_eq!(eth0.ifindex, 2);
        assert_eq!(eth0.mac, Avail::Value("02:00:00:00:00:0a".into()));
        assert_eq!(eth0.oper_state, "up");
        assert_eq!(eth0.mtu, Avail::Value(1500));
        assert_eq!(eth0.speed_mbps, Avail::Value(1000));
        assert_eq!(eth0.counters, Avail::Value(counters(1000, 10, 2000, 20)));
        assert!(eth0.rates.value().is_none(), "first reading has no rate");
        assert!(!eth0.watched);
        assert!(all[0].speed_mbps.value().is_none());
        assert!(all[2].speed_mbps.value().is_none());
        assert_eq!(all[2].oper_state, "lowerlayerdown");
    }

    #[test]
    fn rates_and_utilization_from_two_cycles_and_resets_never_go_negative() {
        let fake = FakeSys::new();
        let files = [
            ("ifindex", "2\n"),
            ("address", "02:00:00:00:00:0a\n"),
            ("operstate", "up\n"),
            ("mtu", "1500\n"),
            ("speed", "10\n"),
        ];
        fake.iface("eth0", &files);
        fake.stats("eth0", counters(1_000_000, 1000, 0, 0));
        let mut c = Interfaces::with_root(fake.root());
        collect_all(&mut c);
        std::thread::sleep(Duration::from_millis(100));
        fake.stats("eth0", counters(1_500_000, 1500, 250_000, 100));
        let eth0 = collect_all(&mut c).remove(0);
        let r = *eth0.rates.value().expect("second reading has rates");
        let secs = r.interval_seconds;
        assert!(secs >= 0.1, "{r:?}");
        assert!((r.rx_bits_per_second - 4_000_000.0 / secs).abs() < 1e-6);
        assert!((r.tx_packets_per_second - 100.0 / secs).abs() < 1e-9);
        let u = eth0.utilization.value().expect("speed known");
        assert!((u.rx_percent - r.rx_bits_per_second / 1e7 * 100.0).abs() < 1e-9);
        assert!((u.tx_percent - r.tx_bits_per_second / 1e7 * 100.0).abs() < 1e-9);

        // Counters reset (driver reset, interface re-created with the same index).
        std::thread::sleep(Duration::from_millis(10));
        fake.stats("eth0", counters(64, 1, 0, 0));
        let eth0 = collect_all(&mut c).remove(0);
        let r = eth0.rates.value().unwrap();
        let d = counters(64, 1, 0, 0);
        assert!((r.rx_bits_per_second - d.rx_bytes as f64 * 8.0 / r.interval_seconds).abs() < 1e-6);
        assert!(r.tx_bits_per_second == 0.0 && r.tx_packets_per_second == 0.0);
    }

    #[test]
    fn counter_arithmetic() {
        let a = counters(100, 2, 50, 1);
        assert_eq!(counters(150, 3, 50, 1).since(&a), counters(50, 1, 0, 0));
        // Any counter backwards: everything is new.
        assert_eq!(counters(150, 1, 60, 2).since(&a), counters(150, 1, 60, 2));
        assert_eq!(Rates::between(&a, &a, Duration::ZERO), None);
        let r = Rates::between(&a, &counters(1100, 2, 50, 1), Duration::from_secs(2)).unwrap();
        assert_eq!(r.rx_bits_per_second, 4000.0);
        assert_eq!(Utilization::of(&r, 0), None);
        assert_eq!(Utilization::of(&r, 1).unwrap().rx_percent, 0.4);
    }

    #[test]
    fn garbage_inputs_are_reported_and_the_rest_kept() {
        let fake = FakeSys::new();
        fake.iface(
            "bad0",
            &[
                ("ifindex", "7\n"),
                ("address", "not a mac\n"),
                ("operstate", "\u{1b}[31mexploding\n"),
                ("mtu", "-5\n"),
                ("speed", "fast\n"),
            ],
        );
        fake.stats("bad0", counters(1, 1, 1, 1));
        fs::write(fake.root().join("bad0/statistics/rx_errors"), "NaN\n").unwrap();
        fake.iface("noindex", &[("ifindex", "x\n")]);
        // A directory without an ifindex (vanished) and a stray file.
        fs::create_dir_all(fake.root().join("gone")).unwrap();
        fs::write(fake.root().join("bonding_masters"), "").unwrap();
        let mut problems = Vec::new();
        let raw = read_interface(&fake.root().join("bad0"), "bad0".into());
        let p = parse_interface(&raw, &mut problems).expect("ifindex is fine");
        assert_eq!(p.ifindex, 7);
        assert!(p.mac.value().is_none());
        assert_eq!(p.oper_state, "unknown");
        assert!(p.mtu.value().is_none());
        assert!(p.speed_mbps.value().is_none());
        match &p.counters {
            Avail::Unavailable { unavailable } => {
                assert!(unavailable.contains("rx_errors"), "{unavailable}")
            }
            Avail::Value(v) => panic!("garbage counters parsed: {v:?}"),
        }
        assert_eq!(
            problems.len(),
            4,
            "operstate, mtu, speed, rx_errors: {problems:?}"
        );
        // The collector lists what it can.
        let all = collect_all(&mut Interfaces::with_root(fake.root()));
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["bad0"]);
        assert!(all[0].rates.value().is_none());
    }

    #[test]
    fn missing_root_is_unavailable() {
        let mut c = Interfaces::with_root(PathBuf::from("/nonexistent/netmon/sys/class/net"));
        assert!(c.collect(&Context::default()).interfaces.value().is_none());
    }

    /// Live sanity on this machine: loopback present, counters never decrease.
    #[test]
    fn live_loopback_counters_do_not_decrease() {
        let mut c = Interfaces::new(&Options {
            interfaces_interval: Duration::from_secs(1),
        });
        let lo = |all: Vec<InterfaceStats>| {
            all.into_iter()
                .find(|i| i.name == "lo")
                .expect("loopback listed")
        };
        let first = lo(collect_all(&mut c));
        // Some loopback traffic in between.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(b"netmon", sock.local_addr().unwrap()).unwrap();
        let second = lo(collect_all(&mut c));
        let (a, b) = (
            first.counters.value().unwrap(),
            second.counters.value().unwrap(),
        );
        for (x, y) in a.as_array().iter().zip(b.as_array()) {
            assert!(*x <= y, "{a:?} -> {b:?}");
        }
        assert!(b.rx_packets > a.rx_packets, "the datagram was counted");
        let r = second.rates.value().expect("second reading");
        assert!(r.rx_bits_per_second >= 0.0 && r.tx_bits_per_second >= 0.0);
        assert!(second.speed_mbps.value().is_none(), "loopback has no speed");
        assert!(
            second
                .addresses
                .value()
                .is_some_and(|a| a.iter().any(|a| a.address.is_loopback()))
        );
    }
}
