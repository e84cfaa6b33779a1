//! Side-by-side markdown tables of several runs per label (min / median / max over runs).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Report, StepResult};

/// min / median / max of the values present; `None` when no run has the figure.
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // The median of an even count is the mean of the middle two.
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((v[0], mid, v[v.len() - 1]))
}

fn step_at(r: &Report, players: usize) -> Option<&StepResult> {
    r.steps.iter().find(|s| s.players == players)
}

/// The last sustained step (or the only step of a fixed run).
fn best_step(r: &Report) -> Option<&StepResult> {
    r.steps
        .iter()
        .filter(|s| s.sustained)
        .max_by_key(|s| s.players)
        .or(r.steps.first())
}

type Metric = (String, Box<dyn Fn(&Report) -> Option<f64>>, usize);

fn metrics(at: &[usize], ramp: bool) -> Vec<Metric> {
    let mut m: Vec<Metric> = Vec::new();
    if ramp {
        m.push((
            "max sustained players".into(),
            Box::new(|r| Some(r.max_sustained_players as f64)),
            0,
        ));
        m.push((
            "max sustained streams".into(),
            Box::new(|r| Some(r.max_sustained_streams as f64)),
            0,
        ));
        m.push((
            "runs that ended at the ramp's max (maximum is a lower bound)".into(),
            Box::new(|r| Some(f64::from(u8::from(r.reached_ramp_max)))),
            0,
        ));
        m.push((
            "egress at max sustained, Mbit/s".into(),
            Box::new(|r| best_step(r).filter(|s| s.sustained).map(|s| s.egress_mbps)),
            0,
        ));
        m.push((
            "server CPU % at max sustained".into(),
            Box::new(|r| {
                best_step(r)
                    .filter(|s| s.sustained)
                    .and_then(|s| s.server_cpu_pct)
            }),
            0,
        ));
        m.push((
            "server core busy % at max sustained (softirq incl.)".into(),
            Box::new(|r| {
                best_step(r)
                    .filter(|s| s.sustained)
                    .and_then(|s| s.server_core_busy_pct)
            }),
            0,
        ));
        m.push((
            "server RSS MiB at max sustained".into(),
            Box::new(|r| {
                best_step(r)
                    .filter(|s| s.sustained)
                    .and_then(|s| s.server_rss_mib)
            }),
            1,
        ));
        m.push((
            "tool CPU % at max sustained".into(),
            Box::new(|r| {
                best_step(r)
                    .filter(|s| s.sustained)
                    .and_then(|s| s.tool_cpu_pct)
            }),
            0,
        ));
    }
    for &n in at {
        m.push((
            format!("server CPU % at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.server_cpu_pct)),
            0,
        ));
        m.push((
            format!("server core busy % at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.server_core_busy_pct)),
            0,
        ));
        m.push((
            format!("server RSS MiB at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.server_rss_mib)),
            1,
        ));
        m.push((
            format!("latency p50 ms at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.latency_ms.p50)),
            1,
        ));
        m.push((
            format!("latency p99 ms at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.latency_ms.p99)),
            1,
        ));
        m.push((
            format!("video latency p50 ms at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.video_latency_ms.p50)),
            1,
        ));
        m.push((
            format!("video latency p99 ms at {n} players"),
            Box::new(move |r| step_at(r, n).and_then(|s| s.video_latency_ms.p99)),
            1,
        ));
        m.push((
            format!("players behind at {n} players"),
            Box::new(move |r| step_at(r, n).map(|s| s.behind as f64)),
            0,
        ));
    }
    if let (Some(&lo), Some(&hi)) = (at.first(), at.last())
        && hi > lo
    {
        m.push((
            format!("RSS KiB per added player ({lo}→{hi})"),
            Box::new(move |r| {
                let a = step_at(r, lo)?.server_rss_mib?;
                let b = step_at(r, hi)?.server_rss_mib?;
                Some((b - a) * 1024.0 / (hi - lo) as f64)
            }),
            1,
        ));
    }
    if !ramp {
        let first = |r: &Report| r.steps.first().cloned();
        m.push((
            "TTFF p50 ms".into(),
            Box::new(move |r| first(r).and_then(|s| s.ttff_ms.p50)),
            1,
        ));
        m.push((
            "TTFF p99 ms".into(),
            Box::new(move |r| first(r).and_then(|s| s.ttff_ms.p99)),
            1,
        ));
        m.push((
            "first video frame is a keyframe, %".into(),
            Box::new(move |r| {
                first(r)
                    .filter(|s| s.ttff_ms.count > 0)
                    .map(|s| 100.0 * s.first_video_keyframe as f64 / s.ttff_ms.count as f64)
            }),
            0,
        ));
        m.push((
            "players failed".into(),
            Box::new(move |r| first(r).map(|s| s.failed as f64)),
            0,
        ));
        m.push((
            "latency p99 ms".into(),
            Box::new(move |r| first(r).and_then(|s| s.latency_ms.p99)),
            1,
        ));
    }
    m
}

/// A markdown table: one row per metric, one column per label (`min / median / max`), and
/// the ratio of each label's median to the last label's (the baseline).
pub fn markdown(groups: &BTreeMap<String, Vec<Report>>, order: &[String], at: &[usize]) -> String {
    let ramp = groups.values().flatten().any(|r| r.ramp.is_some());
    let mut out = String::new();
    let runs: Vec<String> = order
        .iter()
        .map(|l| format!("{l} (min / median / max of {})", groups[l].len()))
        .collect();
    let _ = write!(out, "| figure | {} |", runs.join(" | "));
    let base = order.len().saturating_sub(1);
    for label in &order[..base] {
        let _ = write!(out, " {label} ÷ {} (medians) |", order[base]);
    }
    out.push('\n');
    let _ = write!(out, "|---|{}", "---|".repeat(order.len() + base));
    out.push('\n');
    for (name, f, digits) in metrics(at, ramp) {
        let cells: Vec<Option<(f64, f64, f64)>> = order
            .iter()
            .map(|l| spread(&groups[l].iter().filter_map(&f).collect::<Vec<_>>()))
            .collect();
        if cells.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "| {name} |");
        for c in &cells {
            match c {
                Some((lo, mid, hi)) => {
                    let _ = write!(out, " {lo:.digits$} / **{mid:.digits$}** / {hi:.digits$} |");
                }
                None => out.push_str(" – |"),
            }
        }
        for cell in &cells[..base] {
            match (cell, cells[base]) {
                (Some(a), Some(b)) if b.1 != 0.0 => {
                    let _ = write!(out, " {:.2} |", a.1 / b.1);
                }
                _ => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(spread(&[f64::NAN]), None);
        assert_eq!(spread(&[]), None);
    }
}
