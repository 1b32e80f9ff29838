//! The system collector's families: CPU, load, memory, swap, filesystems,
//! temperatures, boot time and uptime.

use std::time::SystemTime;

use super::{self as system};
use crate::exposition::Family;

pub(super) fn families(r: &system::Report, out: &mut Vec<Family>) {
    let mut usage = Family::gauge(
        "netmon_cpu_usage_ratio",
        &[],
        "CPU busy time over the last system cycle, 0 to 1, all cores.",
    );
    let mut core = Family::gauge(
        "netmon_cpu_core_usage_ratio",
        &["cpu"],
        "One core's busy time over the last system cycle, 0 to 1.",
    );
    if let Some(c) = r.cpu.value() {
        usage.float(&[], c.usage_percent / 100.0);
        for k in &c.cores {
            core.float(&[k.name.as_str()], k.usage_percent / 100.0);
        }
    }
    out.extend([usage, core]);

    if let Some(l) = r.load_average.value() {
        for (name, help, v) in [
            ("netmon_load1", "1-minute load average.", l.one),
            ("netmon_load5", "5-minute load average.", l.five),
            ("netmon_load15", "15-minute load average.", l.fifteen),
        ] {
            let mut f = Family::gauge(name, &[], help);
            f.float(&[], v);
            out.push(f);
        }
    }

    let mut mem = Vec::new();
    if let Some(m) = r.memory.value() {
        mem.push((
            "netmon_memory_total_bytes",
            "Physical memory.",
            Some(m.total_bytes),
        ));
        mem.push((
            "netmon_memory_used_bytes",
            "Memory in use (total minus available).",
            Some(m.used_bytes),
        ));
        mem.push((
            "netmon_memory_available_bytes",
            "Memory available for new work without swapping (MemAvailable).",
            Some(m.available_bytes),
        ));
        mem.push((
            "netmon_memory_free_bytes",
            "Unused memory (MemFree).",
            Some(m.free_bytes),
        ));
        mem.push((
            "netmon_memory_cached_bytes",
            "Page cache (Cached).",
            m.cached_bytes.value().copied(),
        ));
    }
    if let Some(s) = r.swap.value() {
        mem.push((
            "netmon_swap_total_bytes",
            "Swap space.",
            Some(s.total_bytes),
        ));
        mem.push(("netmon_swap_used_bytes", "Swap in use.", Some(s.used_bytes)));
        mem.push(("netmon_swap_free_bytes", "Swap unused.", Some(s.free_bytes)));
    }
    for (name, help, v) in mem {
        if let Some(v) = v {
            let mut f = Family::gauge(name, &[], help);
            f.int(&[], v);
            out.push(f);
        }
    }

    const FS: &[&str] = &["mountpoint", "fstype", "device"];
    let mut size = Family::gauge("netmon_filesystem_size_bytes", FS, "Filesystem size.");
    let mut avail = Family::gauge(
        "netmon_filesystem_avail_bytes",
        FS,
        "Filesystem space available to unprivileged users.",
    );
    let mut ro = Family::gauge(
        "netmon_filesystem_readonly",
        FS,
        "1 when the filesystem is mounted read-only.",
    );
    for fs in r.filesystems.value().into_iter().flatten() {
        let l = [
            fs.mount_point.as_str(),
            fs.fs_type.as_str(),
            fs.device.as_str(),
        ];
        size.int(&l, fs.total_bytes);
        avail.int(&l, fs.free_bytes);
        ro.int(&l, u64::from(fs.read_only));
    }
    out.extend([size, avail, ro]);

    let mut temp = Family::gauge(
        "netmon_hwmon_temp_celsius",
        &["chip", "sensor"],
        "A temperature sensor's reading.",
    );
    let mut crit = Family::gauge(
        "netmon_hwmon_temp_crit_celsius",
        &["chip", "sensor"],
        "A temperature sensor's critical threshold.",
    );
    for s in r.temperatures.value().into_iter().flat_map(|t| &t.sensors) {
        // Labels are "<driver> <sensor>" ("coretemp Package id 0").
        let (chip, sensor) = s.label.split_once(' ').unwrap_or((&s.label, ""));
        if let Some(c) = s.celsius.value() {
            temp.float(&[chip, sensor], *c);
        }
        if let Some(c) = s.critical_celsius {
            crit.float(&[chip, sensor], c);
        }
    }
    out.extend([temp, crit]);

    if let Some(boot) = r
        .host
        .boot_time
        .value()
        .and_then(|b| humantime::parse_rfc3339(b).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
    {
        let mut f = Family::gauge(
            "netmon_boot_time_seconds",
            &[],
            "When the system booted, in seconds since the Unix epoch.",
        );
        f.float(&[], boot.as_secs_f64());
        out.push(f);
    }
    if let Some(u) = r.uptime_seconds.value() {
        let mut f = Family::gauge("netmon_uptime_seconds", &[], "Time since boot.");
        f.int(&[], *u);
        out.push(f);
    }
}
