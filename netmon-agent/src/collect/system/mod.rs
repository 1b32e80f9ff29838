//! The system collector: CPU, load, memory, filesystems, temperatures,
//! uptime and host information, mostly through `sysinfo`.
//!
//! One `sysinfo::System`, `Disks` and `Components` live as long as the
//! collector and each cycle refreshes only what the report shows (CPU usage,
//! memory, disk space, sensor values). What sysinfo does not give is read
//! here with pure, tested parsers: `Cached:` from `/proc/meminfo` and the
//! interface holding the default route from `/proc/net/route` and
//! `/proc/net/ipv6_route`.
//!
//! Choices the report documents:
//! - CPU %: the baseline sample is taken in [`System::new`]; a cycle that
//!   comes sooner than `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` after the
//!   previous sample first sleeps the rest of it, so the first reading is a
//!   real figure, never a placeholder 0.
//! - Filesystems: what sysinfo lists, i.e. every mounted filesystem that
//!   stores data. Pseudo filesystems (proc, sysfs, cgroup, devpts, devtmpfs,
//!   tmpfs, ...) are left out: their sizes are not disk space. `free` is the
//!   space available to unprivileged users; `used` is `total - free`, so it
//!   includes blocks reserved for root, and `used + free == total`.
//! - Temperatures: every sensor sysinfo finds (hwmon, or thermal zones when
//!   there is no hwmon), under a cleaned, unique label (see
//!   [`build_temperatures`]). A sensor is a CPU sensor when its driver (the
//!   label's first word) is a CPU driver ([`CPU_SENSOR_DRIVERS`]) or its
//!   label mentions "cpu"; the hottest plausible reading of those is
//!   `hottest_cpu_celsius`.
//! - Primary addresses: those of the interfaces holding a default route
//!   (IPv4 or IPv6); when there is none, of every interface but loopback.
//!   Link-local addresses are left out either way.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    net::IpAddr,
    time::{Duration, Instant, UNIX_EPOCH},
};

use serde::Serialize;
use sysinfo::{Components, DiskRefreshKind, Disks, MINIMUM_CPU_UPDATE_INTERVAL, MemoryRefreshKind};

mod history;
mod metrics;

pub use self::history::SERIES;
use super::{
    Avail, CollectorName, Context, Problems, Reading, Sample, SeriesFamily, ViewSchema, view_schema,
};
use crate::ifaces::{IfAddr, RTF_UP, addresses_by_name, ipv6_route_lines, route_lines};
use crate::shutdown::Stop;
use crate::units::time;

/// Options of the system collector.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "system-options")]
pub struct Options {
    /// How often the system collector runs.
    #[arg(long, default_value = "5s", value_parser = crate::units::parse_interval, env = "NETMON_SYSTEM_INTERVAL")]
    pub system_interval: Duration,
}

/// One cycle's report.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SystemReport)]
pub struct Report {
    pub cpu: Avail<Cpu>,
    pub load_average: Avail<LoadAverage>,
    pub memory: Avail<Memory>,
    pub swap: Avail<Swap>,
    pub filesystems: Avail<Vec<Filesystem>>,
    pub temperatures: Avail<Temperatures>,
    pub uptime_seconds: Avail<u64>,
    pub host: Host,
}

/// CPU usage over the time since the previous cycle, in percent (0..=100).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Cpu {
    pub usage_percent: f64,
    pub cores: Vec<Core>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CpuCore)]
pub struct Core {
    pub name: String,
    pub usage_percent: f64,
}

#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// Memory in bytes. `used` is what sysinfo counts as used (total minus
/// available); `cached` is the page cache (`Cached:` in /proc/meminfo).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub free_bytes: u64,
    pub cached_bytes: Avail<u64>,
    pub used_percent: f64,
}

/// Swap in bytes; all zero when no swap is configured.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Swap {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Filesystem {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// `used / total`, or unavailable for a filesystem of size 0.
    pub used_percent: Avail<f64>,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Temperatures {
    pub sensors: Vec<Sensor>,
    /// The hottest plausible reading of a CPU sensor.
    pub hottest_cpu_celsius: Avail<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = TemperatureSensor)]
