//! `latency.svg`: the cumulative distribution of every latency scenario and of the floor, on
//! a logarithmic time axis, so a tail and a multiple of the floor are seen at a glance.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::report::Latency;

const SIZE: (u32, u32) = (1200, 720);

/// Colours that stay apart from each other (Tableau's, then darker and lighter ones).
const COLORS: [(u8, u8, u8); 16] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
];

/// Draws the CDF of every row that has samples into an SVG file at `path`.
pub fn latency_cdf(path: &Path, rows: &[&Latency]) -> anyhow::Result<()> {
    let rows: Vec<&Latency> = rows
        .iter()
        .copied()
        // The namespace's part of a delete runs along the delete itself: left out for clarity.
        .filter(|row| !row.samples_ms.is_empty() && !row.scenario.contains("namespace"))
        .collect();
    let smallest = rows
        .iter()
        .filter_map(|row| row.samples_ms.first())
        .copied()
        .fold(f64::INFINITY, f64::min);
    let largest = rows
        .iter()
        .filter_map(|row| row.samples_ms.last())
        .copied()
        .fold(0.0, f64::max);
    let low = (smallest * 0.8).max(0.1);
    // Room on the right, past the slowest sample, for the legend.
    let high = (largest * 40.0).max(low * 10.0);
    draw(path, &rows, low, high)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("failed to draw {}", path.display()))
}

fn draw(
    path: &Path,
    rows: &[&Latency],
    low: f64,
    high: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Jango Fett benchmark: latency CDF per scenario",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((low..high).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, logarithmic)")
        .y_desc("fraction done")
        .x_label_formatter(&|value| format!("{value:.0}"))
        .draw()?;
    for (index, row) in rows.iter().enumerate() {
        let (red, green, blue) = COLORS[index % COLORS.len()];
        let color = RGBColor(red, green, blue).to_rgba();
        let count = row.samples_ms.len() as f64;
        // A step at each sample: the fraction done jumps when it ends.
        let points: Vec<(f64, f64)> = row
            .samples_ms
            .iter()
            .enumerate()
            .flat_map(|(rank, value)| {
                [
                    (*value, rank as f64 / count),
                    (*value, (rank + 1) as f64 / count),
                ]
            })
            .collect();
        let width = if row.scenario == "floor" { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))?
            .label(format!("{} ({})", row.scenario, row.size()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
