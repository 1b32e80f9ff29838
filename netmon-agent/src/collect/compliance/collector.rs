//! The compliance collector in the registry: its `/metrics` families and
//! its history series (the score, and each check's result).

use std::time::{Duration, SystemTime};

use super::{ALL, Compliance, Options, Report, Status};
use crate::{
    collect::{
        CollectorName, Context, Reading, Sample, SampleValues, SeriesFamily, SeriesKind,
        ViewSchema, view_schema,
    },
    exposition::Family,
    shutdown::Stop,
};

/// `compliance` (the score) and `compliance_check/<check_id>` (1 for
/// PASS, 0 for FAIL, NaN for NOT_APPLICABLE), gauges.
pub const SERIES: &[SeriesFamily] = &[
    SeriesFamily {
        name: "compliance",
        kind: SeriesKind::Gauge,
        fields: &["passed", "failed", "not_applicable", "percent"],
    },
    SeriesFamily {
        name: "compliance_check",
        kind: SeriesKind::Gauge,
        fields: &["pass"],
    },
];

/// 1 for PASS, 0 for FAIL; `None` for NOT_APPLICABLE.
fn pass(status: Status) -> Option<f64> {
    match status {
        Status::Pass => Some(1.0),
        Status::Fail => Some(0.0),
        Status::NotApplicable => None,
    }
}

impl crate::collect::Collector for Compliance {
    const NAME: CollectorName = CollectorName::Compliance;
    type Report = Report;
    type Options = Options;
    type History = ();
    const SERIES: &'static [SeriesFamily] = SERIES;
    const VIEW: Option<ViewSchema> = Some(view_schema::<Report>);

    fn new(opts: &Options, _: &Stop) -> Self {
        Compliance::new(opts)
    }

    fn interval(opts: &Options) -> Duration {
        opts.compliance_interval
    }

    fn collect(&mut self, _: &Context) -> Report {
        self.scan(SystemTime::now())
    }

    fn metrics(r: &Report, out: &mut Vec<Family>) {
        let mut percent = Family::gauge(
            "netmon_compliance_score_percent",
            &[],
            "Compliance checks passed, percent of all checks (seed 004's score).",
        );
        percent.int(&[], u64::from(r.score.percent));
        let mut checks = Family::gauge(
            "netmon_compliance_checks",
            &["status"],
            "Compliance checks by their last status (PASS, FAIL, NOT_APPLICABLE).",
        );
        for status in [Status::Pass, Status::Fail, Status::NotApplicable] {
            let n = r.cis_results.iter().filter(|c| c.status == status).count();
            checks.int(&[status.as_str()], n as u64);
        }
        let mut check = Family::gauge(
            "netmon_compliance_check_pass",
            &["check_id", "check_name"],
            "1 when the check passed, 0 when it failed; no sample when not applicable.",
        );
        for c in &r.cis_results {
            if let Some(v) = pass(c.status) {
                check.float(&[c.check_id.as_str(), c.check_name.as_str()], v);
            }
        }
        let mut changes = Family::gauge(
            "netmon_compliance_changes",
            &[],
            "Check status changes kept since the agent started (at most --compliance-max-changes).",
        );
        changes.int(&[], r.changes.len() as u64);
        out.extend([percent, checks, check, changes]);
    }

    fn history(_: &mut (), r: &Reading<Report>, _: Option<Duration>, out: &mut Vec<Sample>) {
        let s = &r.report.score;
        out.push(Sample {
            family: &SERIES[0],
            labels: Vec::new(),
            values: SampleValues::Gauge(vec![
                f64::from(s.passed),
                f64::from(s.failed),
                f64::from(s.not_applicable),
                f64::from(s.percent),
            ]),
        });
        for c in &r.report.cis_results {
            out.push(Sample {
                family: &SERIES[1],
                labels: vec![c.check_id.clone()],
                values: SampleValues::Gauge(vec![pass(c.status).unwrap_or(f64::NAN)]),
            });
        }
        debug_assert!(r.report.cis_results.len() <= ALL.len());
    }
}