pub struct Sensor {
    /// Cleaned and unique within the report.
    pub label: String,
    pub cpu: bool,
    pub celsius: Avail<f64>,
    pub critical_celsius: Option<f64>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Host {
    pub hostname: Avail<String>,
    pub os_name: Avail<String>,
    pub os_version: Avail<String>,
    pub os_long_version: Avail<String>,
    pub kernel: Avail<String>,
    /// RFC 3339.
    pub boot_time: Avail<String>,
    pub primary_addresses: Avail<PrimaryAddresses>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PrimaryAddresses {
    /// `default_route` or `all_non_loopback`.
    pub source: &'static str,
    /// Interface name to its addresses.
    pub interfaces: BTreeMap<String, Vec<IfAddr>>,
}

pub struct System {
    sys: Result<sysinfo::System, String>,
    disks: Result<Disks, String>,
    components: Result<Components, String>,
    /// When CPU usage was last sampled.
    cpu_sampled: Instant,
    problems: Problems,
}

impl System {
    pub fn new(_opts: &Options) -> Self {
        let mut sys = sysinfo::System::new().map_err(|e| e.to_string());
        if let Ok(s) = &mut sys {
            // The baseline the first cycle's CPU usage is measured from.
            s.refresh_cpu_usage();
        }
        System {
            sys,
            disks: Disks::new().map_err(|e| e.to_string()),
            components: Components::new_with_refreshed_list().map_err(|e| e.to_string()),
            cpu_sampled: Instant::now(),
            problems: Problems::default(),
        }
    }

    fn cpu(&mut self) -> Avail<Cpu> {
        let sys = match &mut self.sys {
            Ok(s) => s,
            Err(e) => return Avail::unavailable(format!("sysinfo unavailable: {e}")),
        };
        let since = self.cpu_sampled.elapsed();
        if since < MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        sys.refresh_cpu_usage();
        self.cpu_sampled = Instant::now();
        if sys.cpus().is_empty() {
            return Avail::unavailable("no CPUs listed in /proc/stat");
        }
        Avail::Value(Cpu {
            usage_percent: percent(sys.global_cpu_usage()),
            cores: sys
                .cpus()
                .iter()
                .map(|c| Core {
                    name: c.name().to_owned(),
                    usage_percent: percent(c.usage()),
                })
                .collect(),
        })
    }

    fn memory(&mut self, problems: &mut Vec<String>) -> (Avail<Memory>, Avail<Swap>) {
        let sys = match &mut self.sys {
            Ok(s) => s,
            Err(e) => {
                let why = format!("sysinfo unavailable: {e}");
                return (Avail::unavailable(&why), Avail::unavailable(why));
            }
        };
        sys.refresh_memory_specifics(MemoryRefreshKind::everything());
        let total = sys.total_memory();
        let memory = if total == 0 {
            Avail::unavailable("/proc/meminfo gives no MemTotal")
        } else {
            let cached = match fs::read_to_string("/proc/meminfo") {
                Ok(text) => match parse_meminfo_bytes(&text, "Cached") {
                    Some(v) => Avail::Value(v),
                    None => {
                        problems.push("/proc/meminfo has no readable `Cached:` line".into());
                        Avail::unavailable("/proc/meminfo has no readable `Cached:` line")
                    }
                },
                Err(e) => Avail::unavailable(format!("cannot read /proc/meminfo: {e}")),
            };
            let used = sys.used_memory().min(total);
            Avail::Value(Memory {
                total_bytes: total,
                used_bytes: used,
                available_bytes: sys.available_memory(),
                free_bytes: sys.free_memory(),
                cached_bytes: cached,
                used_percent: ratio_percent(used, total).unwrap_or(0.0),
            })
        };
        let swap = Avail::Value(Swap {
            total_bytes: sys.total_swap(),
            used_bytes: sys.used_swap(),
            free_bytes: sys.free_swap(),
        });
        (memory, swap)
    }

    fn filesystems(&mut self) -> Avail<Vec<Filesystem>> {
        let disks = match &mut self.disks {
            Ok(d) => d,
            Err(e) => return Avail::unavailable(format!("sysinfo disks unavailable: {e}")),
        };
        // Re-list every cycle (mounts come and go); space only, no I/O stats.
        disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let mut out: Vec<Filesystem> = disks
            .iter()
            .map(|d| {
                let total = d.total_space();
                let free = d.available_space().min(total);
                let used = total - free;
                Filesystem {
                    mount_point: d.mount_point().to_string_lossy().into_owned(),
                    device: d.name().to_string_lossy().into_owned(),
                    fs_type: d.file_system().to_string_lossy().into_owned(),
                    total_bytes: total,
                    used_bytes: used,
                    free_bytes: free,
                    used_percent: match ratio_percent(used, total) {
                        Some(p) => Avail::Value(p),
                        None => Avail::unavailable("filesystem reports size 0"),
                    },
                    read_only: d.is_read_only(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        if out.is_empty() {
            return Avail::unavailable("no storage filesystems mounted");
        }
        Avail::Value(out)
    }

    fn temperatures(&mut self, problems: &mut Vec<String>) -> Avail<Temperatures> {
        let components = match &mut self.components {
            Ok(c) => c,
            Err(e) => return Avail::unavailable(format!("sysinfo sensors unavailable: {e}")),
        };
        // Re-list: sensors appear with modules being loaded.
        components.refresh(true);
        let readings: Vec<RawSensor> = components
            .iter()
            .map(|c| RawSensor {
                label: c.label().to_owned(),
                id: c.id().map(str::to_owned),
                celsius: c.temperature(),
                critical: c.critical(),
            })
            .collect();
        build_temperatures(&readings, problems)
    }
}

impl super::Collector for System {
    const NAME: CollectorName = CollectorName::System;
    type Report = Report;
    type Options = Options;
    type History = ();
    const SERIES: &'static [SeriesFamily] = SERIES;
    const VIEW: Option<ViewSchema> = Some(view_schema::<Report>);

    fn new(opts: &Options, _: &Stop) -> Self {
        System::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.system_interval
    }

    fn metrics(report: &Report, out: &mut Vec<crate::exposition::Family>) {
        metrics::families(report, out);
    }

    fn history(_: &mut (), r: &Reading<Report>, _: Option<Duration>, out: &mut Vec<Sample>) {
        history::samples(r, out);
    }

    fn collect(&mut self, _ctx: &Context) -> Report {
        let mut problems = Vec::new();
        let cpu = self.cpu();
        let (memory, swap) = self.memory(&mut problems);
        let filesystems = self.filesystems();
        let temperatures = self.temperatures(&mut problems);
        let report = Report {
            cpu,
            load_average: match sysinfo::System::load_average() {
                Ok(l) => Avail::Value(LoadAverage {
                    one: l.one,
                    five: l.five,
                    fifteen: l.fifteen,
                }),
                Err(e) => Avail::unavailable(format!("cannot read the load average: {e}")),
            },
            memory,
            swap,
            filesystems,
            temperatures,
            uptime_seconds: avail(sysinfo::System::uptime(), "uptime"),
            host: host(&mut problems),
        };
        self.problems.report(Self::NAME, problems);
        report
    }
}

fn avail<T>(r: Result<T, sysinfo::Error>, what: &str) -> Avail<T> {
    match r {
        Ok(v) => Avail::Value(v),
        Err(e) => Avail::unavailable(format!("cannot read the {what}: {e}")),
    }
}

fn host(problems: &mut Vec<String>) -> Host {
    Host {
        hostname: avail(sysinfo::System::host_name(), "hostname"),
        os_name: avail(sysinfo::System::name(), "OS name"),
        os_version: avail(sysinfo::System::os_version(), "OS version"),
        os_long_version: avail(sysinfo::System::long_os_version(), "OS long version"),
        kernel: avail(sysinfo::System::kernel_version(), "kernel version"),
        boot_time: match sysinfo::System::boot_time() {
            Ok(secs) if secs > 0 => Avail::Value(time(UNIX_EPOCH + Duration::from_secs(secs))),
            Ok(_) => Avail::unavailable("boot time not known"),
            Err(e) => Avail::unavailable(format!("cannot read the boot time: {e}")),
        },
        primary_addresses: primary_addresses(problems),
    }
}

fn primary_addresses(problems: &mut Vec<String>) -> Avail<PrimaryAddresses> {
    let all = match addresses_by_name() {
        Ok(a) => a,
        Err(e) => return Avail::unavailable(format!("cannot list interface addresses: {e}")),
    };
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let default_ifaces = default_route_interfaces(
        &read("/proc/net/route"),
        &read("/proc/net/ipv6_route"),
        problems,
    );
    let (source, names): (_, Vec<String>) = if default_ifaces.is_empty() {
        let names = all
            .iter()
            .filter(|(_, a)| !a.loopback)
            .map(|(n, _)| n.clone())
            .collect();
        ("all_non_loopback", names)
    } else {
        ("default_route", default_ifaces.into_iter().collect())
    };
    let interfaces = names
        .into_iter()
        .map(|n| {
            let addrs = all
                .get(&n)
                .map(|a| {
                    a.addresses
                        .iter()
                        .filter(|a| !is_link_local(a.address))
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            (n, addrs)
        })
        .collect();
    Avail::Value(PrimaryAddresses { source, interfaces })
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// `part / whole` in percent; `None` for an empty whole.
fn ratio_percent(part: u64, whole: u64) -> Option<f64> {
    (whole != 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// A sysinfo usage figure as a percentage in 0..=100 (sysinfo may return
/// NaN for a CPU that was just hot-plugged).
fn percent(v: f32) -> f64 {
    if v.is_finite() {
        f64::from(v).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// A value of `/proc/meminfo` in bytes: the line `key:   1234 kB`.
pub fn parse_meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, rest) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

/// The interfaces holding a default route: `/proc/net/route` lines with
/// destination and mask 0 (whatever their flags), `/proc/net/ipv6_route`
/// lines with destination `::/0` that are up (skipping the loopback's
/// unreachable routes). Malformed lines are noted in `problems` and
/// skipped.
pub fn default_route_interfaces(
    route4: &str,
    route6: &str,
    problems: &mut Vec<String>,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for line in route_lines(route4) {
        match line {
            Err(line) => problems.push(format!("/proc/net/route: malformed line {line:?}")),
            Ok(l) if l.is_default() => {
                out.insert(l.iface.to_owned());
            }
            Ok(_) => {}
        }
    }
    for line in ipv6_route_lines(route6) {
        match line {
            Err(line) => problems.push(format!("/proc/net/ipv6_route: malformed line {line:?}")),
            Ok(l) => match l.flags {
                None => problems.push(format!(
                    "/proc/net/ipv6_route: malformed flags in {:?}",
                    l.line
                )),
                Some(flags) => {
                    if l.is_default() && flags & RTF_UP != 0 && l.iface != "lo" {
                        out.insert(l.iface.to_owned());
                    }
                }
            },
        }
    }
    out
}

/// A sensor as sysinfo gives it.
#[derive(Clone, Debug, Default)]
pub struct RawSensor {
    pub label: String,
    pub id: Option<String>,
    pub celsius: Option<f32>,
    pub critical: Option<f32>,
}

/// hwmon and thermal drivers that measure the CPU. Their name is the first
/// word of sysinfo's label ("coretemp Package id 0", "k10temp Tctl").
pub const CPU_SENSOR_DRIVERS: &[&str] = &[
    "coretemp",
    "k10temp",
    "k8temp",
    "zenpower",
    "via_cputemp",
    "cpu_thermal",
    "cpu-thermal",
    "x86_pkg_temp",
    "soc_thermal",
];

/// Readings outside this range (°C) are sensor faults, not temperatures.
const PLAUSIBLE_CELSIUS: std::ops::RangeInclusive<f64> = -60.0..=200.0;

/// Longest label kept, in characters.
const MAX_LABEL_CHARS: usize = 64;

/// Whether a (cleaned) sensor label names a CPU sensor.
pub fn is_cpu_sensor(label: &str) -> bool {
    let lower = label.to_lowercase();
    let driver = lower.split_whitespace().next().unwrap_or("");
    CPU_SENSOR_DRIVERS.contains(&driver) || lower.contains("cpu")
}

/// Builds the temperature report from raw readings.
///
/// Invariants: every sensor appears once, under a non-empty label of at most
/// `MAX_LABEL_CHARS` printable characters that no other sensor has (empty
/// labels fall back to the sensor id, then `sensor N`; duplicates get ` #2`,
/// ` #3`...); a missing, NaN, infinite or implausible reading is reported as
/// unavailable with the reason, noted in `problems`, and never counts as the
/// hottest CPU reading. No sensors at all is `unavailable`, not an error.
pub fn build_temperatures(raw: &[RawSensor], problems: &mut Vec<String>) -> Avail<Temperatures> {
    if raw.is_empty() {
        return Avail::unavailable("no temperature sensors found");
    }
    let mut used: HashSet<String> = HashSet::new();
    let mut sensors = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let mut base = clean_label(&r.label);
        if base.is_empty() {
            base = r.id.as_deref().map(clean_label).unwrap_or_default();
        }
        if base.is_empty() {
            base = format!("sensor {}", i + 1);
            problems.push(format!("temperature sensor {} has no label or id", i + 1));
        }
        let mut label = base.clone();
        let mut n = 2;
        while !used.insert(label.clone()) {
            label = format!("{base} #{n}");
            n += 1;
        }
        let celsius = match r.celsius.map(f64::from) {
            None => Avail::unavailable("no reading"),
            Some(c) if c.is_finite() && PLAUSIBLE_CELSIUS.contains(&c) => Avail::Value(c),
            Some(c) => {
                problems.push(format!(
                    "temperature sensor {label:?}: implausible reading {c}"
                ));
                Avail::unavailable(format!("implausible reading {c} °C"))
            }
        };
        let critical = r
            .critical
            .map(f64::from)
            .filter(|c| c.is_finite() && PLAUSIBLE_CELSIUS.contains(c));
        sensors.push(Sensor {
            cpu: is_cpu_sensor(&label),
            label,
            celsius,
            critical_celsius: critical,
        });
    }
    let hottest = sensors
        .iter()
        .filter(|s| s.cpu)
        .filter_map(|s| s.celsius.value().copied())
        .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))));
    Avail::Value(Temperatures {
        sensors,
        hottest_cpu_celsius: match hottest {
            Some(c) => Avail::Value(c),
            None => Avail::unavailable("no CPU temperature sensor with a plausible reading"),
        },
    })
}

/// A label with control characters replaced by spaces, runs of whitespace
/// collapsed, trimmed and cut to [`MAX_LABEL_CHARS`].
fn clean_label(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_LABEL_CHARS)
        .collect()
}

/// Not used by the collector (it reads the real `/proc`); lets tests point
/// the meminfo parser at a fixture file.
#[cfg(test)]
fn read_meminfo_cached(path: &std::path::Path) -> Option<u64> {
    parse_meminfo_bytes(&fs::read_to_string(path).ok()?, "Cached")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Collector as _;

    const MEMINFO: &str = "MemTotal:       24683656 kB\n\
MemFree:        20000000 kB\n\
MemAvailable:   22000000 kB\n\
Buffers:          100000 kB\n\
Cached:          1500000 kB\n\
SwapCached:            0 kB\n\
HugePages_Total:       0\n";

    #[test]
    fn meminfo_values_in_bytes() {
        assert_eq!(
            parse_meminfo_bytes(MEMINFO, "Cached"),
            Some(1_500_000 * 1024)
        );
        assert_eq!(parse_meminfo_bytes(MEMINFO, "SwapCached"), Some(0));
        assert_eq!(parse_meminfo_bytes(MEMINFO, "HugePages_Total"), Some(0));
        assert_eq!(parse_meminfo_bytes(MEMINFO, "Nope"), None);
        assert_eq!(parse_meminfo_bytes("Cached: lots kB\n", "Cached"), None);
        assert_eq!(parse_meminfo_bytes("Cached: 5 MB\n", "Cached"), None);
        assert_eq!(parse_meminfo_bytes("", "Cached"), None);
        assert_eq!(
            parse_meminfo_bytes("Cached: 99999999999999999999 kB\n", "Cached"),
            None
        );
    }

    #[test]
    fn meminfo_fixture_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/system/meminfo");
        assert_eq!(read_meminfo_cached(&path), Some(3_163_912 * 1024));
    }

    #[test]
    fn default_route_interfaces_from_both_tables() {
        let route4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        let mut problems = Vec::new();
        let got = default_route_interfaces(route4, route6, &mut problems);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["eth0", "wlan0"]);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn default_route_garbage_is_noted_and_skipped() {
        let mut problems = Vec::new();
        let got = default_route_interfaces("header\ngarbage\n", "x y z\n", &mut problems);
        assert!(got.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        let mut problems = Vec::new();
        assert!(default_route_interfaces("", "", &mut problems).is_empty());
        assert!(problems.is_empty());
    }

    fn raw(label: &str, celsius: Option<f32>) -> RawSensor {
        RawSensor {
            label: label.into(),
            celsius,
            ..RawSensor::default()
        }
    }

    #[test]
    fn no_sensors_is_unavailable_not_an_error() {
        let mut problems = Vec::new();
        assert_eq!(
            build_temperatures(&[], &mut problems),
            Avail::unavailable("no temperature sensors found")
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn hottest_cpu_reading_ignores_other_sensors() {
        let mut problems = Vec::new();
        let t = build_temperatures(
            &[
                raw("coretemp Package id 0", Some(55.0)),
                raw("coretemp Core 1", Some(61.5)),
                raw("nvme Composite", Some(70.0)),
                raw("k10temp Tctl", Some(48.0)),
                raw("acpitz temp1", Some(90.0)),
            ],
            &mut problems,
        );
        let t = t.value().expect("sensors present");
        assert_eq!(t.hottest_cpu_celsius, Avail::Value(61.5));
        let cpu: Vec<_> = t
            .sensors
            .iter()
            .filter(|s| s.cpu)
            .map(|s| &s.label)
            .collect();
        assert_eq!(
            cpu,
            ["coretemp Package id 0", "coretemp Core 1", "k10temp Tctl"]
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn odd_labels_are_cleaned_made_unique_and_never_empty() {
        let mut problems = Vec::new();
        let mut with_id = raw("", Some(40.0));
        with_id.id = Some("thermal_zone0".into());
        let long = "x".repeat(500);
        let t = build_temperatures(
            &[
                raw("", Some(30.0)),
                with_id,
                raw("  cpu\t\u{0}\u{1b}[31m  temp\n", Some(50.0)),
                raw("dup", Some(20.0)),
                raw("dup", Some(21.0)),
                raw("dup #2", Some(22.0)),
                raw(&long, Some(23.0)),
                raw("\u{fffd}\u{fffd} ☃", Some(24.0)),
            ],
            &mut problems,
        );
        let t = t.value().unwrap();
        let labels: Vec<_> = t.sensors.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels[0], "sensor 1");
        assert_eq!(labels[1], "thermal_zone0");
        assert_eq!(labels[2], "cpu [31m temp");
        assert_eq!(&labels[3..6], ["dup", "dup #2", "dup #2 #2"]);
        assert_eq!(labels[6].chars().count(), MAX_LABEL_CHARS);
        assert_eq!(labels[7], "\u{fffd}\u{fffd} ☃");
        let unique: HashSet<_> = labels.iter().collect();
        assert_eq!(unique.len(), labels.len());
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && !l.chars().any(char::is_control))
        );
        assert_eq!(t.hottest_cpu_celsius, Avail::Value(50.0));
        assert_eq!(problems.len(), 1, "only the nameless sensor: {problems:?}");
    }

    #[test]
    fn absurd_readings_are_unavailable_and_never_hottest() {
        let mut problems = Vec::new();
        let mut crit = raw("coretemp Core 2", Some(f32::INFINITY));
        crit.critical = Some(f32::NAN);
        let t = build_temperatures(
            &[
                raw("coretemp Core 0", Some(f32::NAN)),
                raw("coretemp Core 1", Some(1000.0)),
                crit,
                raw("coretemp Core 3", None),
                raw("coretemp Core 4", Some(-273.0)),
            ],
            &mut problems,
        );
        let t = t.value().unwrap();
        assert!(t.sensors.iter().all(|s| s.celsius.value().is_none()));
        assert!(t.sensors.iter().all(|s| s.critical_celsius.is_none()));
        assert!(t.hottest_cpu_celsius.value().is_none());
        assert_eq!(problems.len(), 4, "NaN, 1000, inf, -273: {problems:?}");
        // The report is valid JSON despite NaN and infinity in the input.
        serde_json::to_string(t).expect("serializable");
    }

    #[test]
    fn a_problem_is_logged_once_until_it_goes_away_and_comes_back() {
        let mut p = Problems::default();
        let s = CollectorName::System;
        let v = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(p.report(s, v(&["a", "b"])), v(&["a", "b"]));
        assert!(p.report(s, v(&["a", "b"])).is_empty(), "repeats are quiet");
        assert_eq!(p.report(s, v(&["b", "c"])), v(&["c"]));
        assert!(p.report(s, v(&[])).is_empty());
        assert_eq!(p.report(s, v(&["a"])), v(&["a"]), "came back");
    }

    #[test]
    fn percent_is_clamped_and_finite() {
        assert_eq!(percent(f32::NAN), 0.0);
        assert_eq!(percent(150.0), 100.0);
        assert_eq!(percent(-1.0), 0.0);
        assert_eq!(percent(42.5), 42.5);
        assert_eq!(ratio_percent(1, 4), Some(25.0));
        assert_eq!(ratio_percent(1, 0), None);
    }

    /// Live sanity on this machine: values in range, totals consistent.
    #[test]
    fn live_readings_are_sane() {
        let mut c = System::new(&Options {
            system_interval: Duration::from_secs(1),
        });
        let r = c.collect(&Context::default());
        let cpu = r.cpu.value().expect("CPU usage on Linux");
        assert!((0.0..=100.0).contains(&cpu.usage_percent), "{cpu:?}");
        assert!(!cpu.cores.is_empty());
        assert!(
            cpu.cores
                .iter()
                .all(|c| (0.0..=100.0).contains(&c.usage_percent))
        );
        let m = r.memory.value().expect("memory on Linux");
        assert!(m.total_bytes > 0);
        assert!(m.used_bytes <= m.total_bytes && m.available_bytes <= m.total_bytes);
        assert!(m.free_bytes <= m.available_bytes.max(m.free_bytes));
        assert!(
            m.used_bytes + m.available_bytes <= m.total_bytes + m.total_bytes / 20,
            "{m:?}"
        );
        assert!(m.cached_bytes.value().is_some_and(|c| *c <= m.total_bytes));
        let s = r.swap.value().unwrap();
        assert!(s.used_bytes <= s.total_bytes);
        let fss = r.filesystems.value().expect("a root filesystem");
        assert!(fss.iter().any(|f| f.mount_point == "/"), "{fss:?}");
        for f in fss {
            assert!(f.used_bytes + f.free_bytes <= f.total_bytes, "{f:?}");
            assert!(
                !["proc", "sysfs", "cgroup", "cgroup2", "devpts", "tmpfs"]
                    .contains(&f.fs_type.as_str()),
                "{f:?}"
            );
        }
        assert!(r.uptime_seconds.value().is_some_and(|u| *u > 0));
        let l = r.load_average.value().expect("load average");
        assert!(l.one >= 0.0 && l.five >= 0.0 && l.fifteen >= 0.0);
        assert!(r.host.kernel.value().is_some_and(|k| !k.is_empty()));
        assert!(r.host.hostname.value().is_some());
        let boot = r.host.boot_time.value().expect("boot time");
        let boot = humantime::parse_rfc3339(boot).expect("RFC 3339");
        assert!(boot < std::time::SystemTime::now());
        // Whatever the machine has, the report serializes.
        serde_json::to_string(&r).expect("serializable");
    }
}
