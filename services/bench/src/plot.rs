//! PNG plots of ramps: server CPU and latency p99 against players, one or more runs.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::Report;

/// Fonts tried in order when `--font` is not given (Debian's fonts-dejavu-core first).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a TrueType font as "sans-serif" for plotters' ab_glyph text rendering (no
/// fontconfig needed).
pub fn register_font(path: Option<&Path>) -> anyhow::Result<()> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => FONT_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!("no TrueType font found (install fonts-dejavu-core or pass --font)")
            })?
            .to_path_buf(),
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))?;
    Ok(())
}

const COLORS: &[RGBColor] = &[
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Players (x) against server CPU % (left axis, solid) and delivery latency p99 ms (right
/// axis, dashed), one colour per report.
pub fn ramp_plot(reports: &[Report], title: &str, out: &Path) -> anyhow::Result<()> {
    let xmax = reports
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.players))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.05;
    let cpu_max = reports
        .iter()
        .flat_map(|r| r.steps.iter().filter_map(|s| s.server_cpu_pct))
        .fold(100.0f64, f64::max)
        * 1.1;
    let lat_max = reports
        .iter()
        .flat_map(|r| r.steps.iter().filter_map(|s| s.latency_ms.p99))
        .fold(10.0f64, f64::max)
        * 1.1;
    let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..cpu_max)?
        .set_secondary_coord(0f64..xmax, (0.1f64..lat_max).log_scale());
    chart
        .configure_mesh()
        .x_desc("players")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("server CPU % (solid)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("latency p99 ms, log (dashed)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, r) in reports.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let cpu: Vec<(f64, f64)> = r
            .steps
            .iter()
            .filter_map(|s| Some((s.players as f64, s.server_cpu_pct?)))
            .collect();
        chart
            .draw_series(LineSeries::new(cpu.clone(), color.stroke_width(2)))?
            .label(format!("{} CPU", r.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(cpu.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        let lat: Vec<(f64, f64)> = r
            .steps
            .iter()
            .filter_map(|s| Some((s.players as f64, s.latency_ms.p99?.max(0.1))))
            .collect();
        chart
            .draw_secondary_series(DashedLineSeries::new(
                lat.clone(),
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(format!("{} latency p99", r.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)], color)
            });
        chart.draw_secondary_series(
            lat.iter()
                .map(|&p| TriangleMarker::new(p, 4, color.filled())),
        )?;
        if let Some(best) = r
            .steps
            .iter()
            .filter(|s| s.sustained)
            .map(|s| s.players)
            .max()
        {
            let x = best as f64;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, cpu_max)],
                color.mix(0.4).stroke_width(1),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
