//! Training curves: loss and accuracy per epoch as `curves.svg` and `curves.png` beside a
//! run's metrics.

use std::path::Path;

use svg::Document;
use svg::node::element::{Line, Polyline, Text};

use crate::error::Result;
use crate::train::metrics::EpochMetrics;

/// Writes `curves.svg` and `curves.png` for `history` into `dir`.
pub fn write(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let svg = curves(history);
    crate::viz::diagram::write(&dir.join("curves.svg"), &svg)?;
    crate::viz::diagram::write(&dir.join("curves.png"), &svg)
}

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 260.0;
const MARGIN: f64 = 50.0;

/// A series of one panel: name, colour, value per epoch.
type Series<'a> = (&'a str, &'a str, Vec<f64>);

/// Two panels side by side: loss (train, val) and accuracy (train top-1, val top-1/top-5).
pub fn curves(history: &[EpochMetrics]) -> String {
    let pick = |f: fn(&EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let loss = [
        ("train loss", "#4e79a7", pick(|m| m.train_loss)),
        ("val loss", "#e15759", pick(|m| m.val_loss)),
    ];
    let accuracy = [
        ("train top-1", "#4e79a7", pick(|m| m.train_top1)),
        ("val top-1", "#e15759", pick(|m| m.val_top1)),
        ("val top-5", "#59a14f", pick(|m| m.val_top5)),
    ];
    let width = 2.0 * (PANEL_W + MARGIN) + MARGIN;
    let height = PANEL_H + 2.0 * MARGIN + 20.0;
    let mut doc = Document::new()
        .set("viewBox", (0, 0, width, height))
        .set("width", width)
        .set("height", height)
        .set("font-family", crate::viz::diagram::FONT_FAMILY)
        .add(
            svg::node::element::Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        );
    for (i, (title, series, range)) in [
        ("Loss", &loss[..], None),
        ("Accuracy (%)", &accuracy[..], Some((0.0, 100.0))),
    ]
    .into_iter()
    .enumerate()
    {
        let left = MARGIN + i as f64 * (PANEL_W + MARGIN);
        doc = panel(doc, left, title, series, range);
    }
    doc.to_string()
}

fn panel(
    mut doc: Document,
    left: f64,
    title: &str,
    series: &[Series],
    range: Option<(f64, f64)>,
) -> Document {
    let (top, bottom) = (MARGIN, MARGIN + PANEL_H);
    let values = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = range.unwrap_or_else(|| {
        let max = values.fold(0.0f64, f64::max);
        (0.0, if max > 0.0 { max * 1.05 } else { 1.0 })
    });
    let epochs = series.first().map_or(0, |s| s.2.len()).max(2);
    let x = |i: usize| left + PANEL_W * i as f64 / (epochs - 1) as f64;
    let y = |v: f64| bottom - PANEL_H * ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    doc = doc.add(label(left, top - 18.0, 15, title));
    for tick in 0..=4 {
        let value = lo + (hi - lo) * f64::from(tick) / 4.0;
        doc = doc
            .add(line(left, y(value), left + PANEL_W, y(value), "#ddd"))
            .add(label(left - 44.0, y(value) + 4.0, 11, &tick_label(value)));
    }
    doc = doc
        .add(line(left, bottom, left + PANEL_W, bottom, "#444"))
        .add(label(
            left + PANEL_W / 2.0 - 20.0,
            bottom + 30.0,
            12,
            "epoch",
        ))
        .add(label(left - 4.0, bottom + 16.0, 11, "1"))
        .add(label(
            left + PANEL_W - 8.0,
            bottom + 16.0,
            11,
            &epochs.to_string(),
        ));
    for (n, (name, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        doc = doc
            .add(
                Polyline::new()
                    .set("points", points.join(" "))
                    .set("fill", "none")
                    .set("stroke", *colour)
                    .set("stroke-width", 2),
            )
            .add(
                label(left + 10.0 + 110.0 * n as f64, bottom + 48.0, 12, name).set("fill", *colour),
            );
    }
    doc
}

/// `0.125`, `2.5`, `100`: three decimals at most, no trailing zeros.
fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn line(x1: f64, y1: f64, x2: f64, y2: f64, colour: &str) -> Line {
    Line::new()
        .set("x1", x1)
        .set("y1", y1)
        .set("x2", x2)
        .set("y2", y2)
        .set("stroke", colour)
}

fn label(x: f64, y: f64, size: u32, content: &str) -> Text {
    Text::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("fill", "#222")
}
