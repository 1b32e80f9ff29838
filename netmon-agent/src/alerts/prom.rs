//! `netmon-agent rules`: the default rules as a Prometheus alerting-rules
//! file over the names of netmon's `/metrics`, for those who alert in
//! Prometheus instead of (or as well as) in the agent.
//!
//! Thresholds, `for` and severities come from [`super::rules::defaults`];
//! the expressions are PromQL written for each rule. Hysteresis has no
//! PromQL equivalent and is left out; `device_gone` has no per-device
//! metric and is left out too; `new_device` becomes "a MAC with no sample
//! in the previous 7 days".

use std::fmt::Write as _;

use super::rules::{Rule, defaults, figure};

/// PromQL for a default rule (`{T}` is the threshold); `None`: no metric
/// carries what it needs.
fn promql(name: &str) -> Option<&'static str> {
    Some(match name {
        "cpu_high" => "netmon_cpu_usage_ratio * 100 > {T}",
        "memory_high" => {
            "(1 - netmon_memory_available_bytes / netmon_memory_total_bytes) * 100 > {T}"
        }
        "disk_full" => {
            "(1 - netmon_filesystem_avail_bytes / netmon_filesystem_size_bytes) * 100 > {T}"
        }
        "temperature_high" => "max by (instance) (netmon_hwmon_temp_celsius) > {T}",
        "load_high" => {
            "netmon_load1 / on (instance, job) count by (instance, job) (netmon_cpu_core_usage_ratio) > {T}"
        }
        "new_device" => {
            "group by (instance, interface, mac) (netmon_device_transmit_packets_total) \
             unless group by (instance, interface, mac) \
             (last_over_time(netmon_device_transmit_packets_total[7d] offset 5m))"
        }
        "device_rx_high" => "rate(netmon_device_receive_bytes_total[5m]) * 8 > {T}",
        "device_tx_high" => "rate(netmon_device_transmit_bytes_total[5m]) * 8 > {T}",
        "interface_saturated" => {
            "max by (instance, device) (rate(netmon_network_receive_bytes_total[5m]) \
             or rate(netmon_network_transmit_bytes_total[5m])) \
             / on (instance, device) max by (instance, device) (netmon_network_speed_bytes) * 100 > {T}"
        }
        // As the agent's own rule: an operstate of `unknown` (dummy and
        // many virtual links) is not down.
        "interface_down" => {
            "netmon_network_up < {T} unless on (instance, device) \
             netmon_network_operstate{operstate=\"unknown\"}"
        }
        "interface_errors" => {
            "rate(netmon_network_receive_errs_total[5m]) + rate(netmon_network_transmit_errs_total[5m]) > {T}"
        }
        "interface_drops" => {
            "rate(netmon_network_receive_drop_total[5m]) + rate(netmon_network_transmit_drop_total[5m]) > {T}"
        }
        "latency_high" => "netmon_latency_rtt_avg_seconds * 1000 > {T}",
        "latency_loss" => "netmon_latency_loss_ratio * 100 > {T}",
        "map_full" => "netmon_map_entries / netmon_map_capacity_entries * 100 > {T}",
        "map_evictions" => "rate(netmon_map_evictions_total[5m]) > {T}",
        "history_degraded" => "netmon_history_state{state=\"degraded\"} > {T}",
        "collector_failing" => "netmon_collector_up < {T}",
        "security_critical" => SECURITY_CRITICAL,
        _ => return None,
    })
}

/// The security findings of critical kinds (checked against
/// `Kind::severity` by a test).
const SECURITY_CRITICAL: &str = "netmon_security_findings{kind=~\"process_in_tmp|ssh_brute_force|arp_spoofing|gateway_impersonation\"} > {T}";

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration as Prometheus writes it (`2m`, `90s`).
fn prom_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Label names of a rule's entity in `/metrics` (`mountpoint` and
/// `interface` are `mountpoint` and `device` there).
fn prom_template(t: &str) -> String {
    t.replace("{{ value }}", "{{ $value | humanize }}")
        .replace("{{ threshold }}", "THRESHOLD")
        .replace(
            "{{ interface }}",
            "{{ $labels.device }}{{ $labels.interface }}",
        )
        .replace("{{ mountpoint }}", "{{ $labels.mountpoint }}")
        .replace("{{ sensor }}", "{{ $labels.sensor }}")
        .replace("{{ mac }}", "{{ $labels.mac }}")
        .replace("{{ target }}", "{{ $labels.target }}")
        .replace("{{ map }}", "{{ $labels.map }}")
        .replace("{{ collector }}", "{{ $labels.collector }}")
        .replace("{{ vendor }}", "")
        .replace("{{ ip }}", "{{ $labels.ip }}")
        .replace("{{ kind }}", "{{ $labels.kind }}")
        // `/metrics` counts findings by kind: no subject.
        .replace(" ({{ subject }})", "")
}

fn rule_yaml(out: &mut String, r: &Rule, expr: &str) {
    let t = figure(r.expr.threshold);
    let expr = expr.replace("{T}", &t);
    let _ = writeln!(out, "      - alert: {}", r.name);
    let _ = writeln!(out, "        expr: {}", quoted(&expr));
    if !r.for_.is_zero() {
        let _ = writeln!(out, "        for: {}", prom_duration(r.for_));
    }
    if !r.keep_firing_for.is_zero() {
        let _ = writeln!(
            out,
            "        keep_firing_for: {}",
            prom_duration(r.keep_firing_for)
        );
    }
    let _ = writeln!(out, "        labels:");
    let _ = writeln!(out, "          severity: {}", r.severity.as_str());
    if !r.annotations.is_empty() {
        let _ = writeln!(out, "        annotations:");
        for (k, v) in &r.annotations {
            let v = prom_template(v).replace("THRESHOLD", &t);
            let _ = writeln!(out, "          {k}: {}", quoted(&v));
        }
    }
}

/// The rules file (YAML): one group, `netmon`.
pub fn rules_file() -> String {
    let mut out = String::from(
        "# Prometheus alerting rules for netmon's /metrics, with the thresholds\n\
         # of netmon's default alert rules. Generated by `netmon-agent rules`.\n\
         groups:\n  - name: netmon\n    rules:\n",
    );
    for r in defaults().iter().filter(|r| r.enabled) {
        if let Some(expr) = promql(&r.name) {
            rule_yaml(&mut out, r, expr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enabled_default_has_promql_and_the_file_is_plain_yaml() {
        for r in defaults().iter().filter(|r| r.enabled) {
            assert!(promql(&r.name).is_some(), "{} has no PromQL", r.name);
        }
        let f = rules_file();
        assert!(f.contains("- alert: cpu_high\n        expr: \"netmon_cpu_usage_ratio * 100 > 80\"\n        for: 2m\n"), "{f}");
        assert!(f.contains("netmon_load1 / on (instance, job)"));
        assert!(f.contains("> 2\""), "load threshold");
        assert!(f.contains("keep_firing_for: 60m"), "new_device");
        assert!(!f.contains('\t'));
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
    }

    #[test]
    fn the_security_rule_lists_exactly_the_critical_kinds() {
        use crate::collect::security::{Kind, Severity};
        let critical: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.severity() == Severity::Critical)
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            SECURITY_CRITICAL,
            format!(
                "netmon_security_findings{{kind=~\"{}\"}} > {{T}}",
                critical.join("|")
            )
        );
        let f = rules_file();
        assert!(
            f.contains("summary: \"security finding {{ $labels.kind }}\""),
            "{f}"
        );
    }
}
