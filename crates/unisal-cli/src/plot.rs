//! The learning-curve plot of a simulation: test accuracy (mean over seeds) against the number of labels,
//! one line per strategy, the all-labels bound as a dashed horizontal line. SVG through plotters' SVG
//! backend, which writes text as SVG `<text>` elements and so needs no font library.

use anyhow::Context;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One point of a curve: labels and the mean accuracy (0..1) over seeds, with the min and max over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub labeled: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draw `curves` (strategy -> points in label order) and the optional full-label accuracy into `path`.
pub fn learning_curve(
    path: &Path,
    title: &str,
    curves: &BTreeMap<String, Vec<CurvePoint>>,
    full: Option<f64>,
) -> anyhow::Result<()> {
    let points = curves.values().flatten();
    let x_max = points.clone().map(|p| p.labeled).fold(1.0, f64::max);
    let x_min = points.clone().map(|p| p.labeled).fold(x_max, f64::min);
    let y_lo = points.map(|p| p.min).chain(full).fold(1.0, f64::min);
    let y_min = ((y_lo - 0.05).max(0.0) * 10.0).floor() / 10.0;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..x_max.max(x_min + 1.0), y_min..1.0)?;
        chart
            .configure_mesh()
            .x_desc("labeled patches")
            .y_desc("test accuracy (mean over seeds)")
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .draw()?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.labeled, p.mean)), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new((p.labeled, p.mean), 3, color.filled())))?;
            // The spread over seeds as a vertical bar at each point.
            chart.draw_series(
                pts.iter()
                    .filter(|p| p.max > p.min)
                    .map(|p| PathElement::new(vec![(p.labeled, p.min), (p.labeled, p.max)], color.mix(0.5))),
            )?;
        }
        if let Some(acc) = full {
            let gray = RGBColor(60, 60, 60);
            let steps = 40;
            let dash = (x_max - x_min) / steps as f64;
            chart
                .draw_series((0..steps).step_by(2).map(|k| {
                    let x0 = x_min + k as f64 * dash;
                    PathElement::new(vec![(x0, acc), (x0 + dash, acc)], gray.stroke_width(1))
                }))?
                .label(format!("all labels ({:.1}%)", acc * 100.0))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], gray));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("drawing {}", path.display()))
}
